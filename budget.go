package retryhttp

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"sync/atomic"
)

// Budget bounds the retries of the requests that share it by what those
// requests earn from the server, so that retrying cannot multiply a failing
// server's load, whether one process or ten thousand share the server.
//
// The model, for NewBudget and NewHostBudget. A success, a response
// Policy.Retryable does not retry (a 200, a 404), is counted, and so is
// every retry it charges (see below), in slots of 200 ms; the window is the last
// BudgetWindow (10 s) of them, the pace its last BudgetPace (1 s). A charged
// retry is made only if, counting it, the retries of the window are at most
// ratio times the successes of the window, and the retries of the pace at
// most a tenth of that, the pace's share:
//
//	retries(window) + 1 ≤ ratio × successes(window)
//	retries(pace) + 1   ≤ ratio × successes(window) / 10
//
// When the pace's share holds a fraction of a retry, a retry is made with
// that probability, so that a process earning less than one retry a second
// still retries at the rate it earns, on average. Successes older than the
// window no longer count: the allowance is earned from recent traffic and
// expires instead of being stored, and the pace spreads it over the window
// instead of letting it be spent at once when a failure starts.
//
// A destination that has never answered with a success may have burst
// retries in all, which do not refill and end with its first success, so
// that the first request of a fresh process gets through 503, 503, 200.
//
// A retry is charged by what its failed attempt cost the server, and by
// nothing the server said about time. The retry of an attempt that reached
// the server (a 503, a 429, a rate-limit 403, a broken connection, a
// timeout) is charged, whether or not the server named a wait: a
// Retry-After or a rate-limit reset sets when the retry goes, never how
// many may go. The retry of an attempt that provably never reached it (a
// refused dial, an HTTP/2 REFUSED_STREAM or a GOAWAY that left the stream
// out; see Policy.Idempotent) cost it nothing and takes no token: it is
// bounded by Policy.MaxAttempts, the backoff, MaxElapsed and the context's
// deadline, so a server gone for good gets MaxAttempts refused dials per
// request (4 by default, over 3.5 s or more). Nor does the retry of a
// rate-limit refusal that a quota hold paces to a reset at least
// ScheduledRetryMin (1 s) ahead, when the hold knows the quota the server
// announced: the hold lets through no more than that. The table in
// docs/budget.md lists every case. A retry that takes a token and is then
// not sent, its wait cut short, gives it back. The bound, with S the
// successes of the 10 s up to any charged retry:
//
//	charged retries in the 9.8 s up to it ≤ ratio × S
//	charged retries in the 0.8 s up to it ≤ ⌈ratio × S / 10⌉
//
// plus burst in all while it is open. Successes expire while the retries
// they paid for are still counted, so at any other moment the same holds
// with S the successes of the 20 s up to it. So a process's charged retries
// are at most ratio times its own recent successes, and a fleet of any size
// sends a failing server at most ratio × that server's goodput of the last
// 10 s in retries, about ratio × its goodput a second at the pace, plus the
// bursts of its processes that have not yet had a success from it: N such
// processes bring at most N × burst retries in all (a fleet that an
// autoscaler starts during an overload; docs/budget.md measures it). The
// defaults, NewHostBudget(0.1, 3): one charged retry for every ten
// successes of the last 10 s, at most one a second for every ten a second,
// and three before any. The budget reads the time from the Clock of the
// first Transport that uses it (Policy.Clock), or the real clock.
//
// NewBudget makes one window for every request that shares the Budget;
// NewHostBudget one per destination, so that a dead host cannot spend the
// retries of a healthy one. NewFixedBudget and NewFixedHostBudget make the
// token bucket of earlier versions, whose burst does not expire. A Budget is
// safe for concurrent use; counting a success takes no lock and allocates
// nothing. Share one between Transports by setting the same *Budget in their
// Policies. The zero Budget is invalid: Policy.Validate reports it; use a
// constructor. A nil *Budget is what Policy.Budget holds by default: its
// methods are safe, reporting NaN tokens; Transport.Budget returns the
// budget a Transport actually uses.
type Budget struct {
	one       bucket // the bucket of a single fixed Budget
	ratio     int64  // millionths of a token (a retry) per success
	burst     int64  // millionths of a token
	made      bool   // by a constructor, not the zero Budget
	unlimited bool
	fixed     bool                   // a token bucket (NewFixedBudget, NewFixedHostBudget)
	hosts     *destTable[hostBucket] // non-nil for a fixed per-destination Budget
	single    *ledger                // the window of a single NewBudget
	ledgers   *destTable[ledger]     // non-nil for a NewHostBudget
	spent     spentBursts            // the forgotten destinations of hosts or ledgers
	retries   atomic.Int64           // counts retries, to order destinations by their latest
	clock     atomic.Pointer[clockBox]
	err       error // set by a constructor for invalid arguments; see Policy.Validate
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

// NewFixedBudget returns the token bucket that NewBudget made before
// version 0.x changed the model: one bucket that starts full with burst
// tokens and gains ratio tokens for every success of a request sent through
// a Transport that uses it, whatever its destination, and never holds more
// than burst. NewFixedBudget(0.1, 10) allows a retry for every ten
// successes, and ten at once after a quiet period. Its retries are at most
// burst + ratio × successes, whatever the time: a bucket that has been full
// for a day still holds burst tokens, so that N processes bring N × burst
// retries to the first seconds of a failure (see Budget for a model that
// does not). The ratio is kept to six decimal places.
//
// A ratio that is negative, infinite or NaN, a negative burst, or a positive
// ratio with a burst of 0 (a bucket that can never hold a whole token) makes
// an invalid Budget: a Transport using it returns an error naming the
// problem instead of sending anything (see Policy.Validate).
// NewFixedBudget(0, 0) never allows a retry.
func NewFixedBudget(ratio float64, burst int) *Budget {
	b := &Budget{made: true, fixed: true}
	switch {
	case math.IsNaN(ratio) || math.IsInf(ratio, 0) || ratio < 0:
		b.err = fmt.Errorf("ratio %v must be a finite number of at least 0", ratio)
		return b
	case burst < 0:
		b.err = fmt.Errorf("burst %d must not be negative", burst)
		return b
	case burst == 0 && ratio > 0:
		b.err = fmt.Errorf("burst 0 can never hold the whole token a retry takes, whatever the ratio %v: use a burst of at least 1, or NewBudget(0, 0) for a budget that never retries", ratio)
		return b
	}
	// Half the range keeps tokens + ratio from overflowing.
	const maxTokens = math.MaxInt64 / microPerToken / 2
	b.burst = int64(min(burst, maxTokens)) * microPerToken
	b.ratio = int64(math.Round(math.Min(ratio, maxTokens) * microPerToken))
	b.one.micro.Store(b.burst)
	return b
}

// NewFixedHostBudget returns the per-destination token bucket that
// NewHostBudget made before version 0.x: a separate bucket for every
// destination (as NewHostBudget tells them apart), each behaving as
// NewFixedBudget(ratio, burst) would. Its arguments are checked as
// NewFixedBudget's.
//
// Memory stays bounded however many hosts a program talks to. A full bucket
// is not kept, since a new one is the same: a destination that never fails
// costs nothing, and a drained one is dropped once refilled. At most
// MaxHostBuckets buckets are kept; when more destinations fail at once, a
// full one is dropped first, and else the one whose last retry is the
// oldest. A destination dropped while drained does not get its burst back:
// should it fail again, its bucket starts empty and fills from its
// successes, and is then kept rather than dropped when full.
func NewFixedHostBudget(ratio float64, burst int) *Budget {
	b := NewFixedBudget(ratio, burst)
	if b.err == nil {
		b.hosts = &destTable[hostBucket]{limit: MaxHostBuckets, hooks: destHooks[hostBucket]{
			fresh: b.freshBucket, worth: b.bucketWorth, evicted: b.bucketEvicted,
		}}
	}
	return b
}

// MaxHostBuckets is the number of destinations a per-destination Budget
// (NewHostBudget, NewFixedHostBudget) keeps track of at most.
const MaxHostBuckets = maxDestinations

// UnlimitedBudget returns a Budget that never refuses a retry, for a
// Transport whose retries are bounded by its Policy alone. Use it with care:
// without a budget, every client multiplies a failing server's load by up to
// Policy.MaxAttempts.
func UnlimitedBudget() *Budget {
	return &Budget{made: true, unlimited: true}
}

// Tokens reports how many blind retries a single Budget (NewBudget) would
// allow now, before it earns more: the fewer of what the window and the
// pace leave (see Budget), plus what is left of burst while no success has
// been seen; for a Budget of NewFixedBudget, the tokens of its bucket. It is +Inf for an UnlimitedBudget. For a
// per-destination Budget (NewHostBudget) it reports the fewest any
// destination it keeps track of has, and burst when it keeps track of none;
// see TokensFor. A nil *Budget reports NaN: it stands for a Transport's own
// default Budget, which Transport.Budget returns.
func (b *Budget) Tokens() float64 {
	switch {
	case b == nil:
		return math.NaN()
	case b.unlimited:
		return math.Inf(1)
	case b.fixed && b.hosts != nil:
		least := b.burst
		for hb := range b.hosts.all() {
			least = min(least, hb.tokens(b.burst))
		}
		return float64(least) / microPerToken
	case b.fixed:
		return float64(b.one.micro.Load()) / microPerToken
	case b.ledgers != nil:
		e := b.slot()
		least := float64(b.burst) / microPerToken
		for l := range b.ledgers.all() {
			least = min(least, l.tokens(e, b.ratio))
		}
		return least
	case b.single != nil:
		return b.single.tokens(b.slot(), b.ratio)
	}
	return 0 // the zero Budget, which Policy.Validate refuses
}

// TokensFor reports how many retries requests to the destination host may
// make now, as Tokens does for a whole Budget. host is a URL's scheme and
// host, such as "https://api.example.com", with or without a port, read as
// request URLs are (see NewHostBudget); a destination the Budget keeps no
// track of has burst, or none when it was forgotten after it had spent or
// closed its burst (see NewHostBudget). For a single Budget, which serves every destination
// alike, it is Tokens(); for an UnlimitedBudget it is +Inf; for a nil
// *Budget NaN. A host that does not parse as a URL with a scheme and a host
// yields NaN, whatever the Budget.
func (b *Budget) TokensFor(host string) float64 {
	u, err := url.Parse(host)
	if b == nil || err != nil || u.Scheme == "" || u.Host == "" {
		return math.NaN()
	}
	if b.hosts == nil && b.ledgers == nil {
		return b.Tokens()
	}
	if b.ledgers != nil {
		if l := b.ledgers.find(u, ""); l != nil {
			return l.tokens(b.slot(), b.ratio)
		}
		if b.spent.has(b.ledgers.hash(u, "")) {
			return 0
		}
		return float64(b.burst) / microPerToken
	}
	if hb := b.hosts.find(u, ""); hb != nil {
		return float64(hb.tokens(b.burst)) / microPerToken
	}
	if b.spent.has(b.hosts.hash(u, "")) {
		return 0
	}
	return float64(b.burst) / microPerToken
}

// validate reports why b cannot be used.
func (b *Budget) validate() error {
	if !b.made {
		return errors.New("the zero Budget holds no tokens and would silently turn retries off: use NewHostBudget(0.1, 3) or NewBudget(0.1, 3) (the defaults), NewBudget(0, 0) to never retry, or UnlimitedBudget()")
	}
	return b.err
}

// deposit credits the Budget for one success of a request to u. It takes
// no lock that every request contends on and allocates nothing, but on the
// first success to a destination a per-destination Budget does not keep
// track of yet. A nil Budget ignores it.
func (b *Budget) deposit(u *url.URL) {
	switch {
	case b == nil || b.unlimited:
		return
	case b.single != nil:
		b.single.deposit(b.slot())
		return
	case b.ledgers != nil:
		e := b.slot()
		b.ledgers.findOrAdd(u, "", int64(e)).deposit(e)
		return
	case b.ratio == 0:
		return
	case b.hosts == nil:
		b.one.add(b.ratio, b.burst)
		return
	}
	if hb := b.hosts.find(u, ""); hb != nil && hb.add(b.ratio, b.burst) && !hb.kept {
		// A full bucket is the same as a new one: forget it, unless a
		// retry drains it first.
		b.hosts.removeIf(hb, b.retireFull)
	}
}

// budgetToken says which token a retry took, so that a refund gives back
// that one: a window's retry counted in a slot, one of the burst, or a
// bucket's.
type budgetToken uint64

const (
	noToken     budgetToken = 0
	windowToken budgetToken = 1 << 32 // | the slot the retry is counted in
	burstToken  budgetToken = 1 << 33
	bucketToken budgetToken = 1 << 34
)

// withdraw takes a token for one retry of a request to u and returns it, or
// noToken when there was none. A nil Budget has none.
func (b *Budget) withdraw(u *url.URL) budgetToken {
	switch {
	case b == nil:
		return noToken
	case b.unlimited:
		return bucketToken
	case b.single != nil:
		return b.single.withdraw(b.slot(), b.ratio)
	case b.ledgers != nil:
		e := b.slot()
		l := b.ledgers.findOrAdd(u, "", int64(e))
		l.lastRetry.Store(b.retries.Add(1))
		return l.withdraw(e, b.ratio)
	case b.hosts == nil:
		if ok, _ := b.one.take(); ok {
			return bucketToken
		}
		return noToken
	}
	for {
		hb := b.hosts.findOrAdd(u, "", 0)
		hb.lastRetry.Store(b.retries.Add(1))
		if ok, gone := hb.take(); !gone {
			if ok {
				return bucketToken
			}
			return noToken
		}
	}
}

// refund gives back the token, taken by withdraw, of a retry of a request
// to u that was not sent. A nil Budget ignores it.
func (b *Budget) refund(u *url.URL, t budgetToken) {
	switch {
	case b == nil || b.unlimited || t == noToken:
		return
	case b.single != nil:
		b.single.refund(t, b.burst)
		return
	case b.ledgers != nil:
		if l := b.ledgers.find(u, ""); l != nil {
			l.refund(t, b.burst)
		}
		return
	case b.hosts == nil:
		b.one.add(microPerToken, b.burst)
		return
	}
	if hb := b.hosts.find(u, ""); hb != nil {
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

// hostBucket is the bucket of one destination of a NewFixedHostBudget.
type hostBucket struct {
	bucket
	lastRetry atomic.Int64
	// kept marks the bucket of a destination forgotten while drained: it
	// started empty, and is kept when full, since a new one would be empty
	// too. Set before the bucket is published.
	kept bool
}

// freshBucket readies the bucket of a destination new to the table: full,
// or empty if the destination was forgotten while drained (see spent).
func (b *Budget) freshBucket(hb *hostBucket, h uint64, _ int64) {
	if b.spent.has(h) {
		hb.kept = true
		return
	}
	hb.micro.Store(b.burst)
}

// bucketWorth scores a bucket for eviction: a full one, the same as a new
// one, is worth least; then the one whose latest retry is the oldest.
func (b *Budget) bucketWorth(hb *hostBucket, _ int64) (int64, int64) {
	if n := hb.micro.Load(); n == retired || n >= b.burst {
		return 0, 0
	}
	return 1, hb.lastRetry.Load()
}

// bucketEvicted retires a bucket the table dropped, so that a retry that
// holds it looks its destination up again, and remembers a destination
// dropped while drained, so that it does not come back full.
func (b *Budget) bucketEvicted(hb *hostBucket, h uint64) {
	if n := hb.micro.Swap(retired); n != retired && n < b.burst {
		b.spent.add(h)
	}
}

// retireFull retires hb if it is full, and reports whether it did.
func (b *Budget) retireFull(hb *hostBucket) bool {
	return hb.micro.CompareAndSwap(b.burst, retired)
}

// spentBursts remembers, for a per-destination Budget, the destinations it
// forgot after they had spent some of their burst, or closed it with a
// success: a new entry for one of them starts without a burst, so that
// eviction never hands a destination back a burst it had used, which would
// let a program that talks to more than MaxHostBuckets failing hosts retry
// each of them by the burst again and again. It is lossy the safe way: one
// bit for each of 2^spentBits hash ranges, set and never cleared, so that a
// destination never seen may find its bit set by another and start without
// a burst too (after 10,000 forgotten destinations, about one in 27). It is
// allocated at the first such eviction: a program that stays within
// MaxHostBuckets destinations never pays for it.
type spentBursts struct {
	bits atomic.Pointer[[1 << spentBits / 64]atomic.Uint64]
}

const spentBits = 18

// add remembers the destination whose hash is h. Only the table's evicted
// hook calls it, under the table's lock.
func (s *spentBursts) add(h uint64) {
	p := s.bits.Load()
	if p == nil {
		p = new([1 << spentBits / 64]atomic.Uint64)
		s.bits.Store(p)
	}
	i := h >> (64 - spentBits)
	p[i/64].Or(1 << (i % 64))
}

// has reports whether the destination whose hash is h may have been
// forgotten after it used its burst.
func (s *spentBursts) has(h uint64) bool {
	p := s.bits.Load()
	if p == nil {
		return false
	}
	i := h >> (64 - spentBits)
	return p[i/64].Load()&(1<<(i%64)) != 0
}
