package retryhttp

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
)

// Budget is a token bucket that bounds the retries of every request that
// shares it, so that many clients retrying against a failing server cannot
// multiply its load.
//
// A bucket starts with burst tokens and never holds more. Every request
// answered with a response that is not retried (a success: a 200, a 404,
// anything Policy.Retryable does not retry) adds ratio tokens; every retry
// takes one token, and a retry that finds less than one token is not made (a
// retry that takes a token and is then not sent, its wait cut short, gives
// it back). The retries a bucket allows are therefore at most
// burst + ratio × successes, and so at most burst + ratio × requests: a
// server that answers nothing gets the burst and no more, and one that
// answers a fraction f of its requests sees at most 1 + ratio × f times its
// normal traffic in the long run (1.1× with the defaults), plus the burst
// once. Because the budget grows with what the server serves rather than
// with what is asked of it, retries dry up while the server is overloaded
// and come back as it recovers, instead of keeping it overloaded; the
// bench module's metastable-failure scenario and budget comparison
// (bench/results/RESULTS.md) measure this. The approach follows gRPC's
// retry throttling and Finagle's RetryBudget.
//
// NewBudget makes one bucket for every request that shares the Budget;
// NewHostBudget one bucket per destination, so that a dead host cannot spend
// the retries of a healthy one. A Budget is safe for concurrent use. Share
// one between Transports by setting the same *Budget in their Policies. The
// zero Budget is invalid: Policy.Validate reports it; use NewBudget,
// NewHostBudget or UnlimitedBudget.
type Budget struct {
	one       bucket // the bucket of a single Budget
	ratio     int64  // millionths of a token per success
	burst     int64  // millionths of a token
	made      bool   // by a constructor, not the zero Budget
	unlimited bool
	hosts     *hostBuckets // non-nil for a per-destination Budget
	err       error        // set by a constructor for invalid arguments; see Policy.Validate
}

// bucket holds a number of tokens, counted in millionths so that repeated
// fractional deposits add up exactly: ten deposits of 0.1 make one whole
// token.
type bucket struct {
	micro atomic.Int64
}

const microPerToken = 1_000_000

// retired marks a per-destination bucket taken out of its Budget's map
// because it was full. A retry that found it just before then looks its
// destination up again, so that no token is taken from a bucket the Budget
// no longer counts.
const retired = math.MinInt64

// NewBudget returns a Budget of one bucket that starts full with burst
// tokens and gains ratio tokens for every success of a request sent through
// a Transport that uses it, whatever its destination. NewBudget(0.1, 10)
// allows a retry for every ten successes, and ten at once after a quiet
// period. The ratio is kept to six decimal places.
//
// A ratio that is negative, infinite or NaN, a negative burst, or a positive
// ratio with a burst of 0 (a bucket that can never hold a whole token) makes
// an invalid Budget: a Transport using it returns an error naming the
// problem instead of sending anything (see Policy.Validate). NewBudget(0, 0)
// is the explicit budget that never allows a retry.
func NewBudget(ratio float64, burst int) *Budget {
	b := &Budget{made: true}
	switch {
	case math.IsNaN(ratio) || math.IsInf(ratio, 0) || ratio < 0:
		b.err = fmt.Errorf("ratio %v must be a finite number of at least 0", ratio)
		return b
	case burst < 0:
		b.err = fmt.Errorf("burst %d must not be negative", burst)
		return b
	case burst == 0 && ratio > 0:
		b.err = fmt.Errorf("burst 0 can never hold the whole token a retry takes, whatever the ratio %v: use a burst of at least 1 (the default is %d), or NewBudget(0, 0) for a budget that never retries", ratio, DefaultBudgetBurst)
		return b
	}
	// Half the range keeps tokens + ratio from overflowing.
	const maxTokens = math.MaxInt64 / microPerToken / 2
	b.burst = int64(min(burst, maxTokens)) * microPerToken
	b.ratio = int64(math.Round(math.Min(ratio, maxTokens) * microPerToken))
	b.one.micro.Store(b.burst)
	return b
}

// NewHostBudget returns a Budget that keeps a separate bucket for every
// destination, each behaving as NewBudget(ratio, burst) would, so that the
// retries of a client shared by many hosts are bounded per host. Several
// Transports may share it. Its arguments are checked as NewBudget's.
//
// The destination of a request is its URL's scheme and host with the port
// made explicit, the scheme and host compared case-insensitively:
// https://API.example.com and https://api.example.com:443 share a bucket.
//
// Memory stays bounded however many hosts a program talks to. A full bucket
// is not kept, since a new one is the same: a destination that never fails
// costs nothing, and a drained one is dropped once refilled. At most
// MaxHostBuckets drained buckets are kept; when more destinations fail at
// once, the one whose last retry is the oldest is dropped and, should it fail
// again, starts afresh with a full burst.
func NewHostBudget(ratio float64, burst int) *Budget {
	b := NewBudget(ratio, burst)
	if b.err == nil {
		b.hosts = &hostBuckets{seed: rand.Uint64()}
		b.hosts.m.Store(&map[uint64]*hostBucket{})
	}
	return b
}

// MaxHostBuckets is the number of drained destinations a NewHostBudget
// keeps track of at most.
const MaxHostBuckets = 1024

// UnlimitedBudget returns a Budget that never refuses a retry, for a
// Transport whose retries are bounded by its Policy alone. Use it with care:
// without a budget, every client multiplies a failing server's load by up to
// Policy.MaxAttempts.
func UnlimitedBudget() *Budget {
	return &Budget{made: true, unlimited: true}
}

// Tokens reports the number of tokens a single Budget (NewBudget) holds now:
// how many retries it would allow before it gains more. It is +Inf for an
// UnlimitedBudget. For a per-destination Budget (NewHostBudget) it reports
// the fewest tokens any destination holds, which is burst when none is
// drained; see TokensFor.
func (b *Budget) Tokens() float64 {
	switch {
	case b.unlimited:
		return math.Inf(1)
	case b.hosts != nil:
		least := b.burst
		for _, hb := range *b.hosts.m.Load() {
			least = min(least, hb.tokens(b.burst))
		}
		return float64(least) / microPerToken
	}
	return float64(b.one.micro.Load()) / microPerToken
}

// TokensFor reports the number of tokens that requests to the destination
// host may spend on retries now. host is a URL's scheme and host, such as
// "https://api.example.com", with or without a port, read as request URLs
// are (see NewHostBudget); a destination with no drained bucket holds burst
// tokens. For a single Budget, whose one bucket serves every destination,
// it is Tokens(); for an UnlimitedBudget it is +Inf. A host that does not
// parse as a URL with a scheme and a host yields NaN.
func (b *Budget) TokensFor(host string) float64 {
	if b.hosts == nil {
		return b.Tokens()
	}
	u, err := url.Parse(host)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return math.NaN()
	}
	if hb := b.hosts.find(u); hb != nil {
		return float64(hb.tokens(b.burst)) / microPerToken
	}
	return float64(b.burst) / microPerToken
}

// validate reports why b cannot be used.
func (b *Budget) validate() error {
	if !b.made {
		return errors.New("the zero Budget holds no tokens and would silently turn retries off: use NewHostBudget(0.1, 10) or NewBudget(0.1, 10) (the defaults), NewBudget(0, 0) to never retry, or UnlimitedBudget()")
	}
	return b.err
}

// deposit credits the Budget for one success of a request to u. For a per-destination
// Budget it touches only a destination that has a drained bucket: no lock,
// no allocation.
func (b *Budget) deposit(u *url.URL) {
	if b.ratio == 0 {
		return
	}
	if b.hosts == nil {
		b.one.add(b.ratio, b.burst)
		return
	}
	if hb := b.hosts.find(u); hb != nil && hb.add(b.ratio, b.burst) {
		b.hosts.dropFull(hb, b.burst)
	}
}

// withdraw takes a token for one retry of a request to u and reports
// whether there was one.
func (b *Budget) withdraw(u *url.URL) bool {
	switch {
	case b.unlimited:
		return true
	case b.hosts == nil:
		ok, _ := b.one.take()
		return ok
	}
	for {
		hb := b.hosts.findOrAdd(u, b.burst)
		hb.lastRetry.Store(b.hosts.retries.Add(1))
		if ok, gone := hb.take(); !gone {
			return ok
		}
	}
}

// refund gives back the token of a retry of a request to u that was not
// sent.
func (b *Budget) refund(u *url.URL) {
	switch {
	case b.unlimited:
		return
	case b.hosts == nil:
		b.one.add(microPerToken, b.burst)
		return
	}
	if hb := b.hosts.find(u); hb != nil {
		hb.add(microPerToken, b.burst)
	}
}

// add adds n millionths of a token up to burst and reports whether the
// bucket is full. A retired bucket counts as full.
func (k *bucket) add(n, burst int64) (full bool) {
	for {
		old := k.micro.Load()
		if old >= burst || old == retired {
			return true
		}
		next := min(old+n, burst)
		if k.micro.CompareAndSwap(old, next) {
			return next >= burst
		}
	}
}

// take takes a token and reports whether there was one, or that the bucket
// was retired.
func (k *bucket) take() (ok, gone bool) {
	for {
		old := k.micro.Load()
		if old == retired {
			return false, true
		}
		if old < microPerToken {
			return false, false
		}
		if k.micro.CompareAndSwap(old, old-microPerToken) {
			return true, false
		}
	}
}

// tokens reports the bucket's count; a retired one holds burst, as a new one
// would.
func (k *bucket) tokens(burst int64) int64 {
	if n := k.micro.Load(); n != retired {
		return n
	}
	return burst
}

// hostBuckets holds the drained buckets of a per-destination Budget in a
// map that is replaced, never changed: readers, which every request is,
// take no lock and allocate nothing; writers, which only a destination's
// first retry after being full and a refill are, copy it under mu.
type hostBuckets struct {
	m       atomic.Pointer[map[uint64]*hostBucket]
	mu      sync.Mutex
	seed    uint64
	retries atomic.Int64 // counts retries, to find the least recently retried destination
}

type hostBucket struct {
	bucket
	dest      string // the canonical destination, to tell hash collisions apart
	lastRetry atomic.Int64
}

// find returns the drained bucket of u's destination, or nil.
func (h *hostBuckets) find(u *url.URL) *hostBucket {
	m := *h.m.Load()
	if len(m) == 0 {
		return nil
	}
	hb := m[h.hash(u)]
	if hb == nil || !sameDestination(hb.dest, u) {
		return nil
	}
	return hb
}

// findOrAdd returns the bucket of u's destination, adding a full one when
// there is none.
func (h *hostBuckets) findOrAdd(u *url.URL, burst int64) *hostBucket {
	if hb := h.find(u); hb != nil {
		return hb
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if hb := h.find(u); hb != nil {
		return hb
	}
	old := *h.m.Load()
	next := make(map[uint64]*hostBucket, len(old)+1)
	for k, hb := range old {
		// A full bucket is the same as a new one; retire it rather than
		// keep it, unless a retry takes from it first.
		if !hb.micro.CompareAndSwap(burst, retired) && hb.micro.Load() != retired {
			next[k] = hb
		}
	}
	for len(next) >= MaxHostBuckets {
		var oldestKey uint64
		oldest := int64(math.MaxInt64)
		for k, hb := range next {
			if t := hb.lastRetry.Load(); t < oldest {
				oldestKey, oldest = k, t
			}
		}
		next[oldestKey].micro.Store(retired)
		delete(next, oldestKey)
	}
	hb := &hostBucket{dest: canonicalDestination(u)}
	hb.micro.Store(burst)
	next[h.hash(u)] = hb // a colliding destination takes the slot over
	h.m.Store(&next)
	return hb
}

// dropFull forgets hb once it is full again, since a new bucket is the same.
func (h *hostBuckets) dropFull(hb *hostBucket, burst int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !hb.micro.CompareAndSwap(burst, retired) {
		return // drained again meanwhile, or retired already
	}
	old := *h.m.Load()
	next := make(map[uint64]*hostBucket, len(old))
	for k, v := range old {
		if v != hb {
			next[k] = v
		}
	}
	h.m.Store(&next)
}

// hash hashes u's canonical destination (see canonicalDestination) with
// FNV-1a, seeded per Budget, without building the string.
func (h *hostBuckets) hash(u *url.URL) uint64 {
	const prime = 1099511628211
	x := uint64(14695981039346656037) ^ h.seed
	write := func(s string) {
		for i := 0; i < len(s); i++ {
			x = (x ^ uint64(lower(s[i]))) * prime
		}
	}
	scheme, host, port := destination(u)
	write(scheme)
	write("://")
	write(host)
	write(":")
	write(port)
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

// canonicalDestination returns u's destination as "scheme://host:port" in
// lower case.
func canonicalDestination(u *url.URL) string {
	scheme, host, port := destination(u)
	return strings.ToLower(scheme + "://" + host + ":" + port)
}

// sameDestination reports whether dest, a canonicalDestination, is u's,
// without allocating.
func sameDestination(dest string, u *url.URL) bool {
	scheme, host, port := destination(u)
	for _, part := range [...]string{scheme, "://", host, ":", port} {
		if len(dest) < len(part) || !strings.EqualFold(dest[:len(part)], part) {
			return false
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
