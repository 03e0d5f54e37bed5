package retryhttp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// The reasons why a Transport stopped retrying a request whose last outcome
// called for another attempt. GiveUpError.Reason and GiveUpEvent.Reason hold
// one of them, or the context's own error (ctx.Err() itself, even when a
// Clock's Sleep wrapped it) when the context ended a wait or ended as a
// retryable response arrived, so that both == and errors.Is work.
var (
	// ErrAttemptsUsedUp: Policy.MaxAttempts attempts were made, or as
	// many as the request's context allows (see NoRetry and MaxAttempts).
	ErrAttemptsUsedUp = errors.New("retryhttp: attempts used up")
	// ErrRetryAfterTooLong: the server asked for a wait (Retry-After, or a
	// rate-limit header) longer than Policy.MaxRetryAfter.
	ErrRetryAfterTooLong = errors.New("retryhttp: server's wait exceeds MaxRetryAfter")
	// ErrMaxElapsed: the next retry could not start within
	// Policy.MaxElapsed of the first attempt's start.
	ErrMaxElapsed = errors.New("retryhttp: next retry would start past MaxElapsed")
	// ErrDeadline: the next wait would end past the request context's
	// deadline.
	ErrDeadline = errors.New("retryhttp: next wait would pass the context's deadline")
	// ErrBudgetEmpty: the retry Budget had no token for the retry.
	ErrBudgetEmpty = errors.New("retryhttp: retry budget empty")
	// ErrBackoffStop: the Policy's backoff schedule returned backoff.Stop.
	ErrBackoffStop = errors.New("retryhttp: backoff schedule said stop")
	// ErrNotResendable: the outcome called for a retry, but the request may
	// not be sent again: it is not idempotent (see Policy.Idempotent), or
	// its body cannot be replayed, and the outcome does not prove that the
	// request never reached the server. A Transport gives up with one of
	// the two errors below, which say which rule applied; errors.Is(reason,
	// ErrNotResendable) holds for both.
	ErrNotResendable = errors.New("retryhttp: request may not be sent again")
	// ErrNotIdempotent: the request may not be sent again because it is
	// not idempotent: Policy.Idempotent (by default DefaultIdempotent: the
	// method is not GET, HEAD, OPTIONS, TRACE, PUT or DELETE, and there is
	// no Idempotency-Key header) said no. It wraps ErrNotResendable.
	ErrNotIdempotent = fmt.Errorf("%w: method not idempotent and no Idempotency-Key", ErrNotResendable)
	// ErrBodyNotReplayable: the request may not be sent again because its
	// body cannot be replayed: it has a body other than http.NoBody and no
	// GetBody, as with an *os.File, an io.Pipe or an io.NopCloser passed to
	// http.NewRequest. Its message says the fix: http.NewRequest sets
	// GetBody for a *bytes.Buffer, *bytes.Reader or *strings.Reader; for any
	// other body, a file above all, set GetBody to a function that returns
	// a fresh copy (for a file, one that opens it again). It wraps
	// ErrNotResendable.
	ErrBodyNotReplayable = fmt.Errorf("%w: body cannot be replayed (no GetBody): use a bytes, strings or file reader, or set GetBody", ErrNotResendable)
)

// GiveUpError is the error RoundTrip returns when it stops retrying a request
// whose last attempt failed with a transport error that called for another
// attempt, and when a wait before a retry is cut short by the request's
// context. A give-up that ends on a response returns that response with a nil
// error instead.
//
// errors.Is and errors.As see both Reason and Err: errors.Is(err,
// retryhttp.ErrBudgetEmpty) and errors.Is(err, syscall.ECONNREFUSED) can both
// hold for one GiveUpError.
type GiveUpError struct {
	// Attempts is the number of attempts made, the first included. It is
	// 0 when nothing was sent: a request that a Throttle rejected (Reason
	// ErrThrottled), or whose quota hold the caller cut short.
	Attempts int
	// Reason says why the retries ended: one of the Err sentinels of this
	// package, or the context's own error when it ended a wait.
	Reason error
	// Err is the transport error of the last attempt. It is nil when a
	// wait was cut short after an attempt that ended in a response, or
	// before any attempt; for a Throttle's rejection it is the rejection,
	// which names the accept ratio.
	Err error
}

func (e *GiveUpError) Error() string {
	if e.Attempts == 0 {
		// Nothing was sent: a Throttle's rejection says why itself.
		if e.Err != nil {
			return e.Err.Error()
		}
		return fmt.Sprintf("retryhttp: gave up before sending: %v", e.Reason)
	}
	if e.Err == nil {
		return fmt.Sprintf("retryhttp: gave up after %s: %v", plural(e.Attempts, "attempt"), e.Reason)
	}
	return fmt.Sprintf("retryhttp: gave up after %s (%v): %v", plural(e.Attempts, "attempt"), trimPackage(e.Reason), e.Err)
}

// Unwrap returns Reason and Err, for errors.Is and errors.As.
func (e *GiveUpError) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Reason}
	}
	return []error{e.Reason, e.Err}
}

// trimPackage drops the "retryhttp: " of a sentinel's message inside a
// message that already starts with it.
func trimPackage(err error) string {
	return strings.TrimPrefix(err.Error(), "retryhttp: ")
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// RetryEvent describes a retry that is about to be waited for; it is what
// Policy.OnRetry receives.
type RetryEvent struct {
	// Request is the request of the attempt that failed, as it went to the
	// Transport's Base: Attempt(Request.Context()) is Attempt. For the
	// first attempt it may be the caller's own request or a shallow copy of
	// it. It must not be modified.
	Request *http.Request
	// Attempt is the number of the attempt that failed, from 1; the retry
	// is attempt Attempt+1.
	Attempt int
	// Response is the response of the attempt that failed, or nil when it
	// failed with Err. Its header may be read; its body must be left alone,
	// since the Transport discards it.
	Response *http.Response
	// Err is the transport error of the attempt that failed, or nil.
	Err error
	// RetryAfter is the wait the response asked for, when HasRetryAfter is
	// true: from its Retry-After header or, lacking a valid one, from its
	// rate-limit headers (see RateLimitWait). RetryAfterHeader names the
	// header it came from.
	RetryAfter       time.Duration
	HasRetryAfter    bool
	RetryAfterHeader string
	// Wait is how long the Transport will wait before the retry: RetryAfter
	// plus jitter, or the backoff schedule's wait when the response named
	// none.
	Wait time.Duration
}

// GiveUpEvent describes a request whose last outcome called for another
// attempt but that is returned anyway, or a new request that Policy.Throttle
// rejected (Attempts 0); it is what Policy.OnGiveUp receives. A new request
// cancelled while a quota hold kept it back had no outcome, and gets no
// GiveUpEvent: HoldEvent.Err reports it.
//
// To tell which of the caller's requests an event belongs to, compare a value
// in Request.Context(), not the Request pointer: an http.Client hands the
// Transport a shallow copy of the caller's request when Client.Timeout is
// set, when the request's Header is nil or its URL holds a user name, and
// for every redirect it follows, so Request is then not the pointer the
// caller passed to Client.Do. The copy keeps the caller's context, and the
// values in it. A caller that only needs the reason where it handles the
// response can call Outcome instead.
type GiveUpEvent struct {
	// Request is the request RoundTrip was called with, whichever attempt
	// was the last; it may be a copy of the caller's own (see above). It
	// must not be modified.
	Request *http.Request
	// Attempts is the number of attempts made, the first included.
	Attempts int
	// Response is the response about to be returned, or nil. Its header
	// may be read; its body must be left alone, for the caller reads it.
	Response *http.Response
	// Err is the last attempt's transport error, or nil.
	Err error
	// Reason is why the retries ended: one of the Err sentinels of this
	// package, or the context's own error when it cut a wait short or ended
	// as a retryable response arrived.
	Reason error
	// RetryAfter, HasRetryAfter and RetryAfterHeader report the wait the
	// last response asked for, as in RetryEvent, whatever the Reason.
	RetryAfter       time.Duration
	HasRetryAfter    bool
	RetryAfterHeader string
}

// Outcome returns what the retries of the request behind resp came to: the
// number of attempts made, the first included, and, when the Transport gave
// up on retrying it, why (the GiveUpEvent's Reason: one of the Err
// sentinels of this package). The reason is nil when the response was not
// given up on: a success, or an outcome that was not worth retrying.
//
// resp is a response returned by a Transport, directly or through an
// http.Client; Outcome reads what the Transport left in the context of
// resp.Request. A response a Transport did not return reports 1 attempt
// and a nil reason, and a nil resp 0 attempts. It costs nothing on the
// happy path: a response given up on gets, as its Request, a shallow copy
// of the request that was sent, whose context carries the outcome; any
// other response is returned as it came.
//
// When RoundTrip returns an error instead of a response, the error is a
// *GiveUpError that holds the same attempts and reason.
//
// resp.Request is not the caller's request pointer after a give-up, nor after
// retries; and an http.Client hands the Transport a copy of the caller's
// request anyway when Client.Timeout is set (see GiveUpEvent). To tie a
// response or an event to a request of your own, carry a value in the
// request's context, which every copy keeps.
func Outcome(resp *http.Response) (attempts int, reason error) {
	if resp == nil {
		return 0, nil
	}
	if resp.Request == nil {
		return 1, nil
	}
	ctx := resp.Request.Context()
	if o, ok := ctx.Value(outcomeKey{}).(*givenUp); ok {
		return o.attempts, o.reason
	}
	return Attempt(ctx), nil
}

// outcomeKey is the context key under which the request of a response that
// was given up on carries its *givenUp.
type outcomeKey struct{}

// givenUp is what Outcome reports for a response that was given up on, or
// for a hedge race's winner that was not the last attempt sent (reason nil).
type givenUp struct {
	attempts int
	reason   error
}

// withOutcome makes resp.Request (or req, when the Base set none) carry the
// outcome of a give-up, for Outcome to read.
func withOutcome(resp *http.Response, req *http.Request, attempts int, reason error) {
	if resp.Request != nil {
		req = resp.Request
	}
	ctx := context.WithValue(req.Context(), outcomeKey{}, &givenUp{attempts: attempts, reason: reason})
	resp.Request = req.WithContext(ctx)
}

// attemptKey is the context key under which a retry's request carries its
// attempt number.
type attemptKey struct{}

// Attempt returns the number of the attempt that a request with context ctx
// belongs to: 1 for the first attempt, 2 for the first retry, and so on. A
// Base transport can read it from req.Context(), and a caller from
// resp.Request.Context() of the final response. A context that holds no
// attempt number, such as the caller's own, means 1.
func Attempt(ctx context.Context) int {
	if n, ok := ctx.Value(attemptKey{}).(int); ok {
		return n
	}
	return 1
}

// ErrAttemptTimeout is matched (with errors.Is) by the error of an attempt
// that did not produce its response headers within Policy.AttemptTimeout, or
// that net/http abandoned under one of its own per-attempt timeouts while the
// request's context was still live. It does not match
// context.DeadlineExceeded, so that a caller can tell an attempt's timeout
// from the end of its own deadline.
var ErrAttemptTimeout = errors.New("retryhttp: attempt timed out")
