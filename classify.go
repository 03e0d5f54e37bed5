package retryhttp

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
)

// whyNotResendable returns nil when req may be sent more than once: its
// body can be replayed and the Policy deems it idempotent. Otherwise it
// returns the rule that forbids it: ErrBodyNotReplayable or
// ErrNotIdempotent.
func (p *Policy) whyNotResendable(req *http.Request) error {
	if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
		return ErrBodyNotReplayable
	}
	idempotent := DefaultIdempotent
	if p.Idempotent != nil {
		idempotent = p.Idempotent
	}
	if !idempotent(req) {
		return ErrNotIdempotent
	}
	return nil
}

// DefaultIdempotent reports whether req is idempotent: its method is GET,
// HEAD, OPTIONS, TRACE, PUT or DELETE (RFC 9110 §9.2.2; an empty method
// means GET), or its header has an Idempotency-Key or X-Idempotency-Key
// key. As in net/http's own rule for resending requests, the key's presence
// is what counts, whatever its value: a nil value
// (req.Header["Idempotency-Key"] = nil) marks a request idempotent without
// sending the header.
func DefaultIdempotent(req *http.Request) bool {
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace,
		http.MethodPut, http.MethodDelete:
		return true
	}
	_, key := req.Header["Idempotency-Key"]
	_, xKey := req.Header["X-Idempotency-Key"]
	return key || xKey
}

// DefaultRetryable reports whether an attempt's outcome calls for another
// attempt by default: a 503 Service Unavailable or 429 Too Many Requests
// response, a 403 Forbidden that the server marks as a rate-limit refusal,
// or a transport error saying that the connection could not be made or
// broke, or that the attempt timed out (see RetryStatuses for which). It is
// the rule RetryStatuses(503, 429, 403) applies.
func DefaultRetryable(resp *http.Response, err error) bool {
	if err != nil {
		return isConnectionFailure(err)
	}
	if resp == nil {
		return false
	}
	switch resp.StatusCode {
	case http.StatusServiceUnavailable, http.StatusTooManyRequests:
		return true
	case http.StatusForbidden:
		return isRateLimitRefusal(resp)
	}
	return false
}

// isRateLimitRefusal reports whether a 403 is a rate-limit refusal rather
// than a lasting one: the server says no requests remain
// (X-RateLimit-Remaining: 0 or X-Rate-Limit-Remaining: 0, as GitHub and X
// send, or an IETF RateLimit item with r=0), or names a time to come back
// (Retry-After, as GitHub's secondary limits send).
func isRateLimitRefusal(resp *http.Response) bool {
	if _, ok := resp.Header["Retry-After"]; ok {
		return true
	}
	return rateLimitRefusal(resp.Header)
}

// RetryStatuses returns a rule for Policy.Retryable that retries responses
// with any of the given status codes, and transport errors that say the
// connection could not be made or broke: refused, reset or aborted
// connections, a broken pipe, a connection closed before the response was
// complete (EOF) or while the request was being written, and HTTP/2 stream
// resets and GOAWAYs. It never retries a cancelled or expired context, a TLS
// certificate that failed verification, an unknown host, or a request the
// transport refused to send (an unsupported scheme, a malformed header).
// An attempt that timed out (ErrAttemptTimeout: Policy.AttemptTimeout, or
// one of net/http's own per-attempt timeouts while the request's context
// is live) is retried.
//
// A 403 Forbidden among codes is retried only when the server marks it as a
// rate-limit refusal (X-RateLimit-Remaining: 0, X-Rate-Limit-Remaining: 0,
// an IETF RateLimit item with r=0, or a Retry-After header): any other 403
// would be refused again. RetryStatuses(503, 429, 403) is the rule
// DefaultRetryable applies.
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
				return code != http.StatusForbidden || isRateLimitRefusal(resp)
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
	if errors.Is(err, ErrAttemptTimeout) {
		return true
	}
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
	// net/http's HTTP/1 errServerClosedIdle: a keep-alive connection the
	// server closed as the request went out. Its type is unexported.
	return strings.Contains(err.Error(), "server closed idle connection") ||
		isHTTP2Unprocessed(err)
}

// isHTTP2Unprocessed reports whether err is one of the errors net/http's
// HTTP/2 client returns when the server did not process the request (a
// GOAWAY that left the request's stream out, a refused stream, a connection
// that could not take it) or when the stream or its connection broke on the
// server's side (a stream reset by the server, a connection closed after a
// GOAWAY, a lost connection).
//
// The errors are of unexported types (http2StreamError, http2GoAwayError)
// or unexported errors.New values of net/http's h2_bundle.go (the same text
// as golang.org/x/net/http2's), so errors.Is and errors.As cannot see them:
// only their text tells them apart. That text is sought anywhere in
// err.Error(), because *url.Error, other transports and net/http itself
// ("http2: Transport: cannot retry err [...] after Request.Body was
// written") wrap it, but never inside a double-quoted part: there net/http
// quotes what the server chose (a header name, GOAWAY debug data) and
// *url.Error the URL, and a server must not make its own text pass for one
// of these errors.
//
// classify_test.go lists every error text with where go1.26.8 makes it, and
// why it is, or is not, retried.
func isHTTP2Unprocessed(err error) bool {
	msg := unquoted(err.Error())
	for _, text := range http2Retryable {
		if strings.Contains(msg, text) {
			return true
		}
	}
	return hasHTTP2PeerReset(msg)
}

// http2Retryable holds the text of the HTTP/2 client errors, other than
// stream resets, that are retried.
var http2Retryable = []string{
	// The server's GOAWAY named a last stream below the request's, so the
	// server never processed it (RFC 9113 §6.8), whatever the GOAWAY's error
	// code. This form is the first stream of a connection with a code other
	// than NO_ERROR: net/http does not resend it, fearing the new connection
	// fails alike, but the retry waits and is budgeted.
	"http2: Transport received GOAWAY from server ErrCode:",
	// The same for every other stream, errClientConnGotGoAway.
	"http2: Transport received Server's graceful shutdown GOAWAY",
	// http2GoAwayError: the server closed the connection after a GOAWAY
	// whose last stream includes the request's, before answering it. The
	// server may have processed it: the connection went away under it, like
	// an EOF on HTTP/1, and only a request that may be resent is retried.
	"http2: server sent GOAWAY and closed the connection;",
	// errClientConnUnusable and errClientConnNotEstablished: the connection
	// was closed, or going away, before the request was sent on it.
	"http2: client conn not usable",
	"http2: client conn could not be established",
	// errClientConnClosed: the connection closed while the request body was
	// being written.
	"http2: client conn is closed",
	// The read-idle health check's ping went unanswered, and the connection
	// was closed as dead.
	"http2: client connection lost",
	// errClientConnForceClosed: a write on the connection failed, so
	// net/http closed it (with ClientConn.Close) under every other request
	// in flight on it. A caller that closes an http.ClientConn itself makes
	// this error too; the retry then fails fast on the closed connection,
	// or gets a new one from a pool.
	"http2: client connection force closed via ClientConn.Close",
}

// http2PeerResetCodes are the error codes of an RST_STREAM received from the
// server that are retried: each says the stream failed on the server's side.
// The other codes (FLOW_CONTROL_ERROR, SETTINGS_TIMEOUT, STREAM_CLOSED,
// FRAME_SIZE_ERROR, COMPRESSION_ERROR, INADEQUATE_SECURITY,
// HTTP_1_1_REQUIRED) say that the client's frames or connection are at
// fault, which resending the request alike would repeat; an unknown code is
// not foreseen, so not retried.
var http2PeerResetCodes = map[string]bool{
	// The server refused the stream before processing it (RFC 9113 §8.7).
	"REFUSED_STREAM": true,
	// The server failed while processing it, or dropped it: net/http's own
	// server resets a stream whose handler panicked with INTERNAL_ERROR, and
	// proxies reset with CANCEL or NO_ERROR (before any response) a stream
	// whose upstream went away.
	"INTERNAL_ERROR": true,
	"CANCEL":         true,
	"NO_ERROR":       true,
	// The CONNECT tunnel's connection was reset or closed.
	"CONNECT_ERROR": true,
	// The server sheds load, as with a 429.
	"ENHANCE_YOUR_CALM": true,
	// net/http itself resends on a PROTOCOL_ERROR received from the server
	// (http2canRetryError, golang/go#47635): servers send it for trouble of
	// their own. One that the client detected in the server's response has
	// no "received from peer" and is not retried.
	"PROTOCOL_ERROR": true,
}

// hasHTTP2PeerReset reports whether msg holds the text of a stream error
// that the server sent, an RST_STREAM, with a code in http2PeerResetCodes:
// "stream error: stream ID 3; REFUSED_STREAM; received from peer". A stream
// error the client raised itself, such as "stream error: stream ID 1;
// PROTOCOL_ERROR; malformed response from server: missing status pseudo
// header", carries another cause or none.
func hasHTTP2PeerReset(msg string) bool {
	const prefix, fromPeer = "stream error: stream ID ", "; received from peer"
	for {
		i := strings.Index(msg, prefix)
		if i < 0 {
			return false
		}
		msg = msg[i+len(prefix):]
		digits := 0
		for digits < len(msg) && isDigit(msg[digits]) {
			digits++
		}
		rest, ok := strings.CutPrefix(msg[digits:], "; ")
		if digits == 0 || !ok {
			continue
		}
		code, cause, ok := strings.Cut(rest, ";")
		if ok && http2PeerResetCodes[code] && strings.HasPrefix(";"+cause, fromPeer) {
			return true
		}
	}
}

// unquoted returns msg without the contents of its double-quoted Go strings,
// as %q writes them, each left as "".
func unquoted(msg string) string {
	if !strings.Contains(msg, `"`) {
		return msg
	}
	var b strings.Builder
	for {
		i := strings.IndexByte(msg, '"')
		if i < 0 {
			b.WriteString(msg)
			return b.String()
		}
		b.WriteString(msg[:i])
		quoted, err := strconv.QuotedPrefix(msg[i:])
		if err != nil { // a lone quote, kept as it is
			b.WriteByte('"')
			msg = msg[i+1:]
			continue
		}
		b.WriteString(`""`)
		msg = msg[i+len(quoted):]
	}
}
