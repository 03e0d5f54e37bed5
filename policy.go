package retryhttp

import (
	"fmt"
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
	// Transport makes for itself when Policy.Budget is nil: a retry may be
	// made for every ten requests, with ten in hand to start with.
	DefaultBudgetRatio = 0.1
	DefaultBudgetBurst = 10
)

// The default backoff schedule, used when no Retry-After applies: exponential
// from a few hundred milliseconds, capped at a few seconds, each wait
// randomised by ±50% so that clients that failed together spread out.
const (
	defaultInitialInterval     = 250 * time.Millisecond
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
	// included. 0 means DefaultMaxAttempts (4); 1 never retries.
	MaxAttempts int

	// MaxElapsed bounds the time between the start of a request's first
	// attempt and the start of any retry: a retry that could not start
	// within it is not waited for. 0 means DefaultMaxElapsed (30 s).
	MaxElapsed time.Duration

	// MaxRetryAfter is the longest Retry-After the Transport waits for. A
	// response asking for a longer wait ends the retries at once and is
	// returned as it is, so that the caller can decide what to do with it.
	// 0 means DefaultMaxRetryAfter (30 s).
	MaxRetryAfter time.Duration

	// Backoff returns a fresh schedule of waits for one request; it is
	// called at most once per request, when its first retry is considered.
	// The schedule supplies the wait whenever the response carries no
	// usable Retry-After, and it is consulted before every retry, so that
	// a schedule returning backoff.Stop ends the retries even when the
	// server named a time; it must not return nil. A nil Backoff means an
	// exponential schedule with jitter: about 250 ms before the first
	// retry, doubling up to 4 s, each wait randomised by ±50%.
	Backoff func() backoff.BackOff

	// Budget limits retries across every request that shares it; see
	// Budget. nil means a budget of the Transport's own, made on first use
	// with NewBudget(DefaultBudgetRatio, DefaultBudgetBurst). Set the same
	// *Budget on several Transports to share one budget between them, or
	// UnlimitedBudget() to turn budgeting off.
	Budget *Budget

	// Retryable reports whether the outcome of an attempt, a response or a
	// transport error (exactly one of them is non-nil), calls for another
	// attempt. It is not asked when the request's context is done: such a
	// request is never retried. nil means DefaultRetryable; see
	// RetryStatuses to retry other statuses.
	Retryable func(resp *http.Response, err error) bool

	// Idempotent reports whether the request may be sent more than once
	// with the same effect. nil means DefaultIdempotent. Whatever it says,
	// a request whose body cannot be replayed (a body other than
	// http.NoBody without GetBody) is never sent twice.
	Idempotent func(req *http.Request) bool

	// OnRetry, if not nil, is called once before each wait for a retry,
	// after every check has passed and the retry's token has been taken
	// from the Budget. It runs on the goroutine of the RoundTrip call and
	// delays the retry by as long as it takes.
	OnRetry func(RetryEvent)

	// OnGiveUp, if not nil, is called exactly once for every request whose
	// last outcome Retryable judged worth retrying but that is returned
	// anyway (see GiveUpEvent for why). It is never called for a success,
	// nor for an outcome that was not retryable. It runs on the goroutine
	// of the RoundTrip call, just before RoundTrip returns.
	OnGiveUp func(GiveUpEvent)

	// AttemptTimeout bounds how long each attempt may take to produce its
	// response headers. An attempt that takes longer is abandoned (its
	// connection closed) and counts as a transport error that matches
	// ErrAttemptTimeout, retried like a broken connection. The body of the
	// response returned is not bounded by it. 0 means no limit.
	AttemptTimeout time.Duration

	// Clock supplies the current time and the waits between attempts. nil
	// means the real clock. A fake clock (see package retrytest) lets tests
	// play long Retry-After waits without sleeping. The request context's
	// deadline is always compared with the real time.
	Clock Clock
}

// Validate reports the first field of p that has an invalid value (a
// negative number, or a Budget made with invalid arguments), in an error
// that names it. The Transport calls it before sending anything and returns
// its error instead of sending.
func (p *Policy) Validate() error {
	switch {
	case p.MaxAttempts < 0:
		return fmt.Errorf("retryhttp: invalid Policy.MaxAttempts %d: must not be negative", p.MaxAttempts)
	case p.MaxElapsed < 0:
		return fmt.Errorf("retryhttp: invalid Policy.MaxElapsed %v: must not be negative", p.MaxElapsed)
	case p.MaxRetryAfter < 0:
		return fmt.Errorf("retryhttp: invalid Policy.MaxRetryAfter %v: must not be negative", p.MaxRetryAfter)
	case p.Budget != nil && p.Budget.err != nil:
		return fmt.Errorf("retryhttp: invalid Policy.Budget: %w", p.Budget.err)
	}
	return nil
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

// retryAfterJitter returns the random extra added to a server-named wait:
// up to a fifth of it, so that clients told the same moment do not all come
// back at once.
func retryAfterJitter(d time.Duration) time.Duration {
	limit := int64(d / 5)
	if limit <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(limit))
}
