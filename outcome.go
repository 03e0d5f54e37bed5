package retryhttp

import (
	"net/http"
	"time"
)

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
