package retryhttp

import (
	"context"
	"net/http"
	"time"
)

// Observation: every answer is news, and each concern hears what it says as
// the answer arrives, before anything is decided. A success earns the
// Budget its deposit; the Throttle counts the attempt, and whether it was
// accepted; the quota holds read what it says of its quota; and, for the
// adaptive hedge delay, its time to response headers is a sample. A race's
// refusals are told as they come in (tellQuota, observeRefused), and its
// late losers on their own goroutines (see race.lost).

// observe records what an attempt's outcome says, and reports whether it
// calls for another attempt: the request is still live, its body could be
// read, and the Policy's rule says so. (A GetBody error never gets here:
// the retry loop ends on it.) A response the rule does not retry is a
// success, which credits the Budget: the budget grows with what the server
// serves, not with what is asked of it, so that retries cannot keep an
// overloaded server from recovering. The Throttle counts the attempt, and
// whether it was accepted; an attempt that failed because the caller
// stopped waiting says nothing of the server, and the Throttle does not
// count it. The quota holds hear what its response says.
//
// A response the rule retries but that arrived as the caller stopped
// waiting is a give-up: ended is then the reason, the context's error.
func (r *retrier) observe(resp *http.Response, err error) (retry bool, ended error) {
	retry, accepted, ended := r.judge(resp, err)
	if accepted {
		r.budget.deposit(r.req.URL)
	}
	if th := r.t.Policy.Throttle; th != nil && (err == nil || requestLive(r.req)) {
		th.record(r.req.URL, r.clock.Now(), accepted)
	}
	r.observeQuota(resp, accepted)
	return retry, ended
}

// judge reports whether an attempt's outcome calls for another attempt,
// whether it is a response the Policy does not retry (an accept), and,
// for a retryable response that arrived as the caller stopped waiting, the
// reason of that give-up.
func (r *retrier) judge(resp *http.Response, err error) (retry, accepted bool, ended error) {
	if err != nil && r.bodyFailed() {
		return false, false, nil
	}
	live := requestLive(r.req)
	if err != nil && !live {
		return false, false, nil // the caller's own cancellation, not the server's doing
	}
	if r.t.Policy.retryable(resp, r.classifiable(err)) {
		if !live {
			return false, false, r.endReason(context.Canceled)
		}
		return true, false, nil
	}
	if err == nil && resp != nil {
		return false, true, nil
	}
	return false, false, nil
}

// observeQuota records what resp, the answer to an attempt of r.req, says
// about its destination's quota. It costs a few header lookups when the
// destination has no hold and the response tells nothing of its quota.
func (r *retrier) observeQuota(resp *http.Response, success bool) {
	admitted, pastHold := r.admitted, r.pastHold
	r.admitted, r.pastHold = nil, nil
	if r.told {
		// A race told the holds of this answer as it came in (see
		// hedgedSend), and set r.pacedUntil: telling them again would count it
		// twice. The hold that let the attempt through still hears that
		// it ended.
		r.told = false
		if admitted != nil {
			r.t.holds.observeRequest(r.req, r.req.URL, r.clock, r.t.Policy.LimitKey, nil, false, admitted, pastHold, r.pastReset)
		}
		return
	}
	r.pacedUntil = r.t.holds.observeRequest(r.req, r.req.URL, r.clock, r.t.Policy.LimitKey, resp, success, admitted, pastHold, r.pastReset)
}

// tellQuota tells the quota holds what a refused attempt of a race, started
// as attempt first or as a hedge of it, was answered. The first attempt is
// the one a hold may have let through, which is told it ended.
func (r *retrier) tellQuota(res *raceResult, first int) {
	if res.n == first {
		r.observeQuota(res.resp, false)
	} else if until := r.t.holds.observe(res.req.URL, r.clock, r.t.Policy.LimitKey, res.resp, false, nil, nil, time.Time{}); until.After(r.pacedUntil) {
		r.pacedUntil = until
	}
	res.told = true
}

// observeRefused counts for the Throttle an attempt of a race whose
// outcome was retryable, as a request not accepted: the winner's is counted
// when the race's outcome is observed. The quota holds were told of it as
// it came in (tellQuota).
func (r *retrier) observeRefused() {
	if th := r.t.Policy.Throttle; th != nil {
		th.record(r.req.URL, r.clock.Now(), false)
	}
}
