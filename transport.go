// One request, one pipeline. RoundTrip walks it top to bottom, one step to
// a file, and the retrier carries the request along:
//
//	admit    admit.go    the Throttle may reject a new request; a quota hold
//	                     keeps an attempt until its limit's reset, or until an
//	                     answer says how much quota is left
//	send     attempt.go  one attempt through Base; with Policy.Hedge, a race
//	         hedge.go    of hedged copies whose first final answer wins
//	observe  observe.go  every answer is news: a success earns the Budget its
//	                     deposit, the Throttle counts the attempt, the holds
//	                     read its quota, the hedge delay its latency
//	decide   policy.go   return the outcome, give up on it (the Err sentinels
//	                     say why), or retry: how long to wait, within the
//	                     limits, with a token from the Budget when it costs one
//	wait     wait.go     drain the old body, sleep until the retry is due
//
// then admit again, until an outcome is final. A hedge is a way of sending,
// not a second loop; a retry asks the Throttle in decide, before it takes a
// token. Each concern keeps its own state and logic in its own file
// (quota.go, throttle.go, budget.go, the Hedge in hedge.go); the steps only
// ask it and tell it. The happy path is one pass from admit to decide, with
// no allocation and no lock.

// Package retryhttp provides an http.RoundTripper that retries requests a
// server could not serve for now (503 Service Unavailable, 429 Too Many
// Requests, a 403 that is a rate-limit refusal, a refused or broken
// connection, an attempt that timed out) without making the server's trouble
// worse.
//
// It retries only requests that are safe to send again (idempotent methods,
// or an Idempotency-Key header, with a body that can be replayed), waits as
// long as the server asked (its Retry-After header in either form, or else
// its rate-limit headers, with jitter so that clients do not return in a
// burst) or else along a jittered exponential schedule, and stops early,
// without sleeping, when the attempts, the time allowed, the request
// context's deadline or a retry Budget (per destination by default) run out.
// When it stops, the caller gets the last response as it came, or the last
// error in a *GiveUpError that says why; Policy.OnGiveUp says it too.
//
// Wrap any transport, here one with a larger idle pool; a nil Base means
// http.DefaultTransport, and the zero Policy the defaults:
//
//	base := &http.Transport{MaxIdleConnsPerHost: 16}
//	client := &http.Client{Transport: &retryhttp.Transport{Base: base}}
package retryhttp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// Transport is an http.RoundTripper that sends each request through Base and
// retries it according to Policy.
//
// The zero Transport is ready to use: it sends through
// http.DefaultTransport with the default Policy. A Transport is safe for
// concurrent use by multiple goroutines; like http.Transport, it should be
// reused rather than created per request, because it holds the retry Budget
// its requests share when Policy.Budget is nil. Its fields must not be
// changed once it is in use.
type Transport struct {
	// Base sends each attempt. nil means http.DefaultTransport.
	//
	// A Base that wraps another RoundTripper (to log, to count, to trace)
	// should declare what it wraps with an Unwrap() http.RoundTripper
	// method, as a ResponseWriter does for http.ResponseController: the
	// Transport follows Unwrap to the *http.Transport to see whether an
	// https request may have gone through a proxy, whose refusal of a
	// CONNECT net/http reports in the proxy's own words. Through a Base it
	// cannot see into, no bare error is read as net/http's, and the
	// retries only their text would give (an HTTP/2 GOAWAY that left out
	// the first stream of a new connection, a connection the server closed
	// as the request went out) are not made for https requests.
	Base http.RoundTripper

	// Policy decides what is retried, how long to wait and when to stop.
	// The zero Policy means the documented defaults.
	Policy Policy

	budgetOnce sync.Once
	ownBudget  *Budget
	holds      holds // quota holds per destination; see quota.go

	latencyOnce sync.Once
	latency     *latencies // the adaptive hedge delay's samples
}

// RoundTrip sends req through t.Base and, when the outcome calls for it and
// the Policy allows, sends it again. It implements http.RoundTripper.
//
// RoundTrip never modifies req. The first attempt sends req itself (or, when
// the request has a body or Policy.AttemptTimeout is set, a shallow copy
// with its own context or a body wrapper), and each retry a clone whose body
// comes from req.GetBody and whose context carries its attempt number (see
// Attempt). Its context may change the Policy for it (see NoRetry,
// Idempotent and MaxAttempts). A request that may not be sent twice (see Policy.Idempotent)
// gets exactly one attempt, unless that attempt failed in a way that proves
// the request never reached the server and its body can be replayed. With
// Policy.Hedge set, an attempt of a request that may be resent can race
// hedged copies of it, each an attempt of its own (see Hedge).
//
// When the retries end (see the Err sentinels for every reason), RoundTrip
// returns at once, without sleeping, the last response whole and unread with
// a nil error, or, when the last attempt failed with a transport error, a
// *GiveUpError holding that error and the reason. If the request's context
// is done (or its Cancel channel closed) during a wait, RoundTrip returns a
// *GiveUpError whose Reason is the context's error; if it ends as a
// retryable response arrives, that response is returned as a give-up with
// the same reason. An error from reading the caller's request body, or
// from req.GetBody, ends the request at once with that very error, for
// every request; only a hedge (see Hedge) whose GetBody fails is simply not
// sent, since the attempt it would have raced is still in flight. An error that was never worth retrying is returned as it
// is on the first attempt, and wrapped with the number of attempts after
// retries.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	r := new(retrier) // carries req through the steps; it stays on the stack
	if err := r.begin(t, req); err != nil {
		closeRequestBody(req)
		return nil, err
	}
	var (
		resp *http.Response
		err  error
		d    decision // the retry decided last; the zero decision took no token
	)
	for n := 1; ; n = r.sent + 1 {
		// admit: the Throttle, and the quota hold of the request's limit.
		if stop := r.admit(n); stop != nil {
			if n == 1 {
				closeRequestBody(req) // nothing was sent
				return nil, stop
			}
			return nil, r.stopped(err, d, stop)
		}
		// send: one attempt, or a race of hedged copies of it.
		resp, err = r.send(n)
		if n > 1 && errors.Is(err, errReopenBody) {
			d.refund(r) // the retry was never sent
			// Not an attempt for the Throttle; the hold that let it
			// through must still hear that it ended.
			r.observeQuota(nil, false)
			return nil, err
		}
		// observe: the Budget, the Throttle and the quota holds hear what
		// the outcome says.
		retry, ended := r.observe(resp, err)
		// decide: return the outcome, give up on it, or retry after a wait.
		switch {
		case ended != nil:
			return r.giveUp(r.sent, resp, err, ended, serverWaitAt(resp, r.clock.Now()))
		case !retry:
			return r.final(n, resp, err)
		case !r.mayRetry(err):
			return r.giveUp(r.sent, resp, err, r.notResendable, serverWaitAt(resp, r.clock.Now()))
		}
		if d = r.decide(r.sent, resp, err); d.reason == nil {
			d.reason = r.announce(resp, err, d)
		}
		if d.reason != nil {
			return r.giveUpOn(resp, err, d)
		}
		// wait: drain the old body, and sleep until the retry is due.
		if stop := r.wait(resp, d); stop != nil {
			return nil, r.stopped(err, d, stop)
		}
	}
}

// send makes attempt n of r.req: one attempt (see attempt.go), or, when the
// Policy hedges and the request may be resent, a race of hedged copies
// whose first final answer wins (see hedge.go). Either way the loop sees
// one outcome.
func (r *retrier) send(n int) (*http.Response, error) {
	r.sent = n
	r.pacedUntil = time.Time{}
	r.raceReached = false
	if r.notResendable == nil && r.t.Policy.Hedge != nil {
		return r.hedgedSend(n)
	}
	return r.sendOne(n)
}

// begin readies r to carry req through t: the Policy and the request's own
// are checked first, so that nothing is sent under an invalid one.
func (r *retrier) begin(t *Transport, req *http.Request) error {
	p := &t.Policy
	if err := p.Validate(); err != nil {
		return err
	}
	if req.URL == nil {
		return errors.New("retryhttp: nil Request.URL")
	}
	over := requestPolicyOf(req.Context())
	if err := over.validate(); err != nil {
		return err
	}
	budget := t.budget()
	budget.bind(p.clock())
	*r = retrier{t: t, req: req, clock: p.clock(), budget: budget, maxAttempts: over.attempts(p)}
	r.notResendable = p.whyNotResendable(req, over.idempotent)
	if r.notResendable == nil || bodyReplayable(req) {
		// A request that may not be resent is still sent again after an
		// error that proves it never left (see neverSent).
		r.start = startTime(r.clock)
		r.traceConns = r.notResendable != nil
	}
	return nil
}

// final returns an outcome the Policy does not retry: as it came, after a
// first send; after retries, with resp.Request set (Outcome reads the
// attempt number from it, and a Base need not set it) and an error wrapped
// with the number of attempts made.
func (r *retrier) final(n int, resp *http.Response, err error) (*http.Response, error) {
	if n == 1 {
		return resp, err
	}
	if resp != nil && resp.Request == nil {
		resp.Request = r.last
	}
	if err != nil && !r.bodyFailed() {
		err = fmt.Errorf("retryhttp: failed after %s: %w", plural(r.sent, "attempt"), err)
	}
	return resp, err
}

// giveUpOn ends the retries for the reason d gives, with the last outcome,
// and gives back the token d took, if any. A Backoff that returned nil is a
// configuration error, returned as it is.
func (r *retrier) giveUpOn(resp *http.Response, err error, d decision) (*http.Response, error) {
	if d.reason == errNilBackoff {
		discard(r.req.Context(), resp, r.abandon)
		return nil, errNilBackoff
	}
	d.refund(r)
	return r.giveUp(r.sent, resp, err, d.reason, d.server)
}

// stopped ends the retries of a request whose caller stopped waiting, or
// whose Clock failed, during the wait for the retry d decided (stop says
// which), or during its hold: the old response was discarded, so the last
// error err, if any, goes into the *GiveUpError. The token d took is given
// back: the retry was never sent.
func (r *retrier) stopped(err error, d decision, stop error) error {
	d.refund(r)
	return r.reportGiveUp(r.sent, nil, err, r.endReason(stop), d.server)
}

// classifiable returns err as the Policy's rule and neverSent see it:
// marked when it may hold a proxy's words (see markPeerText). The mark is
// for classifying only: events and the caller get err as Base returned it.
func (r *retrier) classifiable(err error) error {
	if err == nil {
		return nil
	}
	return markPeerText(r.t.base(), r.last, err)
}

// bodyReplayable reports whether req's body can be sent again: it has none,
// or GetBody makes a fresh one.
func bodyReplayable(req *http.Request) bool {
	return req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
}

// CloseIdleConnections closes the idle connections of Base, or of
// http.DefaultTransport when Base is nil, if it has such a method, so that
// http.Client.CloseIdleConnections reaches through the Transport. The
// Transport never calls it on its own: a retry reuses a connection when it
// can.
func (t *Transport) CloseIdleConnections() {
	type closeIdler interface{ CloseIdleConnections() }
	if c, ok := t.base().(closeIdler); ok {
		c.CloseIdleConnections()
	}
}

// retrier carries one request through its retries.
type retrier struct {
	t      *Transport
	req    *http.Request // the caller's request, never sent again itself
	clock  Clock
	budget *Budget
	start  time.Time // when the first attempt began
	// maxAttempts is the Policy's MaxAttempts, or the request's override
	// (see requestpolicy.go).
	maxAttempts int
	// notResendable is nil when the request may be sent more than once,
	// and otherwise the rule that forbids it (see Policy.whyNotResendable).
	notResendable error
	// last is the request of the latest attempt, as it went to Base.
	last *http.Request
	// bodyErr records an error from reading the request body of the latest
	// attempt; set only for requests with a body.
	bodyErr *recordingBody
	// abandon cancels the context of the latest attempt, when it has one of
	// its own, to set free a discarded body stuck in a Read.
	abandon context.CancelCauseFunc
	sched   schedule
	// traceConns is set for a request that may not be resent but whose
	// body can be replayed: its attempts record in tries what net/http's
	// own tries of it did (see tryTrace).
	traceConns bool
	tries      *tryTrace // the latest attempt's, when traceConns is set
	// admitted is the quota hold that let the latest attempt through, to
	// be told of its answer.
	admitted *hold
	// pastHold is the hold, spent until pastReset, that the latest attempt
	// was sent past because waiting for it did not fit: a success then
	// shows that the server reset early.
	pastHold  *hold
	pastReset time.Time
	// played is the sum of the waits this request played on a virtual
	// Clock, which real time, and so the context's deadline, never saw.
	played time.Duration
	// named marks when the attempt about to be sent began to be delayed by
	// waits the server named (a retry's Retry-After, then a hold's reset),
	// so that their sum, not each alone, fits MaxRetryAfter.
	named  delayMark
	sent   int // attempts sent so far, hedges included
	hedges int // hedges sent so far

	// told is set when a race has told the quota holds of the latest
	// attempt's answer already, as it came in.
	told bool
	// raceReached is set when a copy of the latest attempt's race other
	// than the one whose outcome it returns may have reached the server:
	// the race's retry is then charged whatever that outcome says.
	raceReached bool
	// pacedUntil is the reset of the quota hold that the latest attempt's
	// answer spent, when that hold knows the announced quota and the reset
	// was at least ScheduledRetryMin ahead (see holds.observeRequest): a
	// retry the hold will hold takes no token. Zero otherwise.
	pacedUntil time.Time
}

// endReason returns why the caller stopped waiting for r.req: its
// context's own error, so that == works even when a Clock's Sleep wraps it,
// or context.Canceled for a closed Cancel channel; fallback when neither
// ended.
func (r *retrier) endReason(fallback error) error {
	if err := r.req.Context().Err(); err != nil {
		return err
	}
	if !requestLive(r.req) {
		return context.Canceled
	}
	return fallback
}

// requestLive reports whether the caller still waits for req: neither its
// context is done nor its deprecated Cancel channel closed.
func requestLive(req *http.Request) bool {
	if req.Context().Err() != nil {
		return false
	}
	//lint:ignore SA1019 net/http still honours the deprecated Cancel channel, so must a retry's wait.
	if cancel := req.Cancel; cancel != nil {
		select {
		case <-cancel:
			return false
		default:
		}
	}
	return true
}

// giveUp ends the retries of a request whose last outcome was retryable:
// the response is returned whole, an error inside a *GiveUpError.
func (r *retrier) giveUp(attempts int, resp *http.Response, err, reason error, server serverWait) (*http.Response, error) {
	return resp, r.reportGiveUp(attempts, resp, err, reason, server)
}

// reportGiveUp calls OnGiveUp and returns the error RoundTrip returns with
// resp: nil when resp is returned, a *GiveUpError otherwise.
func (r *retrier) reportGiveUp(attempts int, resp *http.Response, err, reason error, server serverWait) error {
	if resp != nil {
		withOutcome(resp, r.req, attempts, reason)
	}
	if hook := r.t.Policy.OnGiveUp; hook != nil {
		hook(GiveUpEvent{
			Request: r.req, Attempts: attempts, Response: resp, Err: err, Reason: reason,
			RetryAfter: server.wait, HasRetryAfter: server.ok, RetryAfterHeader: server.header,
		})
	}
	if resp != nil {
		return nil
	}
	return &GiveUpError{Attempts: attempts, Reason: reason, Err: err}
}

func closeRequestBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

func (t *Transport) base() http.RoundTripper {
	if t.Base == nil {
		return http.DefaultTransport
	}
	return t.Base
}

// Budget returns the retry Budget the Transport uses: Policy.Budget, or,
// when that is nil, the Transport's own default (NewHostBudget with
// DefaultBudgetRatio and DefaultBudgetBurst), made on first use, so that a
// program can read the default's tokens (Budget.TokensFor) for a gauge.
func (t *Transport) Budget() *Budget { return t.budget() }

func (t *Transport) budget() *Budget {
	if t.Policy.Budget != nil {
		return t.Policy.Budget
	}
	t.budgetOnce.Do(func() { t.ownBudget = NewHostBudget(DefaultBudgetRatio, DefaultBudgetBurst) })
	return t.ownBudget
}
