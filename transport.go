// Package retryhttp provides an http.RoundTripper that retries requests a
// server could not serve for now (503 Service Unavailable, 429 Too Many
// Requests, a refused or broken connection) without making the server's
// trouble worse.
//
// It retries only requests that are safe to send again (idempotent methods,
// or an Idempotency-Key header, with a body that can be replayed), waits as
// long as the server's Retry-After header says (in either of its forms, with
// a little jitter so that clients do not return in a burst) or else along a
// jittered exponential schedule, and stops early, without sleeping, when the
// attempts, the time allowed, the request context's deadline or a shared
// retry Budget run out. When it stops, the caller gets the last response as
// it came, or the last error.
//
// Wrap any transport:
//
//	client := &http.Client{Transport: &retryhttp.Transport{}}
package retryhttp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
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
	Base http.RoundTripper

	// Policy decides what is retried, how long to wait and when to stop.
	// The zero Policy means the documented defaults.
	Policy Policy

	budgetOnce sync.Once
	ownBudget  *Budget
}

// Limits on the part of a discarded response body read to keep its
// connection alive: a larger or slower body costs the connection, which is
// cheaper than stalling the retry on it.
const (
	drainLimit   = 32 << 10
	drainTimeout = 50 * time.Millisecond
)

// RoundTrip sends req through t.Base and, when the outcome calls for it and
// the Policy allows, sends it again. It implements http.RoundTripper.
//
// RoundTrip never modifies req: the first attempt sends req itself, and each
// retry a clone whose body comes from req.GetBody. A request that may not be
// sent twice (see Policy.Idempotent) gets exactly one attempt, whose result
// is returned as it is.
//
// When the retries end (the attempts are used up, the next wait would end
// past Policy.MaxElapsed or the context's deadline, the Retry-After exceeds
// Policy.MaxRetryAfter, the backoff schedule says stop, or the Budget is
// empty), RoundTrip returns at once the last response, unread and with a nil
// error, or, when the last attempt failed with a transport error, that error
// wrapped with the number of attempts made. If the request's context is done
// during a wait, RoundTrip returns an error that wraps the context's error.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	p := &t.Policy
	if err := p.Validate(); err != nil {
		closeRequestBody(req)
		return nil, err
	}
	budget := t.budget()
	budget.deposit()
	base := t.base()
	if !p.mayResend(req) {
		return base.RoundTrip(req)
	}
	r := retrier{t: t, req: req, clock: p.clock(), budget: budget}
	r.start = r.clock.Now()
	resp, err := base.RoundTrip(req)
	if !t.shouldRetry(req, resp, err) {
		return resp, err
	}
	return r.retry(resp, err)
}

// retrier carries one request through its retries.
type retrier struct {
	t        *Transport
	req      *http.Request // the caller's request, never sent again itself
	clock    Clock
	budget   *Budget
	start    time.Time       // when the first attempt began
	schedule backoff.BackOff // made when the first retry is considered, in retry
}

// retry runs the retries of r.req, whose first attempt ended in resp or err
// and called for another.
func (r *retrier) retry(resp *http.Response, err error) (*http.Response, error) {
	p := &r.t.Policy
	ctx := r.req.Context()
	if r.schedule = p.newBackoff(); r.schedule == nil {
		discard(resp)
		return nil, errors.New("retryhttp: Policy.Backoff returned a nil backoff.BackOff")
	}
	for attempt := 1; ; attempt++ {
		ev, stop := r.next(attempt, resp, err)
		if stop != "" {
			return resp, wrapAttempts(attempt, stop, err)
		}
		if p.OnRetry != nil {
			p.OnRetry(ev)
		}
		discard(resp)
		if sleepErr := r.clock.Sleep(ctx, ev.Wait); sleepErr != nil {
			return nil, fmt.Errorf("retryhttp: waiting %v before attempt %d: %w", ev.Wait, attempt+1, sleepErr)
		}
		retryReq, cloneErr := cloneForRetry(ctx, r.req)
		if cloneErr != nil {
			return nil, fmt.Errorf("retryhttp: reopening the request body for attempt %d: %w", attempt+1, cloneErr)
		}
		resp, err = r.t.base().RoundTrip(retryReq)
		if !r.t.shouldRetry(r.req, resp, err) {
			return resp, wrapAttempts(attempt+1, "", err)
		}
	}
}

// next decides whether to retry after the given attempt, which ended in
// resp or err, and how long to wait first. A non-empty stop says why not.
// The checks run in an order that takes a token from the budget only for a
// retry that will be made.
func (r *retrier) next(attempt int, resp *http.Response, err error) (ev RetryEvent, stop string) {
	p := &r.t.Policy
	ev = RetryEvent{Request: r.req, Attempt: attempt, Response: resp, Err: err}
	if attempt >= p.maxAttempts() {
		return ev, "attempts used up"
	}
	now := r.clock.Now()
	ev.RetryAfter, ev.HasRetryAfter = RetryAfter(resp, now)
	if ev.HasRetryAfter && ev.RetryAfter > p.maxRetryAfter() {
		return ev, fmt.Sprintf("Retry-After %v exceeds the %v allowed", ev.RetryAfter, p.maxRetryAfter())
	}
	ev.Wait = r.schedule.NextBackOff()
	if ev.Wait == backoff.Stop {
		return ev, "the backoff schedule said stop"
	}
	if ev.HasRetryAfter {
		ev.Wait = ev.RetryAfter + retryAfterJitter(ev.RetryAfter)
	}
	if now.Add(ev.Wait).Sub(r.start) > p.maxElapsed() {
		return ev, fmt.Sprintf("waiting %v would pass the %v allowed", ev.Wait, p.maxElapsed())
	}
	if deadline, ok := r.req.Context().Deadline(); ok && time.Until(deadline) <= ev.Wait {
		return ev, fmt.Sprintf("waiting %v would pass the context's deadline", ev.Wait)
	}
	if !r.budget.withdraw() {
		return ev, "the retry budget is empty"
	}
	return ev, ""
}

// shouldRetry reports whether an attempt's outcome calls for another attempt.
// A request whose context is done is never retried, whatever the outcome.
func (t *Transport) shouldRetry(req *http.Request, resp *http.Response, err error) bool {
	return req.Context().Err() == nil && t.Policy.retryable(resp, err)
}

// wrapAttempts wraps the last transport error with the number of attempts
// made and, when a limit ended the retries, which one. A nil err stays nil,
// for the last response is then returned as it is; so does the error of a
// lone attempt that was not worth retrying.
func wrapAttempts(attempts int, stop string, err error) error {
	switch {
	case err == nil:
		return nil
	case stop != "":
		return fmt.Errorf("retryhttp: gave up after %s (%s): %w", plural(attempts, "attempt"), stop, err)
	case attempts > 1:
		return fmt.Errorf("retryhttp: failed after %s: %w", plural(attempts, "attempt"), err)
	default:
		return err
	}
}

// cloneForRetry returns a copy of req for another attempt, with a fresh body
// from GetBody.
func cloneForRetry(ctx context.Context, req *http.Request) (*http.Request, error) {
	clone := req.Clone(ctx)
	if req.Body != nil && req.Body != http.NoBody {
		body, err := req.GetBody()
		if err != nil {
			return nil, err
		}
		clone.Body = body
	}
	return clone, nil
}

// discard reads what remains of a response body that will not be returned,
// up to drainLimit bytes and for at most drainTimeout, and closes it. A body
// read to its end lets the connection be reused for the retry.
func discard(resp *http.Response) {
	if resp == nil || resp.Body == nil {
		return
	}
	// Closing the body ends a read that is stuck on a slow server.
	timer := time.AfterFunc(drainTimeout, func() { resp.Body.Close() })
	_, _ = io.CopyN(io.Discard, resp.Body, drainLimit)
	timer.Stop()
	resp.Body.Close()
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

func (t *Transport) budget() *Budget {
	if t.Policy.Budget != nil {
		return t.Policy.Budget
	}
	t.budgetOnce.Do(func() { t.ownBudget = NewBudget(DefaultBudgetRatio, DefaultBudgetBurst) })
	return t.ownBudget
}
