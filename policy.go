package retryhttp

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"syscall"
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

	// Clock supplies the current time and the waits between attempts. nil
	// means the real clock. A fake clock (see package retrytest) lets tests
	// play long Retry-After waits without sleeping. The request context's
	// deadline is always compared with the real time.
	Clock Clock
}

// RetryEvent describes a retry that is about to be waited for; it is what
// Policy.OnRetry receives.
type RetryEvent struct {
	// Request is the request of the attempt that failed. It must not be
	// modified.
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
	// RetryAfter is the delay the response's Retry-After header asked for,
	// when HasRetryAfter is true.
	RetryAfter    time.Duration
	HasRetryAfter bool
	// Wait is how long the Transport will wait before the retry.
	Wait time.Duration
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

// mayResend reports whether req may be sent more than once: its body can be
// replayed and the Policy deems it idempotent.
func (p *Policy) mayResend(req *http.Request) bool {
	if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
		return false
	}
	if p.Idempotent != nil {
		return p.Idempotent(req)
	}
	return DefaultIdempotent(req)
}

// DefaultIdempotent reports whether req is idempotent by the rule net/http
// itself uses to resend requests: its method is GET, HEAD, OPTIONS, TRACE,
// PUT or DELETE (RFC 9110 §9.2.2; an empty method means GET), or it carries
// a non-empty Idempotency-Key or X-Idempotency-Key header.
func DefaultIdempotent(req *http.Request) bool {
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace,
		http.MethodPut, http.MethodDelete:
		return true
	}
	return req.Header.Get("Idempotency-Key") != "" || req.Header.Get("X-Idempotency-Key") != ""
}

// DefaultRetryable reports whether an attempt's outcome calls for another
// attempt by default: a 503 Service Unavailable or 429 Too Many Requests
// response, or a transport error saying that the connection could not be
// made or broke (see RetryStatuses for which).
func DefaultRetryable(resp *http.Response, err error) bool {
	if err != nil {
		return isConnectionFailure(err)
	}
	return resp != nil && (resp.StatusCode == http.StatusServiceUnavailable ||
		resp.StatusCode == http.StatusTooManyRequests)
}

// RetryStatuses returns a rule for Policy.Retryable that retries responses
// with any of the given status codes, and transport errors that say the
// connection could not be made or broke: refused, reset or aborted
// connections, a broken pipe, a connection closed before the response was
// complete (EOF) or while the request was being written, and HTTP/2 stream
// resets and GOAWAYs. It never retries a cancelled or expired context, a TLS
// certificate that failed verification, an unknown host, or a request the
// transport refused to send (an unsupported scheme, a malformed header).
// RetryStatuses(503, 429) is the rule DefaultRetryable applies.
func RetryStatuses(codes ...int) func(resp *http.Response, err error) bool {
	codes = append([]int(nil), codes...)
	return func(resp *http.Response, err error) bool {
		if err != nil {
			return isConnectionFailure(err)
		}
		if resp == nil {
			return false
		}
		for _, code := range codes {
			if resp.StatusCode == code {
				return true
			}
		}
		return false
	}
}

// isConnectionFailure reports whether err says that a connection could not
// be established or broke before the response was complete. It lists what
// qualifies rather than what does not, so that an unforeseen error is never
// retried.
func isConnectionFailure(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var certErr *tls.CertificateVerificationError
	var unknownAuthority x509.UnknownAuthorityError
	var hostnameErr x509.HostnameError
	var invalidCert x509.CertificateInvalidError
	if errors.As(err, &certErr) || errors.As(err, &unknownAuthority) ||
		errors.As(err, &hostnameErr) || errors.As(err, &invalidCert) {
		return false
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return dnsErr.IsTemporary
	}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.ECONNABORTED), errors.Is(err, syscall.EPIPE),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return true
	}
	// A read or write on a connection that net/http closed underneath it,
	// typically a keep-alive connection the server closed without saying
	// so while the next request was being written.
	var opErr *net.OpError
	if errors.Is(err, net.ErrClosed) && errors.As(err, &opErr) {
		switch opErr.Op {
		case "read", "write", "readfrom", "writeto":
			return true
		}
	}
	// net/http's HTTP/2 errors are of unexported types, so only their text
	// tells them apart.
	msg := err.Error()
	return strings.Contains(msg, "http2: server sent GOAWAY") ||
		strings.Contains(msg, "stream error: stream ID") ||
		strings.Contains(msg, "http2: client connection lost") ||
		strings.Contains(msg, "server closed idle connection")
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
