package retryhttp

import (
	"fmt"
	"math/rand/v2"
	"net/url"
	"sync"
	"testing"
	"time"
)

// propVal is the value a property-test table keeps: which name it was
// added for, and the worth the test gives it.
type propVal struct {
	name string
	id   int64 // unique: breaks every tie, so that the model needs no tie rule
	w1   int64 // changed by the test at random, as a concern's worth changes
}

// requireEntriesAgree checks the invariant that a488ee4 added to destTable:
// under mu, entries holds exactly the map's entries, each at its index and
// under its key, the slice's spare capacity holds no entry (nothing leaks
// past an eviction), and the table keeps no more than its limit.
func requireEntriesAgree[V any](t *testing.T, tab *destTable[V], what string) {
	t.Helper()
	tab.mu.Lock()
	defer tab.mu.Unlock()
	var m map[uint64]*destEntry[V]
	if mp := tab.m.Load(); mp != nil {
		m = *mp
	}
	if len(m) != len(tab.entries) {
		t.Fatalf("%s: the map holds %d entries, the slice %d", what, len(m), len(tab.entries))
	}
	limit := tab.limit
	if limit <= 0 {
		limit = maxDestinations
	}
	if len(m) > limit {
		t.Fatalf("%s: %d entries past the limit %d", what, len(m), limit)
	}
	for i, e := range tab.entries {
		if e == nil {
			t.Fatalf("%s: entries[%d] is nil", what, i)
		}
		if e.index != i {
			t.Fatalf("%s: entries[%d] says its index is %d", what, i, e.index)
		}
		if m[e.key] != e {
			t.Fatalf("%s: entries[%d] (%s, key %x) is not the map's entry at its key", what, i, e.dest, e.key)
		}
	}
	for k, e := range m {
		if e.key != k {
			t.Fatalf("%s: the map's entry at %x says its key is %x", what, k, e.key)
		}
		if e.index < 0 || e.index >= len(tab.entries) || tab.entries[e.index] != e {
			t.Fatalf("%s: the map's entry %s is not in the slice at its index %d", what, e.dest, e.index)
		}
	}
	spare := tab.entries[len(tab.entries):cap(tab.entries)]
	for i, e := range spare {
		if e != nil {
			t.Fatalf("%s: the slice's spare capacity still holds %s at %d: a removed entry is kept alive", what, e.dest, len(tab.entries)+i)
		}
	}
}

// propModel is what the table should hold: by key, the name of the entry
// filed there, and for each name its value pointer.
type propModel struct {
	byKey map[uint64]*propVal
	keyOf map[*propVal]uint64
}

func (m *propModel) remove(v *propVal) {
	delete(m.byKey, m.keyOf[v])
	delete(m.keyOf, v)
}

func (m *propModel) put(v *propVal, k uint64) {
	m.byKey[k] = v
	m.keyOf[v] = k
}

// TestDestTableEntriesAgreeWithTheMapUnderRandomOps is a property test: a
// random sequence of adds, lookups, hash collisions (simulated by filing an
// entry under another name's hash, as TestHoldsLeaveWithAPlaceWhoseSlotIsTaken
// does), evictions, worth changes and removeIf calls, with an evicted hook
// that looks its own table up lock-free and removes a partner entry from a
// second table (as the quota holds' two tables do), keeps the slice and the
// map of both tables in agreement with each other and with a model: the
// same entries, the evicted one the least worth or the collided one, the
// evicted hook told the key the entry was filed under, and removeIf never
// asking about an entry that left.
func TestDestTableEntriesAgreeWithTheMapUnderRandomOps(t *testing.T) {
	t.Parallel() // CPU-bound
	for seed := range uint64(40) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { runDestTableProperty(t, seed) })
	}
}

func runDestTableProperty(t *testing.T, seed uint64) {
	rnd := rand.New(rand.NewPCG(seed, 0x5eed))
	limit := 1 + rnd.IntN(12)
	names := 3 * limit
	urls := make([]*url.URL, names)
	for i := range urls {
		urls[i] = mustURL(t, fmt.Sprintf("http://h%d.example", i))
	}

	var (
		nextID   int64
		evicted  []*propVal
		evKeys   []uint64
		partners destTable[int] // one entry per name in tab, removed when tab evicts it
		tab      *destTable[propVal]
	)
	partners.limit = names + 1
	tab = &destTable[propVal]{limit: limit, hooks: destHooks[propVal]{
		fresh: func(v *propVal, _ uint64, _ int64) {
			nextID++
			v.id = nextID
			v.w1 = int64(rnd.IntN(3))
		},
		worth: func(v *propVal, _ int64) (int64, int64) { return v.w1, v.id },
		evicted: func(v *propVal, h uint64) {
			evicted = append(evicted, v)
			evKeys = append(evKeys, h)
			// Re-entering the table lock-free, as a concern's hook may:
			// the map being built is not stored yet, so the old one still
			// holds v (or, after a simulated collision, nothing for v's
			// name), and nothing breaks.
			_ = tab.find(urlsByName(urls, v.name), "")
			// Another table's removeIf, from inside this one's hook, as
			// the holds' tidy does after the places' hook.
			if p := partners.find(urlsByName(urls, v.name), ""); p != nil {
				partners.removeIf(p, func(*int) bool { return true })
			}
		},
	}}
	model := &propModel{byKey: map[uint64]*propVal{}, keyOf: map[*propVal]uint64{}}
	var removed []*propVal // values that left: removeIf must not ask about them

	for step := range 400 {
		what := fmt.Sprintf("seed %d step %d", seed, step)
		evicted, evKeys = evicted[:0], evKeys[:0]
		switch op := rnd.IntN(10); {
		case op < 5: // add, or find, a name
			i := rnd.IntN(names)
			name := urls[i].String()
			var want *propVal // the entry the model expects to leave
			var found *propVal
			for v, k := range model.keyOf {
				if v.name == name && k == tab.hash(urls[i], "") {
					found = v
				}
			}
			h := tab.hash(urls[i], "")
			if found == nil && tab.m.Load() != nil {
				if v := model.byKey[h]; v != nil {
					want = v // a colliding key takes the slot over
				} else if len(model.keyOf) >= limit {
					for v := range model.keyOf {
						if want == nil || v.w1 < want.w1 || v.w1 == want.w1 && v.id < want.id {
							want = v
						}
					}
				}
			}
			got := tab.findOrAddWith(urls[i], "", 0, func(v *propVal) { v.name = name })
			if found != nil {
				if got != found {
					t.Fatalf("%s: findOrAdd of %s made a new entry while it had one", what, name)
				}
				if len(evicted) != 0 {
					t.Fatalf("%s: finding %s evicted %d entries", what, name, len(evicted))
				}
				break
			}
			h = tab.hash(urls[i], "") // the seed is set by the first add
			switch {
			case want == nil && len(evicted) != 0:
				t.Fatalf("%s: adding %s evicted %s, none expected", what, name, evicted[0].name)
			case want != nil && (len(evicted) != 1 || evicted[0] != want):
				t.Fatalf("%s: adding %s evicted %v, want %s (id %d)", what, name, names2(evicted), want.name, want.id)
			case want != nil && evKeys[0] != model.keyOf[want]:
				t.Fatalf("%s: the evicted hook was told key %x for %s, filed under %x", what, evKeys[0], want.name, model.keyOf[want])
			}
			if want != nil {
				model.remove(want)
				removed = append(removed, want)
			}
			model.put(got, h)
			partners.findOrAdd(urls[i], "", 0)
		case op < 6: // a collision: file an entry under the hash of a name the table does not hold
			if len(model.keyOf) == 0 {
				break
			}
			j := rnd.IntN(names)
			hj := tab.hash(urls[j], "")
			if model.byKey[hj] != nil {
				break
			}
			var v *propVal
			for w := range model.keyOf {
				if v == nil || w.id < v.id {
					v = w
				}
			}
			tab.mu.Lock()
			next := cloneMap(*tab.m.Load())
			e := next[model.keyOf[v]]
			delete(next, e.key)
			e.key = hj
			next[hj] = e
			tab.m.Store(&next)
			tab.mu.Unlock()
			model.remove(v)
			model.put(v, hj)
		case op < 8: // removeIf, of an entry held or one that left
			var v *propVal
			if len(removed) > 0 && rnd.IntN(3) == 0 {
				v = removed[rnd.IntN(len(removed))]
			} else {
				for w := range model.keyOf {
					v = w
					break
				}
			}
			if v == nil {
				break
			}
			_, held := model.keyOf[v]
			gone := rnd.IntN(2) == 0
			asked := false
			tab.removeIf(v, func(w *propVal) bool {
				asked = true
				if w != v {
					t.Fatalf("%s: removeIf asked about another value", what)
				}
				return gone
			})
			if asked != held {
				t.Fatalf("%s: removeIf asked %v about %s, held %v", what, asked, v.name, held)
			}
			if held && gone {
				model.remove(v)
				removed = append(removed, v)
			}
		default: // the worth of an entry changes
			for v := range model.keyOf {
				tab.mu.Lock() // the test's own write, kept off the race detector's path
				v.w1 = int64(rnd.IntN(3))
				tab.mu.Unlock()
				break
			}
		}
		requireEntriesAgree(t, tab, what)
		requireEntriesAgree(t, &partners, what+" (partners)")
		if tab.len() != len(model.keyOf) {
			t.Fatalf("%s: the table holds %d, the model %d", what, tab.len(), len(model.keyOf))
		}
		for v, k := range model.keyOf {
			if e := (*tab.m.Load())[k]; e == nil || &e.v != v {
				t.Fatalf("%s: %s is not at its key %x", what, v.name, k)
			}
		}
	}
}

func urlsByName(urls []*url.URL, name string) *url.URL {
	for _, u := range urls {
		if u.String() == name {
			return u
		}
	}
	panic("no url " + name)
}

func names2(vs []*propVal) []string {
	var s []string
	for _, v := range vs {
		s = append(s, fmt.Sprintf("%s (id %d)", v.name, v.id))
	}
	return s
}

func cloneMap[K comparable, V any](m map[K]V) map[K]V {
	c := make(map[K]V, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// TestDestTableEntriesAgreeUnderConcurrentUse: lock-free finds race with
// adds that evict and with removeIf, under -race, and the slice and the map
// agree at the end; every entry a lookup returns is its key's.
func TestDestTableEntriesAgreeUnderConcurrentUse(t *testing.T) {
	t.Parallel() // CPU-bound
	const limit, names = 16, 64
	urls := make([]*url.URL, names)
	for i := range urls {
		urls[i] = mustURL(t, fmt.Sprintf("http://h%d.example", i))
	}
	var clock sync.Mutex
	uses := int64(0)
	tab := &destTable[int64]{limit: limit, hooks: destHooks[int64]{
		fresh: func(v *int64, _ uint64, _ int64) { clock.Lock(); uses++; *v = uses; clock.Unlock() },
		worth: func(v *int64, _ int64) (int64, int64) { return *v, 0 },
	}}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			rnd := rand.New(rand.NewPCG(uint64(g), 1))
			for range 3000 {
				i := rnd.IntN(names)
				switch rnd.IntN(3) {
				case 0:
					tab.findOrAdd(urls[i], "", 0)
				case 1:
					if v := tab.find(urls[i], ""); v != nil {
						tab.removeIf(v, func(*int64) bool { return rnd.IntN(2) == 0 })
					}
				default:
					if v := tab.find(urls[i], ""); v != nil {
						tab.mu.Lock()
						found := false
						for _, e := range tab.entries {
							found = found || &e.v == v
						}
						tab.mu.Unlock()
						_ = found // may have left since: only the race detector judges here
					}
				}
			}
		})
	}
	wg.Wait()
	requireEntriesAgree(t, tab, "after the crowd")
	for i, u := range urls {
		if v := tab.find(u, ""); v != nil {
			e := (*tab.m.Load())[tab.hash(u, "")]
			if &e.v != v || e.dest != canonicalDestination(urls[i]) {
				t.Fatalf("find of %s returned another key's entry", u)
			}
		}
	}
}

// TestHoldTablesKeepTheirSlicesInStep: the quota holds keep two tables that
// must agree (quota.go), and call one table's removeIf while tidying after
// the other's evicted hook. Through random adds past maxHolds (evictions of
// holds, and of places left empty), expiries, and places whose slot another
// destination takes (a collision, simulated by filing a place under the
// hash of a destination that has none, which orphans its holds), each
// table's slice agrees with its map, and the tables with each other.
func TestHoldTablesKeepTheirSlicesInStep(t *testing.T) {
	t.Parallel() // CPU-bound
	var hs holds
	rnd := rand.New(rand.NewPCG(3, 4))
	now := time.Now()
	scopes := []limitScope{{}, {scopeResource, "core"}, {scopeResource, "search"}, {scopeKey, "a"}}
	host := func(i int) *url.URL { return mustURL(t, fmt.Sprintf("https://host%d.example", i)) }
	var added []*hold
	collided, most := 0, 0
	for i := range 3000 {
		if i%97 == 96 && hs.places.len() > 0 {
			// File some destination's place under the hash of one that has
			// none, then add a hold there: the colliding key takes the slot.
			var p *place
			for q := range hs.places.all() {
				p = q
				break
			}
			target := host(2000 + i)
			hs.mu.Lock()
			hs.places.mu.Lock()
			next := cloneMap(*hs.places.m.Load())
			kt := hs.places.hash(target, "")
			var e *destEntry[place]
			for _, x := range next {
				if &x.v == p {
					e = x
				}
			}
			delete(next, e.key)
			e.key = kt
			next[kt] = e
			hs.places.m.Store(&next)
			hs.places.mu.Unlock()
			hs.mu.Unlock()
			hs.findOrAddIn(target, scopes[rnd.IntN(len(scopes))])
			collided++
			requireEntriesAgree(t, &hs.table, fmt.Sprintf("step %d, after a collision (holds)", i))
			requireEntriesAgree(t, &hs.places, fmt.Sprintf("step %d, after a collision (places)", i))
			requireHoldTablesAgree(t, &hs)
			continue
		}
		u := host(rnd.IntN(700))
		h := hs.findOrAddIn(u, scopes[rnd.IntN(len(scopes))])
		h.mu.Lock()
		h.spend(now, time.Duration(1+rnd.IntN(600))*time.Second, "Retry-After", 0)
		h.mu.Unlock()
		added = append(added, h)
		most = max(most, hs.table.len())
		if i%10 == 9 {
			now = now.Add(5 * time.Second)
			for range 5 {
				hs.dropIfExpired(added[rnd.IntN(len(added))], now)
			}
		}
		if i%100 == 99 {
			requireEntriesAgree(t, &hs.table, fmt.Sprintf("step %d (holds)", i))
			requireEntriesAgree(t, &hs.places, fmt.Sprintf("step %d (places)", i))
			requireHoldTablesAgree(t, &hs)
		}
	}
	if most != maxHolds {
		t.Fatalf("the holds reached %d, never the bound %d: nothing was evicted", most, maxHolds)
	}
	now = now.Add(time.Hour)
	for h := range hs.table.all() {
		hs.dropIfExpired(h, now)
	}
	requireEntriesAgree(t, &hs.table, "at the end (holds)")
	requireEntriesAgree(t, &hs.places, "at the end (places)")
	requireHoldTablesAgree(t, &hs)
	if hs.table.len() != 0 || hs.places.len() != 0 {
		t.Fatalf("%d holds and %d places left after every hold expired", hs.table.len(), hs.places.len())
	}
	t.Logf("%d collisions", collided)
}
