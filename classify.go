package retryhttp

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
)

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
