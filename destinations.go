package retryhttp

import (
	"iter"
	"maps"
	"math/rand/v2"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
)

// maxDestinations is how many keys a destTable keeps at most, unless its
// concern sets another limit: the bound MaxHostBuckets and
// MaxThrottleDestinations name, and those of the hedge latencies and of the
// quota holds (maxHolds).
const maxDestinations = 1024

// destTable is the one bounded table of per-destination state: every
// concern that keeps something per destination (a Budget's windows or
// buckets, the Throttle's counts, the adaptive hedge delay's samples, the
// quota holds and the places of the destinations that have them) keeps it
// in a destTable of its own type V, and keeps its logic in its own file.
//
// Keys. A key is a destination, a URL's scheme and host with the port made
// explicit, with ASCII case ignored (canonicalDestination), and an extra
// string, empty but for a concern that keys finer than the destination (by
// a rate-limit resource, say). Keys are hashed with FNV-1a, seeded per
// table so that nobody can pick destinations that collide; an entry keeps
// its key, so that a lookup that lands on another key's entry finds
// nothing, and a new key whose hash collides takes the slot over, the older
// one leaving as an evicted one does.
//
// Lookups. The entries live in a map that is replaced, never changed: find,
// and findOrAdd for a key it holds, are an atomic load, a hash, a map read
// and a compare, taking no lock and allocating nothing, so that the happy
// path of every request stays free of both. Only adding and removing an
// entry take mu, and copy the map.
//
// Eviction. A table keeps at most limit entries (maxDestinations when 0).
// A new key that finds it full evicts exactly one entry: the one its
// concern's worth scores lowest, the least worth keeping, such as one
// whose state a new entry would have anyway, or the one idle longest.
// The concern's evicted hook is told of every entry that leaves the table,
// under mu, so that a request still holding the entry can tell, and so
// that what the entry knew that a new one would not (a Budget's spent
// burst) is not handed back when its destination returns.
//
// One type, a table per owner. A Budget and a Throttle are values a user
// may share among several Transports, and their per-destination state must
// be shared with them. The quota holds and the hedge latencies belong to
// one Transport but live for different spans: a hold's place as long as
// its destination has a hold (quota.go), a latency ring until it is the
// least recently used. So each owner keeps its own destTable rather than one
// entry per destination holding every concern's state: what is one is the
// code (hash, lookup, eviction), and a Budget shared by ten Transports
// keeps one ledger per destination, not ten.
//
// The zero destTable holds nothing, scores every entry alike and keeps at
// most maxDestinations.
type destTable[V any] struct {
	m  atomic.Pointer[map[uint64]*destEntry[V]]
	mu sync.Mutex
	// entries are the map's entries in a slice, under mu, for eviction to
	// scan: a slice is scanned several times faster than a map is iterated,
	// and a client that meets a new destination at every request scans it
	// once per request.
	entries []*destEntry[V]
	seed    uint64 // set under mu before the first map is stored
	limit   int    // 0: maxDestinations
	hooks   destHooks[V]
}

// destHooks are what a concern tells its destTable; each may be nil. They
// run under the table's lock and must not panic: the table would be left
// with an entry evicted from its slice but not from its map.
type destHooks[V any] struct {
	// fresh readies the new entry v of the key whose hash is h, at now (in
	// the concern's own unit), before any request can find it.
	fresh func(v *V, h uint64, now int64)
	// worth scores how much keeping v is worth at now: entries are
	// compared by the first value, then by the second, and the lowest is
	// evicted. nil scores all alike.
	worth func(v *V, now int64) (int64, int64)
	// evicted is told, under the table's lock, that v, of the key whose
	// hash is h, left the table.
	evicted func(v *V, h uint64)
}

// destEntry is one key's entry.
type destEntry[V any] struct {
	dest  string // canonicalDestination
	extra string
	key   uint64 // its key in the map
	index int    // its index in destTable.entries, under the table's mu
	v     V
}

// find returns the entry of u's destination and extra, or nil.
func (t *destTable[V]) find(u *url.URL, extra string) *V {
	mp := t.m.Load()
	if mp == nil || len(*mp) == 0 {
		return nil
	}
	e := (*mp)[hashKey(t.seed, u, extra)]
	if e == nil || e.extra != extra || !sameDestination(e.dest, u) {
		return nil
	}
	return &e.v
}

// findOrAdd returns the entry of u's destination and extra, adding a new
// one when there is none, at now (see destHooks).
func (t *destTable[V]) findOrAdd(u *url.URL, extra string, now int64) *V {
	return t.findOrAddWith(u, extra, now, nil)
}

// findOrAddWith is findOrAdd that also readies a new entry with ready, when
// not nil, after the fresh hook and before any request can find it: for
// what the caller knows of the entry that the hooks are not told, such as
// what its extra string stands for.
func (t *destTable[V]) findOrAddWith(u *url.URL, extra string, now int64, ready func(*V)) *V {
	if v := t.find(u, extra); v != nil {
		return v
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if v := t.find(u, extra); v != nil {
		return v
	}
	var old map[uint64]*destEntry[V]
	if mp := t.m.Load(); mp != nil {
		old = *mp
	} else {
		t.seed = rand.Uint64()
	}
	h := hashKey(t.seed, u, extra)
	limit := t.limit
	if limit <= 0 {
		limit = maxDestinations
	}
	next := maps.Clone(old) // the runtime's copy, cheaper than a loop
	if next == nil {
		next = make(map[uint64]*destEntry[V], 1)
	}
	if e := next[h]; e != nil {
		t.leave(next, e) // a colliding key takes the slot over
	} else if len(next) >= limit {
		t.leave(next, t.leastWorth(now))
	}
	e := &destEntry[V]{dest: canonicalDestination(u), extra: extra, key: h, index: len(t.entries)}
	if t.hooks.fresh != nil {
		t.hooks.fresh(&e.v, h, now)
	}
	if ready != nil {
		ready(&e.v)
	}
	next[h] = e
	t.entries = append(t.entries, e)
	t.m.Store(&next)
	return &e.v
}

// leastWorth returns the entry least worth keeping at now, of a table
// that holds one at least. t.mu is held.
func (t *destTable[V]) leastWorth(now int64) *destEntry[V] {
	least := t.entries[0]
	if t.hooks.worth == nil {
		return least
	}
	lo1, lo2 := t.hooks.worth(&least.v, now)
	for _, e := range t.entries[1:] {
		w1, w2 := t.hooks.worth(&e.v, now)
		if w1 < lo1 || w1 == lo1 && w2 < lo2 {
			least, lo1, lo2 = e, w1, w2
		}
	}
	return least
}

// leave drops e and tells its concern. t.mu is held.
func (t *destTable[V]) leave(next map[uint64]*destEntry[V], e *destEntry[V]) {
	t.drop(next, e)
	if t.hooks.evicted != nil {
		t.hooks.evicted(&e.v, e.key)
	}
}

// drop takes e out of next, a map not yet stored, and out of t.entries.
// t.mu is held.
func (t *destTable[V]) drop(next map[uint64]*destEntry[V], e *destEntry[V]) {
	delete(next, e.key)
	last := len(t.entries) - 1
	t.entries[e.index] = t.entries[last]
	t.entries[e.index].index = e.index
	t.entries[last] = nil // for the collector
	t.entries = t.entries[:last]
}

// removeIf takes v out of the table when it is still there and gone, asked
// under the table's lock, reports true: gone may mark v, so that a request
// that holds it can tell, as only one caller at a time asks.
func (t *destTable[V]) removeIf(v *V, gone func(*V) bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var found *destEntry[V]
	for _, e := range t.entries {
		if &e.v == v {
			found = e
			break
		}
	}
	if found == nil || !gone(v) {
		return
	}
	next := maps.Clone(*t.m.Load())
	t.drop(next, found)
	t.m.Store(&next)
}

// all yields every entry the table holds, without a lock: those of one
// version of the map.
func (t *destTable[V]) all() iter.Seq[*V] {
	return func(yield func(*V) bool) {
		mp := t.m.Load()
		if mp == nil {
			return
		}
		for _, e := range *mp {
			if !yield(&e.v) {
				return
			}
		}
	}
}

// len reports how many entries the table holds.
func (t *destTable[V]) len() int {
	if mp := t.m.Load(); mp != nil {
		return len(*mp)
	}
	return 0
}

// hash returns the hash the table files u's destination and extra under, 0
// while it holds nothing.
func (t *destTable[V]) hash(u *url.URL, extra string) uint64 {
	if t.m.Load() == nil {
		return 0
	}
	return hashKey(t.seed, u, extra)
}

// hashKey hashes u's canonical destination (see canonicalDestination) and
// extra with FNV-1a and seed, without building the string.
func hashKey(seed uint64, u *url.URL, extra string) uint64 {
	const prime = 1099511628211
	x := uint64(14695981039346656037) ^ seed
	scheme, host, port := destination(u)
	for _, s := range [...]string{scheme, "://", host, ":", port} {
		for i := 0; i < len(s); i++ {
			x = (x ^ uint64(lower(s[i]))) * prime
		}
	}
	if extra != "" {
		// A zero byte, which no destination holds, keeps "a:80"+"0x"
		// apart from "a:800"+"x".
		x *= prime
		for i := 0; i < len(extra); i++ {
			x = (x ^ uint64(extra[i])) * prime
		}
	}
	return x
}

// destination splits u into the parts that name its destination: the
// scheme, the host without its port, and the port, made explicit for http
// and https.
func destination(u *url.URL) (scheme, host, port string) {
	scheme, host = u.Scheme, u.Host
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		host, port = host[:i], host[i+1:]
	}
	if port == "" {
		switch {
		case strings.EqualFold(scheme, "https"), strings.EqualFold(scheme, "wss"):
			port = "443"
		case strings.EqualFold(scheme, "http"), strings.EqualFold(scheme, "ws"):
			port = "80"
		}
	}
	return scheme, host, port
}

// canonicalDestination returns u's destination as "scheme://host:port",
// with ASCII letters in lower case. Only ASCII is folded, as hashKey folds
// it: a host that Unicode lower-casing would change in length (the Kelvin
// sign lowers to "k") is then still found under its own spelling.
func canonicalDestination(u *url.URL) string {
	scheme, host, port := destination(u)
	b := make([]byte, 0, len(scheme)+len("://")+len(host)+len(":")+len(port))
	for _, s := range [...]string{scheme, "://", host, ":", port} {
		for i := 0; i < len(s); i++ {
			b = append(b, lower(s[i]))
		}
	}
	return string(b)
}

// sameDestination reports whether dest, a canonicalDestination, is u's,
// without allocating.
func sameDestination(dest string, u *url.URL) bool {
	scheme, host, port := destination(u)
	for _, part := range [...]string{scheme, "://", host, ":", port} {
		if len(dest) < len(part) {
			return false
		}
		for i := 0; i < len(part); i++ {
			if dest[i] != lower(part[i]) {
				return false
			}
		}
		dest = dest[len(part):]
	}
	return dest == ""
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
