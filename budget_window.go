package retryhttp

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync/atomic"
	"time"
)

// BudgetWindow is how far back a Budget made by NewBudget or NewHostBudget
// counts successes and retries: a success earns ratio retries for this long,
// then expires. It is counted in slots of 200 ms.
const BudgetWindow = 10 * time.Second

// BudgetPace is the span over which a Budget made by NewBudget or
// NewHostBudget paces its retries: in any BudgetPace, the share of the
// window's allowance that falls to it (a tenth), so that what a window
// earned is spread over it rather than spent at once.
const BudgetPace = time.Second

// ScheduledRetryMin is the shortest reset, named by the server (Retry-After,
// or a rate-limit reset), to which a quota hold that knows the announced
// quota may pace the retry of a rate-limit refusal without a token from the
// Budget. A retry to a shorter reset (X-RateLimit-Reset-After: 0.001) is
// blind and charged; so is every other retry of an attempt that reached the
// server, whatever wait it named (see Budget).
const ScheduledRetryMin = time.Second

const (
	budgetSlot  = 200 * time.Millisecond
	budgetSlots = 50 // BudgetWindow / budgetSlot
	paceSlots   = 5  // BudgetPace / budgetSlot
	// maxWindowRatio keeps ratio × successes within an int64 of millionths.
	maxWindowRatio = 1000
)

// NewBudget returns a Budget, of one window for every request that shares
// it whatever its destination, that allows a blind retry while the retries
// of the last BudgetWindow are fewer than ratio × its successes, paced, and
// burst retries in all before its first success (see Budget for the model
// and the bound). NewBudget(0.1, 3) allows a retry for every ten recent
// successes, and three before any. Ratios above 1000 count as
// 1000.
//
// A ratio that is negative, infinite or NaN, or a negative burst, makes an
// invalid Budget: a Transport using it returns an error naming the problem
// instead of sending anything (see Policy.Validate). NewBudget(0, 0) is the
// explicit budget that never allows a blind retry; NewBudget(0, n) allows n
// in all, before its first success.
//
// Before version 0.x, NewBudget made a token bucket whose burst never
// expired; NewFixedBudget still makes it.
func NewBudget(ratio float64, burst int) *Budget {
	b := &Budget{made: true}
	switch {
	case math.IsNaN(ratio) || math.IsInf(ratio, 0) || ratio < 0:
		b.err = fmt.Errorf("ratio %v must be a finite number of at least 0", ratio)
		return b
	case burst < 0:
		b.err = fmt.Errorf("burst %d must not be negative", burst)
		return b
	}
	burst = min(burst, math.MaxInt32)
	b.burst = int64(burst) * microPerToken
	b.ratio = int64(math.Round(math.Min(ratio, maxWindowRatio) * microPerToken))
	b.single = newLedger(burst)
	return b
}

// NewHostBudget returns a Budget that keeps a separate window for every
// destination, each behaving as NewBudget(ratio, burst) would, so that the
// retries of a client shared by many hosts are bounded per host, each by
// its own successes. Several Transports may share it. Its arguments are
// checked as NewBudget's. It is the Transport's default, with
// DefaultBudgetRatio and DefaultBudgetBurst.
//
// The destination of a request is its URL's scheme and host with the port
// made explicit, the scheme and host compared case-insensitively:
// https://API.example.com and https://api.example.com:443 share a window.
//
// Memory stays bounded however many hosts a program talks to: at most
// MaxHostBuckets destinations are kept; beyond, the one least recently
// active is dropped and, should it come back, starts afresh with no
// history. It gets its burst back only if it had used none of it and seen
// no success: a destination dropped after its burst was spent or closed
// comes back with none, so that the burst stays a once-only allowance
// however many destinations come and go.
func NewHostBudget(ratio float64, burst int) *Budget {
	b := NewBudget(ratio, burst)
	if b.err == nil {
		b.single = nil
		b.ledgers = &destTable[ledger]{limit: MaxHostBuckets, hooks: destHooks[ledger]{
			fresh: b.freshLedger, worth: ledgerWorth, evicted: b.ledgerEvicted,
		}}
	}
	return b
}

// clockBox holds the Clock a Budget reads.
type clockBox struct{ c Clock }

// bind makes c the Budget's clock, unless it has one already: the first
// Transport to use a Budget lends it its Policy's Clock.
func (b *Budget) bind(c Clock) {
	if b == nil || b.fixed || b.unlimited || b.clock.Load() != nil {
		return
	}
	b.clock.CompareAndSwap(nil, &clockBox{c})
}

// slot returns the number of the current slot. On the real clock it reads
// only the monotonic clock, as startTime does.
func (b *Budget) slot() uint32 {
	var ns int64
	box := b.clock.Load()
	if _, real := box.clockOr().(realClock); real {
		ns = int64(time.Since(monotonicBase))
	} else {
		ns = box.c.Now().UnixNano()
	}
	s := ns / int64(budgetSlot)
	if ns < 0 && ns%int64(budgetSlot) != 0 {
		s-- // round down, before 1970 on a fake clock
	}
	return uint32(s) // only differences of fewer than budgetSlots matter
}

func (x *clockBox) clockOr() Clock {
	if x == nil {
		return realClock{}
	}
	return x.c
}

// ledger counts one window's successes and retries, slot by slot, each slot
// one word stamped with its slot number so that a stale one reads as empty:
// reading and counting take no lock and allocate nothing.
type ledger struct {
	ok    [budgetSlots]atomic.Uint64 // slot<<32 | successes
	tries [budgetSlots]atomic.Uint64 // slot<<32 | uint32(retries)
	fresh atomic.Int64               // retries left of the burst
	seen  atomic.Bool                // a success was counted, or the burst is closed
	// lastRetry orders the destinations of a NewHostBudget by their latest
	// retry, for eviction; only retries, never the happy path, write it.
	lastRetry atomic.Int64
	// active is the latest slot anything was counted in, for eviction to
	// read one word a ledger rather than its hundred; written once a slot.
	active atomic.Uint32
}

func newLedger(burst int) *ledger {
	l := &ledger{}
	l.fresh.Store(int64(burst))
	return l
}

func stamp(w uint64) uint32 { return uint32(w >> 32) }

// inWindow reports whether the slot stamped s belongs to the window of slot e.
func inWindow(s, e uint32) bool { return e-s < budgetSlots }

// sums returns the successes and retries of the window of slot e, and the
// retries of its last BudgetPace.
func (l *ledger) sums(e uint32) (ok, tries, paced int64) {
	for i := range budgetSlots {
		if w := l.ok[i].Load(); inWindow(stamp(w), e) {
			ok += int64(uint32(w))
		}
		if w := l.tries[i].Load(); inWindow(stamp(w), e) {
			n := int64(int32(uint32(w)))
			tries += n
			if e-stamp(w) < paceSlots {
				paced += n
			}
		}
	}
	return ok, tries, paced
}

// allows reports, in millionths, how many more retries the window allows,
// what ratio × its successes leave, and how many the pace allows, its share
// of those earnings less the retries of the last BudgetPace.
func allows(ok, tries, paced int64, ratio int64) (window, pace int64) {
	earned := ratio * ok
	return earned - tries*microPerToken, earned*paceSlots/budgetSlots - paced*microPerToken
}

// admit reports whether a retry may be made: the window must hold a whole
// retry; the pace may hold a fraction, which admits the retry with that
// probability, so that a process that earns less than a retry in a
// BudgetPace still retries at the rate it earns, on average, rather than
// never.
func admit(window, pace int64) bool {
	if window < microPerToken || pace <= 0 {
		return false
	}
	return pace >= microPerToken || rand.Int64N(microPerToken) < pace
}

// bump adds d to the count of slot e in w's ring, starting the slot afresh
// if it holds an older one.
func bump(ring *[budgetSlots]atomic.Uint64, e uint32, d int32) {
	k := &ring[e%budgetSlots]
	for {
		old := k.Load()
		n := d
		if stamp(old) == e {
			n = int32(uint32(old)) + d
			if d > 0 && n < int32(uint32(old)) {
				return // saturated
			}
		}
		if k.CompareAndSwap(old, uint64(e)<<32|uint64(uint32(n))) {
			return
		}
	}
}

// touch records that l counted something in slot e.
func (l *ledger) touch(e uint32) {
	if l.active.Load() != e {
		l.active.Store(e)
	}
}

func (l *ledger) deposit(e uint32) {
	l.touch(e)
	bump(&l.ok, e, 1)
	if !l.seen.Load() {
		l.seen.Store(true)
	}
}

// young reports whether the burst is open: until the first success.
func (l *ledger) young() bool { return !l.seen.Load() }

// withdraw counts a retry in slot e if the window allows it, and else takes
// one of the burst while it is open (see young), and returns the token it
// took, or noToken.
func (l *ledger) withdraw(e uint32, ratio int64) budgetToken {
	e = l.latest(e)
	l.touch(e)
	k := &l.tries[e%budgetSlots]
	for first := true; ; first = false {
		// Load the current slot before summing: a retry counted in it
		// meanwhile makes the swap fail, and the window is summed again.
		old := k.Load()
		ok, tries, paced := l.sums(e)
		window, pace := allows(ok, tries, paced, ratio)
		if first && !admit(window, pace) || window < microPerToken || pace <= 0 {
			break
		}
		n := int32(1)
		if stamp(old) == e {
			n = int32(uint32(old)) + 1
		}
		if k.CompareAndSwap(old, uint64(e)<<32|uint64(uint32(n))) {
			return windowToken | budgetToken(e)
		}
	}
	for l.young() {
		f := l.fresh.Load()
		if f <= 0 {
			return noToken
		}
		if l.fresh.CompareAndSwap(f, f-1) {
			return burstToken
		}
	}
	return noToken
}

// latest returns e, or the latest slot counted in that is after it: a
// request that read the clock just before others counted in a later slot
// must count its retry in their window, which holds theirs, rather than in
// its own, which does not.
func (l *ledger) latest(e uint32) uint32 {
	for i := range budgetSlots {
		for _, w := range [2]uint64{l.ok[i].Load(), l.tries[i].Load()} {
			if d := stamp(w) - e; w != 0 && d != 0 && d < budgetSlots {
				e = stamp(w)
			}
		}
	}
	return e
}

// refund uncounts a retry that was not sent, given the token withdraw
// returned for it: a window's retry in the slot it was counted in, unless
// that slot has left the window, or one of the burst while it is open.
// Giving back another token would uncount a retry that was sent, in a pace
// or a window that already spent it.
func (l *ledger) refund(t budgetToken, burst int64) {
	if t&windowToken != 0 {
		s := uint32(t)
		k := &l.tries[s%budgetSlots]
		for {
			old := k.Load()
			if stamp(old) != s || int32(uint32(old)) <= 0 || k.CompareAndSwap(old, old-1) {
				return
			}
		}
	}
	if t != burstToken || !l.young() {
		return
	}
	for {
		f := l.fresh.Load()
		if f*microPerToken >= burst || l.fresh.CompareAndSwap(f, f+1) {
			return
		}
	}
}

// tokens reports how many retries the window allows now.
func (l *ledger) tokens(e uint32, ratio int64) float64 {
	ok, tries, paced := l.sums(e)
	window, pace := allows(ok, tries, paced, ratio)
	n := max(0, float64(min(window, pace))/microPerToken)
	if l.young() {
		n += float64(l.fresh.Load())
	}
	return n
}

// freshLedger readies the ledger of a destination new to a NewHostBudget at
// slot now: with its burst, or with the burst closed if the destination was
// forgotten after it had used it (see spentBursts).
func (b *Budget) freshLedger(l *ledger, h uint64, now int64) {
	l.active.Store(uint32(now))
	if b.spent.has(h) {
		l.seen.Store(true)
		return
	}
	l.fresh.Store(b.burst / microPerToken)
}

// ledgerWorth scores a ledger for eviction at slot now: the longest idle is
// worth least, and of those the one whose latest retry is the oldest. Idle
// is read from one word rather than the window's hundred, which keeps the
// lock that a new destination takes short: with MaxHostBuckets destinations
// tracked, each new one scores them all.
func ledgerWorth(l *ledger, now int64) (int64, int64) {
	idle := uint32(now) - l.active.Load()
	return -int64(idle), l.lastRetry.Load()
}

// ledgerEvicted remembers a destination dropped after it had used its
// burst, so that it does not come back with it.
func (b *Budget) ledgerEvicted(l *ledger, h uint64) {
	if l.seen.Load() || l.fresh.Load()*microPerToken < b.burst {
		b.spent.add(h)
	}
}

// The slot counts must match the durations they stand for.
var (
	_ = [1]struct{}{}[int(BudgetWindow/budgetSlot)-budgetSlots]
	_ = [1]struct{}{}[int(BudgetPace/budgetSlot)-paceSlots]
)
