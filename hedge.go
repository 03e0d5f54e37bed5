package retryhttp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Hedge turns on hedged requests: when an attempt has produced no response
// headers after a delay, a copy of the request is sent alongside it, the
// first answer that is not retryable wins, and the other attempts are
// cancelled. Hedging cuts the tail of latency that retries cannot reach: an
// attempt that is merely slow, not failed. Set it in Policy.Hedge; a nil
// *Hedge, the default, sends no hedge.
//
// Only a request that may be resent, by the same rules as a retry (see
// Policy.Idempotent), is hedged. A hedge is an attempt: it carries its own
// attempt number (see Attempt; Hedged tells it is a hedge), it counts
// towards Policy.MaxAttempts, so that MaxAttempts bounds the copies of a
// request the server can see however they came to be sent, and it takes a
// token from the Policy's retry Budget like a retry. A hedge that finds no
// token, no attempt left, the caller's context done, Policy.MaxElapsed
// passed, its destination under a quota hold (its server said its quota
// was spent: see Policy.OnHold) or a rejection by Policy.Throttle is not
// sent; the Throttle counts each attempt of a race that ends refused. When
// every attempt of a race ends in an outcome
// Policy.Retryable retries (a 503 from each, say), the race's outcome goes
// to the retries as a single attempt's would, and the next retry may be
// hedged in turn while Max allows. Once an attempt of a race has been
// refused with a wait named by the server (Retry-After, or its rate-limit
// fields), no further hedge is sent in that race: the retries keep that
// wait. The race's outcome is the response that allows the retry latest:
// the time it named, read as it came in, or else the time it came in; of
// two that allow the same time, the later one; and a response before an
// error. So a plain 503, or a shorter Retry-After, that comes in after a 403
// with Retry-After: 5 does not bring the retry forward: it waits the 5 s
// read from that 403, and a request that gives up returns that 403 (a
// Retry-After beyond Policy.MaxRetryAfter then ends the retries, as it
// would for a single attempt). No retry goes out before any copy's answer
// said it may. Policy.Retryable is asked about each
// attempt's outcome as it comes in, and about the winner's once more when
// the race is over.
//
// Every answer of a race is news, a loser's too. The quota holds hear each
// refusal as it comes in, so that a losing copy's 429 with Retry-After holds
// the next request to its destination as the winner's would. A loser
// answered after the race is over (a Base that did not see its cancellation
// in time) is told to the holds, and counted by the Throttle as accepted or
// not as Policy.Retryable judges it, on that attempt's own goroutine, before
// its body is closed unread; the winner never waits for it. Only the
// winner's success credits the Budget: the request was served once, and a
// loser's success is the extra load its hedge's token paid for. The retry
// after a race all of whose copies were refused is free of the Budget only
// when none of them may have reached the server, whichever outcome the race
// returns.
//
// The zero Hedge hedges once per request, after the adaptive delay. A
// Hedge is read, never written, by the Transports that use it; each
// Transport keeps its own adaptive estimate, safe for concurrent use.
type Hedge struct {
	// Delay is how long an attempt may go without response headers before
	// a hedge is sent, and then again before each further hedge. 0 means
	// adaptive: the 95th percentile of the time to response headers of the
	// last 128 attempts to the request's destination (its scheme, host and
	// port), measured in real time. An adaptive Transport sends no hedge
	// to a destination until it has 20 samples of it: until then it does
	// not know what slow is, and a hedge is extra load on the server. An
	// attempt cancelled because a later one won counts as a sample of the
	// time it had run, a lower bound of its own, so that hedges that win do
	// not pull the estimate down. On a Clock other than the real one, such as
	// retrytest's fake clock, the delay is waited for with Clock.Sleep, so
	// it moves a fake clock and shows in its Waits; it starts once the
	// attempt it hedges has been written to the server (and a few
	// milliseconds of real time more), so that a test server's scripted
	// answers go to the attempts in their order.
	Delay time.Duration

	// Max is the number of hedges a request may send, over all its
	// attempts. 0 means 1.
	Max int
}

// HedgeEvent describes a hedge that has just been sent; it is what
// Policy.OnHedge receives.
type HedgeEvent struct {
	// Request is the caller's request. It must not be modified.
	Request *http.Request
	// Attempt is the hedge's attempt number (see Attempt): it follows the
	// attempts sent before it, hedges included.
	Attempt int
	// Delay is how long the Transport waited for response headers, since
	// the attempt before this one was sent, before sending the hedge.
	Delay time.Duration
	// Adaptive reports whether Delay came from the adaptive estimate (a
	// Hedge.Delay of 0) rather than Hedge.Delay.
	Adaptive bool
}

// Hedged reports whether the request with context ctx is a hedged attempt:
// a copy sent because an earlier attempt was slow. A Base transport can
// read it from req.Context(), and a caller from resp.Request.Context() of
// the final response, to tell whether a hedge won.
func Hedged(ctx context.Context) bool {
	h, _ := ctx.Value(hedgeKey{}).(bool)
	return h
}

// hedgeKey is the context key that marks a hedged attempt.
type hedgeKey struct{}

// The adaptive delay's estimator.
const (
	hedgeWindow = 128 // samples kept per destination
	hedgeWarmup = 20  // samples needed before the adaptive delay hedges
	// maxHedgeDestinations bounds the destinations whose latency is kept;
	// beyond it the least recently used is forgotten and starts a new
	// warm-up when next seen.
	maxHedgeDestinations = maxDestinations
)

// errHedgeLost is the cause of cancelling an attempt that lost a race.
var errHedgeLost = errors.New("retryhttp: another attempt answered first")

func (h *Hedge) validate() error {
	switch {
	case h.Delay < 0:
		return fmt.Errorf("retryhttp: invalid Policy.Hedge.Delay %v: must not be negative (0 means adaptive)", h.Delay)
	case h.Max < 0:
		return fmt.Errorf("retryhttp: invalid Policy.Hedge.Max %d: must not be negative (0 means 1)", h.Max)
	}
	return nil
}

func (h *Hedge) max() int {
	if h.Max == 0 {
		return 1
	}
	return h.Max
}

// raceResult is the outcome of one attempt of a race.
type raceResult struct {
	n       int // attempt number
	resp    *http.Response
	err     error
	req     *http.Request           // as it went to Base
	body    *recordingBody          // nil for a request without a body
	release context.CancelCauseFunc // cancels the attempt's context
	sent    time.Time               // real time, for the latency estimate
	took    time.Duration
	// wrote is closed once the attempt's request is written, or it ended;
	// made on a Clock other than the real one only (see hedgeTimer).
	wrote     chan struct{}
	wroteOnce sync.Once
	// told is set once the quota holds have been told of the outcome.
	told bool
	// until is, for a refusal, the earliest time on the Clock it allows a
	// retry at: the time it named, or else when it came in.
	until time.Time
}

// written closes res.wrote, once.
func (res *raceResult) written() {
	if res.wrote != nil {
		res.wroteOnce.Do(func() { close(res.wrote) })
	}
}

// race carries the attempts of one race. Its channels hold nothing: an
// attempt's outcome is handed over while the race runs, and discarded by the
// attempt's own goroutine once it is over, so that a race needs no room for
// the attempts it may send (Max and MaxAttempts may be as large as an int).
type race struct {
	results chan *raceResult
	over    chan struct{} // closed when a winner is chosen
	t       *Transport
	clock   Clock
}

// hedgedSend makes attempt n of r.req, racing it against up to the
// remaining hedges, and returns the winning outcome; r.sent becomes the
// number of attempts sent so far, hedges included.
func (r *retrier) hedgedSend(n int) (*http.Response, error) {
	p := &r.t.Policy
	h := p.Hedge
	lat := r.t.latencyFor(r.req.URL, h.Delay == 0)
	delay, adaptive := h.Delay, h.Delay == 0
	left := min(h.max()-r.hedges, r.maxAttempts-n)
	if adaptive {
		var warm bool
		if delay, warm = lat.estimate(); !warm {
			left = 0
		}
	}
	if left <= 0 {
		// Nothing to race: one attempt as without hedging, timed for the
		// estimate.
		start := time.Now()
		resp, err := r.sendOne(n)
		if resp != nil {
			lat.add(time.Since(start))
		}
		return resp, err
	}
	ctx := r.req.Context()
	done := ctx.Done()
	rc := &race{results: make(chan *raceResult), over: make(chan struct{}), t: r.t, clock: r.clock}
	// Once the race is over, even by a panic of a hook, the attempts still
	// running discard their outcomes rather than wait for a receiver.
	defer close(rc.over)
	inFlight := map[*raceResult]bool{}
	var latest *raceResult // the attempt sent last
	launch := func(k int, hedge bool) error {
		res, err := r.launch(rc, k, hedge)
		if err == nil {
			inFlight[res] = true
			latest = res
		}
		return err
	}
	if err := launch(n, false); err != nil {
		r.sent = n
		return nil, err
	}
	sent := n
	var timer hedgeTimer
	timer.start(ctx, r.clock, delay, latest.wrote)
	defer timer.stop()
	var kept, winner *raceResult
	for winner == nil {
		select {
		case res := <-rc.results:
			delete(inFlight, res)
			if res.resp != nil {
				lat.add(res.took)
			}
			if r.raceFinal(res) {
				winner = res
				break
			}
			// A refusal's news of the quota is told as it comes in, for
			// the next request and the next hedge, whether or not this
			// answer is the one the race returns.
			r.tellQuota(res, n)
			if res.resp != nil || !neverSent(markPeerText(r.t.base(), res.req, res.err), sendHistory{}) {
				// This copy may have reached the server, whichever
				// outcome the race returns: its retry is charged.
				r.raceReached = true
			}
			now := r.clock.Now()
			res.until = now
			if sw := serverWaitAt(res.resp, now); sw.ok {
				// The server asked to wait (Retry-After, or its rate-limit
				// fields): the retries keep that wait, and no hedge is
				// sent before it.
				res.until = now.Add(sw.wait)
				left = 0
				timer.stop()
			}
			if kept == nil || kept.resp == nil || res.resp != nil && !kept.until.After(res.until) {
				// The latest outcome, a response before an error: a
				// response may name the wait. But not one that would let
				// the retry go before an earlier answer said: the answer
				// that named the latest time is kept, and the retries read
				// their wait from it.
				kept, res = res, kept
			}
			if res != nil {
				r.observeRefused()
				closeLoser(res)
			}
			if len(inFlight) == 0 {
				winner = kept
			}
		case <-timer.c:
			// A quota hold counts what it lets through; a hedge would pass
			// it, so none is sent to a destination under one.
			if left == 0 || !requestLive(r.req) || r.limits(r.clock.Now()).check(0) != nil ||
				r.t.holds.find(r.req.URL) != nil || r.throttled() {
				left = 0
				break
			}
			token := r.budget.withdraw(r.req.URL)
			if token == noToken {
				left = 0
				break
			}
			if launch(sent+1, true) != nil {
				// GetBody failed: the hedge is not sent, and the retries
				// will meet the error if they need the body.
				r.budget.refund(r.req.URL, token)
				left = 0
				break
			}
			sent++
			r.hedges++
			if p.OnHedge != nil {
				p.OnHedge(HedgeEvent{Request: r.req, Attempt: sent, Delay: delay, Adaptive: adaptive})
			}
			if left--; left > 0 {
				timer.start(ctx, r.clock, delay, latest.wrote)
			}
		case <-done:
			// No hedge after the caller is gone; the attempts end on their
			// own, their contexts being the caller's children.
			left, done = 0, nil
			timer.stop()
		}
	}
	if kept != nil && kept != winner {
		r.observeRefused()
		closeLoser(kept)
	}
	now := time.Now()
	for res := range inFlight {
		res.release(errHedgeLost)
		if res.sent.Before(winner.sent) {
			// Censored: it took at least this long, longer than the
			// winner. One sent after the winner tells nothing.
			lat.add(now.Sub(res.sent))
		}
	}
	if resp := winner.resp; resp != nil {
		if winner.n != sent {
			// Outcome counts the attempts made, which the winner's own
			// number does not tell when others were sent after it.
			withOutcome(resp, winner.req, sent, nil)
		} else if resp.Request == nil {
			resp.Request = winner.req // Outcome reads the attempt number there
		}
	}
	r.sent = sent
	r.told = winner.told
	r.bodyErr = winner.body
	r.last = winner.req
	r.abandon = winner.release
	return winner.resp, winner.err
}

// raceFinal reports whether an attempt's outcome ends the race: one the
// Policy does not retry, an error from reading the caller's body, or the
// caller's own cancellation.
func (r *retrier) raceFinal(res *raceResult) bool {
	if res.err != nil && (res.bodyError() != nil || !requestLive(r.req)) {
		return true
	}
	var err error
	if res.err != nil {
		err = markPeerText(r.t.base(), res.req, res.err)
	}
	return !r.t.Policy.retryable(res.resp, err)
}

// launch sends attempt n of r.req on a goroutine of its own, with a context
// of its own that carries its attempt number, and reports its outcome to
// rc. The first attempt of a request sends the caller's body; every other
// one a fresh body from GetBody.
func (r *retrier) launch(rc *race, n int, hedge bool) (*raceResult, error) {
	p := &r.t.Policy
	req := r.req
	ctx := req.Context()
	if n > 1 {
		ctx = context.WithValue(ctx, attemptKey{}, n)
	}
	if hedge {
		ctx = context.WithValue(ctx, hedgeKey{}, true)
	}
	res := &raceResult{n: n}
	if _, real := r.clock.(realClock); !real {
		res.wrote = make(chan struct{})
		ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
			WroteRequest: func(httptrace.WroteRequestInfo) { res.written() },
		})
	}
	ctx, ac := startAttempt(ctx, p.AttemptTimeout)
	res.release = ac.release
	// A clone for every attempt, the first too: attempts run at once, and a
	// Base that changed one's header must not race with the cloning of the
	// next.
	attemptReq := req.Clone(ctx)
	if req.Body != nil && req.Body != http.NoBody {
		if n > 1 || hedge {
			body, err := req.GetBody()
			if err != nil {
				ac.abandon()
				return nil, fmt.Errorf("%w for attempt %d: %w", errReopenBody, n, err)
			}
			attemptReq.Body = body
		}
		res.body = &recordingBody{body: attemptReq.Body}
		attemptReq.Body = res.body
		res.body.wrapGetBody(attemptReq)
	}
	res.req = attemptReq
	base := r.t.base()
	callerCtx := req.Context()
	res.sent = time.Now()
	go func() {
		resp, err := base.RoundTrip(attemptReq)
		res.took = time.Since(res.sent)
		res.written()
		if bodyErr := res.bodyError(); err != nil && bodyErr != nil {
			ac.abandon()
			res.resp, res.err = nil, callerBodyError(err, bodyErr)
		} else {
			res.resp, res.err = ac.finish(callerCtx, resp, err)
		}
		select {
		case rc.results <- res:
		case <-rc.over:
			// Nobody receives once the race is over, so this is the only
			// case left then: a loser.
			rc.lost(res)
		}
	}()
	return res, nil
}

// lost discards the outcome of an attempt that came in after its race was
// over, on the attempt's own goroutine: the winner is not kept waiting. An
// answer is news all the same, told before its body is closed: the quota
// holds hear what it says of the quota (a 429 with Retry-After holds the
// next request), and the Throttle counts it as the request it was, accepted
// or not as Policy.Retryable judges it. It earns the Budget nothing: the
// winner's success was the request's, and a loser's is the extra load the
// hedge's token paid for. An attempt that ended in an error, its
// cancellation by the winner above all, tells nothing of the server.
func (rc *race) lost(res *raceResult) {
	if resp := res.resp; resp != nil && res.err == nil {
		accepted := !rc.t.Policy.retryable(resp, nil)
		if th := rc.t.Policy.Throttle; th != nil {
			th.record(res.req.URL, rc.clock.Now(), accepted)
		}
		rc.t.holds.observe(res.req.URL, rc.clock, rc.t.Policy.LimitKey, resp, accepted, nil, nil, time.Time{})
	}
	closeLoser(res)
}

// closeLoser discards the outcome of an attempt whose answer is not
// returned: its body is closed unread, which costs an HTTP/1 connection
// but never delays the winner, and its context is released.
func closeLoser(res *raceResult) {
	if res.resp != nil && res.resp.Body != nil {
		res.resp.Body.Close()
	}
	res.release(errHedgeLost)
}

// hedgeTimer fires after the hedge delay, on the real clock with a timer,
// and on any other Clock by sleeping on it in a goroutine, so that a fake
// clock (see package retrytest) plays the delay in virtual time. A fake
// clock's Sleep returns at once in real time, so that a hedge would race
// the attempt it hedges to the server, and a test's scripted answers would
// go to either: on such a Clock the delay starts once that attempt's
// request is written (httptrace's WroteRequest), or it ended, or, for a
// Base that reports no writing, after writtenWait of real time.
type hedgeTimer struct {
	c      <-chan struct{}
	t      *time.Timer
	cancel context.CancelFunc
}

// writtenWait bounds the real time a hedge on a Clock other than the real
// one waits for the attempt it hedges to be written.
const writtenWait = 50 * time.Millisecond

// writtenGrace is the real time a hedge on a Clock other than the real one
// waits after the attempt it hedges was written, for the server to read it.
const writtenGrace = 5 * time.Millisecond

func (h *hedgeTimer) start(ctx context.Context, clock Clock, d time.Duration, wrote <-chan struct{}) {
	h.stop()
	c := make(chan struct{}, 1)
	h.c = c
	if _, real := clock.(realClock); real {
		h.t = time.AfterFunc(d, func() { c <- struct{}{} })
		return
	}
	ctx, h.cancel = context.WithCancel(ctx)
	go func() {
		if wrote != nil {
			t := time.NewTimer(writtenWait)
			select {
			case <-wrote:
				// Written is not yet read: give a loopback server the
				// moment it takes to read the request.
				t.Reset(writtenGrace)
				select {
				case <-t.C:
				case <-ctx.Done():
				}
			case <-t.C:
			case <-ctx.Done():
			}
			t.Stop()
		}
		if clock.Sleep(ctx, d) == nil {
			c <- struct{}{}
		}
	}()
}

func (h *hedgeTimer) stop() {
	if h.t != nil {
		h.t.Stop()
		h.t = nil
	}
	if h.cancel != nil {
		h.cancel()
		h.cancel = nil
	}
	h.c = nil
}

// latencies holds the recent times to response headers per destination,
// for the adaptive hedge delay, in a destTable that forgets the least
// recently used destination.
type latencies struct {
	table destTable[latencyRing]
	uses  atomic.Int64 // counts lookups, to find the least recently used
}

// latencyRing holds one destination's last hedgeWindow samples, in the
// order they came and sorted, and their 95th percentile.
type latencyRing struct {
	mu      sync.Mutex
	samples [hedgeWindow]time.Duration // a ring, oldest at next once full
	sorted  [hedgeWindow]time.Duration // the same samples, in order
	n       int                        // samples held, up to hedgeWindow
	next    int
	p95     time.Duration
	lastUse atomic.Int64
}

// latencyFor returns the latency ring of u's destination, or nil when the
// delay is fixed.
func (t *Transport) latencyFor(u *url.URL, adaptive bool) *latencyRing {
	if !adaptive {
		return nil
	}
	t.latencyOnce.Do(func() {
		t.latency = &latencies{table: destTable[latencyRing]{limit: maxHedgeDestinations, hooks: destHooks[latencyRing]{
			worth: func(lr *latencyRing, _ int64) (int64, int64) { return lr.lastUse.Load(), 0 },
		}}}
	})
	return t.latency.ring(u)
}

func (l *latencies) ring(u *url.URL) *latencyRing {
	lr := l.table.findOrAdd(u, "", 0)
	lr.lastUse.Store(l.uses.Add(1))
	return lr
}

// add records one time to response headers; a nil ring, that of a fixed
// Hedge.Delay, records nothing.
func (lr *latencyRing) add(d time.Duration) {
	if lr == nil {
		return // a fixed Hedge.Delay keeps no samples
	}
	lr.mu.Lock()
	defer lr.mu.Unlock()
	// The sorted copy is kept by moving at most a window's worth of
	// samples, not by sorting: the oldest sample leaves, the new one
	// enters at its place.
	if lr.n == hedgeWindow {
		i, _ := slices.BinarySearch(lr.sorted[:lr.n], lr.samples[lr.next])
		copy(lr.sorted[i:], lr.sorted[i+1:lr.n])
		lr.n--
	}
	lr.samples[lr.next] = d
	lr.next = (lr.next + 1) % hedgeWindow
	j, _ := slices.BinarySearch(lr.sorted[:lr.n], d)
	copy(lr.sorted[j+1:lr.n+1], lr.sorted[j:lr.n])
	lr.sorted[j] = d
	lr.n++
	if lr.n >= hedgeWarmup {
		lr.p95 = lr.sorted[(95*lr.n+99)/100-1] // the smallest sample at or above 95% of them
	}
}

// estimate returns the 95th percentile of the samples, and whether there
// are enough of them to hedge on.
func (lr *latencyRing) estimate() (time.Duration, bool) {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	return lr.p95, lr.n >= hedgeWarmup
}

// bodyError returns the error from reading the caller's body in this
// attempt, or nil.
func (res *raceResult) bodyError() error {
	if res.body == nil {
		return nil
	}
	return res.body.get()
}
