package retryhttp

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// The defaults that a zero field of Policy stands for.
const (
	// DefaultMaxAttempts is the number of attempts per request, the first
	// included, when Policy.MaxAttempts is 0.
	DefaultMaxAttempts = 4
	// DefaultMaxElapsed bounds how late a retry may start, counted from the
	// start of the first attempt, when Policy.MaxElapsed is 0.
	DefaultMaxElapsed = 30 * time.Second
	// DefaultMaxRetryAfter is the longest Retry-After honoured when
	// Policy.MaxRetryAfter is 0.
	DefaultMaxRetryAfter = 30 * time.Second
	// DefaultBudgetRatio and DefaultBudgetBurst configure the Budget that a
	// Transport makes for itself when Policy.Budget is nil,
	// NewHostBudget(DefaultBudgetRatio, DefaultBudgetBurst): a blind retry
	// may be made for every ten successes of the last BudgetWindow, and
	// three in all by a destination that has not answered with a success
	// yet: every retry the first request of a fresh process may make under
	// DefaultMaxAttempts.
	DefaultBudgetRatio = 0.1
	DefaultBudgetBurst = 3
)

// The default backoff schedule, used when no Retry-After applies: exponential
// from 1 s, capped at 4 s, each wait randomised by ±50% so that clients that
// failed together spread out.
//
// It starts at 1 s, as go-retryablehttp's minimum wait and gRPC's initial
// backoff do, so that a request's retries outlast a brief failure rather
// than all falling inside it: under DefaultMaxAttempts the three waits, 1, 2
// and 4 s ±50%, put the last retry at least 3.5 s after the first attempt,
// past a blip of 3 s, while a start at 250 ms spent every retry within
// 2.6 s. The cap stays 4 s: the default MaxAttempts draws exactly the three
// waits up to it, so the cap changes nothing there, and a Policy that raises
// MaxAttempts keeps retrying every 4 s ±50%, about five more times within
// the 30 s of DefaultMaxElapsed, where a schedule doubling on to 8 and 16 s
// would fit one.
const (
	defaultInitialInterval     = time.Second
	defaultMultiplier          = 2
	defaultMaxInterval         = 4 * time.Second
	defaultRandomizationFactor = 0.5
)

// Policy decides which requests are retried, on which outcomes, how long to
// wait between attempts and when to give up. Its zero value is ready to use:
// every zero or nil field stands for the default its documentation gives.
//
// A Policy is read, never written, by the Transport that holds it, so one
// Policy value may be copied into many Transports; its hooks must be safe for
// concurrent use. Fields must not be changed while a Transport using the
// Policy is in use.
type Policy struct {
	// MaxAttempts is the number of attempts per request, the first
	// included. 0 means DefaultMaxAttempts (4); 1 never retries. A
	// request's context may set its own: see NoRetry and MaxAttempts.
	MaxAttempts int

	// MaxElapsed bounds the time between the start of a request's first
	// attempt and the start of any retry: a retry that could not start
	// within it is not waited for, counting the time OnRetry and the
	// discarding of the old response's body may take. 0 means
	// DefaultMaxElapsed (30 s); time.Duration(math.MaxInt64) means no limit.
	MaxElapsed time.Duration

	// MaxRetryAfter is the longest wait the Transport accepts from the
	// server, named by Retry-After or by a rate-limit header (see
	// RateLimitWait). A response asking for a longer wait ends the retries
	// at once and is returned as it is, so that the caller can decide what
	// to do with it. 0 means DefaultMaxRetryAfter (30 s);
	// time.Duration(math.MaxInt64) means no cap, though a wait beyond what a
	// time.Duration holds always ends the retries. It bounds the waits an
	// attempt has from the server all together: a retry after a named wait
	// is not then held for a quota hold's reset (see OnHold) past it, nor
	// is a request held for one reset and then another.
	MaxRetryAfter time.Duration

	// Backoff returns a fresh schedule of waits for one request; it is
	// called at most once per request, when its first retry is considered
	// (never when MaxAttempts is 1, nor for a request that may not be
	// resent, unless an attempt of it never left; see Idempotent). The schedule supplies the wait whenever the response names
	// none (no valid Retry-After or rate-limit header), and it is consulted
	// before every retry, so that a schedule returning backoff.Stop ends
	// the retries even when the server named a time; it must not return
	// nil. A nil Backoff means an
	// exponential schedule with jitter: about 1 s before the first retry,
	// doubling up to 4 s (1 s, 2 s, 4 s, 4 s…), each wait randomised by
	// ±50%.
	Backoff func() backoff.BackOff

	// Budget limits blind retries across every request that shares it, to
	// ratio × their recent successes; see Budget. nil means a
	// per-destination budget of the Transport's own, made on first use with
	// NewHostBudget(DefaultBudgetRatio, DefaultBudgetBurst), so that a dead
	// host cannot spend the retries of a healthy one; Transport.Budget
	// returns it. Set the same *Budget on several Transports to share it,
	// NewBudget for one window across all destinations, NewFixedHostBudget
	// for the token bucket of earlier versions, or UnlimitedBudget() to turn
	// budgeting off. A retry is charged by what its failed attempt cost the
	// server: every retry of an attempt that reached it takes a token, a
	// named wait or not; one that provably never reached it (a refused
	// dial) takes none, nor does the retry of a rate-limit refusal that a
	// quota hold knowing the announced quota paces to a reset a second or
	// more ahead (see Budget).
	Budget *Budget

	// Retryable reports whether the outcome of an attempt, a response or a
	// transport error (exactly one of them is non-nil), calls for another
	// attempt. A request whose context is done is never retried, whatever
	// it says: it is then asked only about a response, to tell whether that
	// is a success that earns the Budget its ratio, and not about an error.
	// It is not asked about an error from reading the caller's request
	// body, which ends the request. An attempt that timed out, by
	// AttemptTimeout or by one of net/http's own per-attempt timeouts while
	// the request's context is live, reaches it as an error that matches
	// ErrAttemptTimeout. nil means DefaultRetryable; see RetryStatuses to
	// retry other statuses.
	Retryable func(resp *http.Response, err error) bool

	// Idempotent reports whether the request may be sent more than once
	// with the same effect. nil means DefaultIdempotent. It is not asked
	// about a request whose context says so (see the function Idempotent).
	// Whatever it says,
	// a request whose body cannot be replayed (a body other than
	// http.NoBody without GetBody) is never sent twice. A request it
	// rejects is still sent again, when its body can be replayed, after an
	// attempt that failed in a way that proves no copy of the request,
	// net/http's own resends included, ever reached the server: the
	// connection could not be dialled (and net/http had got no connection
	// for the attempt before), or the HTTP/2 server refused the stream
	// (REFUSED_STREAM) or left it out of a GOAWAY (and no earlier try of
	// net/http's within the attempt had written the request's headers, as
	// httptrace tells). Such a retry is budgeted and limited like any other. Any
	// other retryable outcome of a request that may not be resent is
	// given up on with ErrNotIdempotent or ErrBodyNotReplayable, which say
	// which rule applied.
	Idempotent func(req *http.Request) bool

	// OnRetry, if not nil, is called once before each wait for a retry,
	// after every check has passed and the retry's token, if it is a blind
	// retry, has been taken from the Budget. It runs on the goroutine of the RoundTrip call, and
	// its time counts against the wait; should it take so long that the
	// retry no longer fits MaxElapsed or the context's deadline, the retry
	// is not made, its token is given back, and OnGiveUp follows.
	OnRetry func(RetryEvent)

	// OnGiveUp, if not nil, is called exactly once for every request whose
	// last outcome Retryable judged worth retrying but that is returned
	// anyway (see GiveUpEvent for why), a retry cut short by the caller
	// during its wait or its quota hold included; and once for a new
	// request that Throttle rejected, with Reason ErrThrottled. It is never
	// called for a success, nor for an outcome that was not retryable, nor
	// for a new request cancelled while a quota hold kept it back: that
	// one had no outcome, and OnHold reports it. It runs on the goroutine
	// of the RoundTrip call, just before RoundTrip returns.
	OnGiveUp func(GiveUpEvent)

	// AttemptTimeout bounds how long each attempt may take to produce its
	// response headers. An attempt that takes longer is abandoned (its
	// connection closed) and counts as a transport error that matches
	// ErrAttemptTimeout, retried like a broken connection. The body of the
	// response returned is not bounded by it. 0 means no limit, and costs
	// nothing; a limit costs a few allocations per attempt (see the
	// README's "Timeouts").
	AttemptTimeout time.Duration

	// OnHold, if not nil, is called once for every attempt that a quota
	// hold kept back (see HoldEvent), when the hold ends: before the
	// attempt is sent, or when the caller gave up during the hold. Quota
	// holds are always on: a Transport does not send to a destination
	// whose server said its quota is spent until it resets, and then sends
	// no more than the quota the server announced; a 503 that named only
	// its wait (a server shedding load) holds nothing, and its own retry
	// waits the named time, charged to the Budget (see quota.go's
	// documentation, or docs/holds-and-throttling.md). It runs on the
	// goroutine of the RoundTrip call.
	OnHold func(HoldEvent)

	// LimitKey, if not nil, says which requests to a destination share a
	// limit when the server does not say it: requests given the same
	// non-empty key share quota holds, and only those, so that a spent
	// quota of one endpoint (say "/search") does not hold the others. An
	// empty key means the destination's own hold, which every request
	// shares when LimitKey is nil. A server that names the resource an
	// answer draws on (X-RateLimit-Resource, X-RateLimit-Bucket, a
	// RateLimit-Policy name) is followed without it, and a request whose
	// route is known to draw on a named resource is held by that
	// resource's hold, whatever its key (see quota.go's documentation, or
	// docs/holds-and-throttling.md). LimitKey is called only for a
	// destination that has a hold, and it must be fast and safe for
	// concurrent use. It does not split the retry Budget: a Budget bounds
	// the extra load retries put on a server, whichever of its limits they
	// draw on.
	LimitKey func(*http.Request) string

	// Throttle, if not nil, rejects locally, before anything is sent, a
	// share of the requests and retries to a destination that has lately
	// accepted too few of its attempts; see Throttle and NewThrottle. A
	// rejected request ends at once, nothing sent, with an error matching
	// ErrThrottled; a rejected retry ends the retries. OnGiveUp is called
	// with Reason ErrThrottled for both. nil, the default, throttles
	// nothing. One Throttle may be shared by several Policies.
	Throttle *Throttle

	// Hedge, if not nil, turns on hedged requests: a copy of a request
	// that may be resent is sent when an attempt has had no response
	// headers for a delay, and the first answer wins; see Hedge. Hedges
	// count as attempts and take their tokens from Budget. nil, the
	// default, sends no hedge.
	Hedge *Hedge

	// OnHedge, if not nil, is called once for each hedge, just after it is
	// sent, on the goroutine of the RoundTrip call. Which attempt won shows
	// in the final response: Hedged(resp.Request.Context()).
	OnHedge func(HedgeEvent)

	// Clock supplies the current time and the waits between attempts. nil
	// means the real clock. A fake clock (see package retrytest) lets tests
	// play long Retry-After waits without sleeping. The request context's
	// deadline is always compared with the real time, to which a virtual
	// Clock's waits (see VirtualClock), played at once, are added.
	Clock Clock
}

// Validate reports every field of p that has an invalid value (a negative
// number, a Budget that is invalid or can never grant a retry, an invalid
// Hedge or Throttle), all at once: an errors.Join of one error per field,
// each naming its field, so that errors.Is and errors.As see every cause.
// It returns nil for a valid Policy. The Transport calls it before sending
// anything and returns its error instead of sending.
func (p *Policy) Validate() error {
	// A valid Policy, checked on every request, allocates nothing: append
	// is reached only for a problem, and errors.Join of none is nil.
	var errs []error
	if p.MaxAttempts < 0 {
		errs = append(errs, fmt.Errorf("retryhttp: invalid Policy.MaxAttempts %d: must not be negative", p.MaxAttempts))
	}
	if p.MaxElapsed < 0 {
		errs = append(errs, fmt.Errorf("retryhttp: invalid Policy.MaxElapsed %v: must not be negative", p.MaxElapsed))
	}
	if p.MaxRetryAfter < 0 {
		errs = append(errs, fmt.Errorf("retryhttp: invalid Policy.MaxRetryAfter %v: must not be negative", p.MaxRetryAfter))
	}
	if p.AttemptTimeout < 0 {
		errs = append(errs, fmt.Errorf("retryhttp: invalid Policy.AttemptTimeout %v: must not be negative", p.AttemptTimeout))
	}
	if p.Hedge != nil {
		if err := p.Hedge.validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if p.Budget != nil {
		if err := p.Budget.validate(); err != nil {
			errs = append(errs, fmt.Errorf("retryhttp: invalid Policy.Budget: %w", err))
		}
	}
	if p.Throttle != nil {
		if err := p.Throttle.validate(); err != nil {
			errs = append(errs, fmt.Errorf("retryhttp: invalid Policy.Throttle: %w", err))
		}
	}
	return errors.Join(errs...)
}

func (p *Policy) maxAttempts() int {
	if p.MaxAttempts == 0 {
		return DefaultMaxAttempts
	}
	return p.MaxAttempts
}

func (p *Policy) maxElapsed() time.Duration {
	if p.MaxElapsed == 0 {
		return DefaultMaxElapsed
	}
	return p.MaxElapsed
}

func (p *Policy) maxRetryAfter() time.Duration {
	if p.MaxRetryAfter == 0 {
		return DefaultMaxRetryAfter
	}
	return p.MaxRetryAfter
}

func (p *Policy) newBackoff() backoff.BackOff {
	if p.Backoff != nil {
		return p.Backoff()
	}
	return backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(defaultInitialInterval),
		backoff.WithMultiplier(defaultMultiplier),
		backoff.WithMaxInterval(defaultMaxInterval),
		backoff.WithRandomizationFactor(defaultRandomizationFactor),
		backoff.WithMaxElapsedTime(0), // MaxElapsed is the Policy's to enforce
	)
}

func (p *Policy) clock() Clock {
	if p.Clock == nil {
		return realClock{}
	}
	return p.Clock
}

// retryable applies Policy.Retryable, or its default.
func (p *Policy) retryable(resp *http.Response, err error) bool {
	if p.Retryable != nil {
		return p.Retryable(resp, err)
	}
	return DefaultRetryable(resp, err)
}

// serverWait is the wait a response named, and the header that named it.
type serverWait struct {
	wait   time.Duration
	ok     bool
	header string
}

// serverWaitAt reads the wait resp asks for: Retry-After first, the
// standard, and else its rate-limit headers. It is read only from a response
// judged retryable, so the happy path never parses these headers.
func serverWaitAt(resp *http.Response, now time.Time) serverWait {
	if resp == nil {
		return serverWait{}
	}
	if d, ok := RetryAfter(resp, now); ok {
		return serverWait{wait: d, ok: true, header: "Retry-After"}
	}
	if d, header, ok := rateLimitWait(resp, now); ok {
		return serverWait{wait: d, ok: true, header: header}
	}
	return serverWait{}
}

// decision is what the Transport does after a retryable outcome: wait, then
// retry, or give up for reason.
type decision struct {
	decidedAt   time.Time     // the clock's time when the wait was decided
	decidedReal time.Time     // the real time then
	wait        time.Duration // counted from decidedAt
	server      serverWait
	reason      error       // nil: retry
	token       budgetToken // the token taken from the Budget for the retry, if any
}

// errNilBackoff is a configuration error found only when a retry is
// considered.
var errNilBackoff = errors.New("retryhttp: Policy.Backoff returned a nil backoff.BackOff")

// mayRetry reports whether r.req may be sent again after an attempt that
// failed with err (nil for a response): always when it may be resent, and
// otherwise only when its body can be replayed and err proves that the
// attempt never reached the server.
func (r *retrier) mayRetry(err error) bool {
	return r.notResendable == nil || (bodyReplayable(r.req) && r.neverReached(err))
}

// neverReached reports whether the latest attempt failed with an error err
// that proves it never reached the server (see neverSent): sending it again
// cannot repeat its effect, and costs the server nothing.
func (r *retrier) neverReached(err error) bool {
	return err != nil && !r.raceReached && neverSent(r.classifiable(err), r.tries.history())
}

// decide decides whether attempt, which ended in resp or err, is followed by
// another, and how long to wait first. The checks run in an order that
// takes a token from the Budget only for a retry that will be made, and that
// builds the backoff schedule only for a request that may retry.
func (r *retrier) decide(attempt int, resp *http.Response, err error) decision {
	p := &r.t.Policy
	now := r.clock.Now()
	d := decision{decidedAt: now, decidedReal: time.Now(), server: serverWaitAt(resp, now)}
	if attempt >= r.maxAttempts {
		d.reason = ErrAttemptsUsedUp
		return d
	}
	// A wait that saturated at what a Duration holds is beyond any limit,
	// even one of math.MaxInt64.
	if d.server.ok && (d.server.wait >= maxDelay || d.server.wait > p.maxRetryAfter()) {
		d.reason = ErrRetryAfterTooLong
		return d
	}
	backoffWait, stop := r.sched.next(p)
	if stop != nil {
		d.reason = stop
		return d
	}
	lim := r.limits(now)
	if d.server.ok {
		d.wait = saturatingAdd(d.server.wait, serverWaitJitter(d.server.wait, lim.room(d.server.wait)))
	} else {
		d.wait = max(backoffWait, 0)
	}
	if d.reason = lim.check(max(d.wait, drainAllowance(resp))); d.reason != nil {
		return d
	}
	if r.throttled() {
		d.reason = ErrThrottled
		return d
	}
	// A retry is charged by what its failed attempt cost the server, and
	// by nothing the server said about time: a named wait sets when the
	// retry goes, never how many may go (see Budget). An attempt that
	// provably never reached the server cost it nothing; the retry of a
	// refusal that a quota hold paces to a reset at least
	// ScheduledRetryMin ahead is one of the requests of the quota the
	// server announced for its next window.
	if r.neverReached(err) || r.pacedByHold(now, lim, d) {
		return d
	}
	if d.token = r.budget.withdraw(r.req.URL); d.token == noToken {
		d.reason = ErrBudgetEmpty
	}
	return d
}

// announce tells OnRetry of the retry d decided, after attempt r.sent
// ended in resp or err, and returns why it may no longer be made: OnRetry
// and the drain take time that the limits must count. The retry starts at
// the later of the decided moment and the end of the longest drain, and
// that must still fit.
func (r *retrier) announce(resp *http.Response, err error, d decision) error {
	if hook := r.t.Policy.OnRetry; hook != nil {
		hook(RetryEvent{
			Request: r.last, Attempt: r.sent, Response: resp, Err: err,
			RetryAfter: d.server.wait, HasRetryAfter: d.server.ok, RetryAfterHeader: d.server.header,
			Wait: d.wait,
		})
	}
	spent := r.sinceDecision(d)
	return r.limits(d.decidedAt.Add(spent)).check(max(d.wait-spent, drainAllowance(resp)))
}

// pacedByHold reports whether the retry d decided will be held by the quota
// hold that the latest answer spent (r.pacedUntil), one that knows the quota
// the server announced: the wait until its reset, with the most jitter a
// hold adds, fits MaxRetryAfter together with the retry's own named wait,
// and, after the retry's own wait, the limits. The estimate errs long, so
// that a hold that would not be waited for (it passes a limit) never makes
// its retry free: such a retry is sent past the hold, and is charged.
func (r *retrier) pacedByHold(now time.Time, lim limits, d decision) bool {
	if r.pacedUntil.IsZero() {
		return false
	}
	hold := max(r.pacedUntil.Sub(now), 0)
	hold = saturatingAdd(hold, max(hold/5, time.Second))
	named := hold
	if d.server.ok {
		named = saturatingAdd(named, d.server.wait)
	}
	return r.t.Policy.holdLimit(named, saturatingAdd(max(d.wait, 0), hold), lim) == nil
}

// refund gives back the token of a retry decided and not sent, if it took
// one.
func (d *decision) refund(r *retrier) {
	if d.token != noToken {
		r.budget.refund(r.req.URL, d.token)
	}
}

// limits are the time left, from one moment, until MaxElapsed and the
// context's deadline pass.
type limits struct {
	elapsed     time.Duration // until MaxElapsed passes; negative once it has
	deadline    time.Duration // until the deadline, when hasDeadline
	hasDeadline bool
}

func (r *retrier) limits(now time.Time) limits {
	spent := max(now.Sub(r.start), 0) // Sub saturates; a clock that went back spent nothing
	lim := limits{elapsed: r.t.Policy.maxElapsed() - spent}
	if deadline, ok := r.req.Context().Deadline(); ok {
		// The waits played on a virtual Clock took no real time, but a
		// retry after them is that much later: they count against the
		// deadline as real waits would (a retry's own wait, then a hold's).
		lim.deadline, lim.hasDeadline = saturatingSub(time.Until(deadline), r.played), true
	}
	return lim
}

// check reports why a retry that starts in `in` would pass a limit: a retry
// may start at MaxElapsed exactly, but one at the deadline would be sent
// with an expired context. When both would pass, the reason is the limit
// that ends first.
func (l limits) check(in time.Duration) error {
	pastDeadline := l.hasDeadline && in >= l.deadline
	pastElapsed := in > l.elapsed
	switch {
	case pastDeadline && pastElapsed:
		if l.deadline <= l.elapsed {
			return ErrDeadline
		}
		return ErrMaxElapsed
	case pastDeadline:
		return ErrDeadline
	case pastElapsed:
		return ErrMaxElapsed
	}
	return nil
}

// jitterMargin is kept free between a jittered wait and the limit it was
// shrunk to fit, for OnRetry and the scheduling of the retry.
const jitterMargin = 20 * time.Millisecond

// room reports how much jitter may be added to a server-named wait without
// the retry passing a limit, keeping jitterMargin free; the wait itself is
// checked separately.
func (l limits) room(wait time.Duration) time.Duration {
	end := l.elapsed
	if l.hasDeadline && l.deadline < end {
		end = l.deadline
	}
	return end - wait - jitterMargin // both within range: no overflow for wait <= maxDelay
}

// serverWaitJitter returns the random extra added to a server-named wait,
// uniform in [0, max(wait/5, 1 s)) so that clients told the same moment (a
// rate limit's reset above all) do not all come back at once. When that
// range does not fit in room, the extra is drawn uniformly from what does,
// so that the jitter itself never makes the retry give up and clients near a
// limit do not bunch up at it.
func serverWaitJitter(wait, room time.Duration) time.Duration {
	limit := max(wait/5, time.Second)
	limit = min(limit, room)
	if limit <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(limit)))
}

// saturatingAdd returns a+b for non-negative durations, or the largest
// Duration when the sum would not fit.
func saturatingAdd(a, b time.Duration) time.Duration {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// saturatingSub returns a-b for a non-negative b, or the smallest Duration
// when the difference would not fit.
func saturatingSub(a, b time.Duration) time.Duration {
	if a < math.MinInt64+b {
		return math.MinInt64
	}
	return a - b
}

// schedule is a request's backoff schedule, made on first use.
type schedule struct {
	b    backoff.BackOff
	made bool
}

// next returns the schedule's next wait, ErrBackoffStop when it says stop,
// or errNilBackoff.
func (s *schedule) next(p *Policy) (time.Duration, error) {
	if !s.made {
		s.b, s.made = p.newBackoff(), true
	}
	if s.b == nil {
		return 0, errNilBackoff
	}
	wait := s.b.NextBackOff()
	if wait == backoff.Stop {
		return 0, ErrBackoffStop
	}
	return wait, nil
}
