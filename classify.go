package retryhttp

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"syscall"
)

// whyNotResendable returns nil when req may be sent more than once: its
// body can be replayed and the caller (idempotent: see Idempotent) or else
// the Policy deems it idempotent. Otherwise it returns the rule that
// forbids it: ErrBodyNotReplayable or ErrNotIdempotent.
func (p *Policy) whyNotResendable(req *http.Request, idempotent bool) error {
	if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
		return ErrBodyNotReplayable
	}
	if idempotent {
		return nil
	}
	rule := DefaultIdempotent
	if p.Idempotent != nil {
		rule = p.Idempotent
	}
	if !rule(req) {
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
	return hasNetHTTPText(err, netHTTPBroken)
}

// Some of net/http's errors have unexported types, or are unexported
// errors.New values, so that errors.Is and errors.As cannot see them: only
// their text tells them apart. A peer must never decide a retry by putting
// that text in front of the client, and it can try in two ways:
//
//   - net/http quotes (%q) what a server sent inside its own messages: a
//     malformed header line, a header name, GOAWAY debug data; *url.Error
//     quotes the URL. So text is matched only as the whole message of one
//     error in the chain, or as a prefix anchored at its start, never
//     anywhere inside it: a quoted string is always inside another
//     message.
//   - net/http turns a proxy's refusal of a CONNECT into an error whose
//     whole message is the proxy's reason phrase, bare, which can be any
//     text. No text match can tell it from net/http's own errors.New
//     values, so the Transport hides such errors from the tables whenever
//     the request may have gone through a CONNECT (see markPeerText): an
//     https request whose Base is not an *http.Transport without a proxy
//     for it, directly or through wrappers that declare what they wrap
//     (Unwrap() http.RoundTripper). The tables also leave out
//     errClientConnUnusable, which net/http already resends by itself.
//
// classify_test.go lists every error text with where go1.26.8 makes it, and
// why it is, or is not, retried.

// netHTTPBroken are net/http's errors that say a connection broke or could
// not take the request, and so are retried. Why a peer cannot make one:
//
//   - whole: each is the whole message of an errors.New value of net/http's,
//     which holds nothing a peer sent; only a proxy's reason phrase can be
//     the same whole text, and markPeerText keeps that away;
//   - prefix: http2GoAwayError's message starts with net/http's own text;
//     the server's debug data comes after it, quoted;
//   - streamResets: an http2StreamError's whole message, whose code name
//     comes from net/http's table and whose cause ends it (see
//     isHTTP2PeerReset);
//   - then: the errors of neverSentHTTP2, retried too.
var netHTTPBroken = textMatch{
	whole: []string{
		// errServerClosedIdle (transport.go): a keep-alive connection the
		// server closed as the request went out. net/http resends it itself
		// when it deems the request replayable.
		"http: server closed idle connection",
		// errClientConnNotEstablished: the connection closed before its
		// first request was sent on it.
		"http2: client conn could not be established",
		// errClientConnClosed: the connection closed while the request body
		// was being written.
		"http2: client conn is closed",
		// closeForLostPing: the read-idle health check's ping went
		// unanswered, and the connection was closed as dead.
		"http2: client connection lost",
		// errClientConnForceClosed: a write on the connection failed, so
		// net/http closed it under every other request in flight on it.
		"http2: client connection force closed via ClientConn.Close",
	},
	prefix: []string{
		// http2GoAwayError: the server closed the connection after a GOAWAY
		// whose last stream includes the request's, before answering it. The
		// server may have processed it: the connection went away under it,
		// like an EOF on HTTP/1. The server's debug data comes after this
		// prefix, quoted.
		"http2: server sent GOAWAY and closed the connection; LastStreamID=",
	},
	streamResets: http2PeerResetCodes,
	then:         &neverSentHTTP2,
}

// neverSentHTTP2 are net/http's HTTP/2 errors that prove the server never
// processed the request (RFC 9113 §8.7): a stream the server refused, and
// a GOAWAY whose last stream ID is below the request's. A peer cannot make
// one for the reasons netHTTPBroken gives: a whole errors.New message, a
// prefix followed only by the code's name from net/http's table, and a
// stream error's whole message.
var neverSentHTTP2 = textMatch{
	whole: []string{
		// errClientConnGotGoAway: a GOAWAY left the request's stream out
		// (setGoAway in h2_bundle.go). net/http resends it by itself when it
		// can replay the body.
		"http2: Transport received Server's graceful shutdown GOAWAY",
	},
	prefix: []string{
		// The same for the first stream of a connection with a code other
		// than NO_ERROR: net/http does not resend it, fearing a new
		// connection fails alike, but the retry waits and is budgeted. The
		// code's name follows.
		"http2: Transport received GOAWAY from server ErrCode:",
	},
	streamResets: map[string]bool{"REFUSED_STREAM": true},
}

// textMatch is a table of net/http's error messages.
type textMatch struct {
	whole        []string        // whole messages
	prefix       []string        // prefixes of a message
	streamResets map[string]bool // codes of an RST_STREAM received from the server
	then         *textMatch      // another table, also searched
}

// hasNetHTTPText reports whether an error in err's chain is one that m
// lists, either bare or inside the "cannot retry err [...]" that net/http's
// HTTP/2 client wraps it in when it cannot replay the body itself. It is
// false for an error that peerTextError marks.
func hasNetHTTPText(err error, m textMatch) bool {
	var pt *peerTextError
	if errors.As(err, &pt) {
		return false
	}
	return inChain(err, func(e error) bool { return m.matches(e.Error()) })
}

// matches reports whether msg is, as a whole, a message m lists.
func (m *textMatch) matches(msg string) bool {
	// http2shouldRetryRequest (h2_bundle.go), when net/http would resend
	// the request but has no GetBody to replay its body: it formats the
	// error with %v, so only the text of the error inside remains.
	const cannotRetry, cannotRetryEnd = "http2: Transport: cannot retry err [",
		"] after Request.Body was written; define Request.GetBody to avoid this error"
	if inner, ok := strings.CutPrefix(msg, cannotRetry); ok {
		if inner, ok = strings.CutSuffix(inner, cannotRetryEnd); ok {
			msg = inner
		}
	}
	for ; m != nil; m = m.then {
		if slices.Contains(m.whole, msg) || isHTTP2PeerReset(msg, m.streamResets) {
			return true
		}
		for _, p := range m.prefix {
			if strings.HasPrefix(msg, p) {
				return true
			}
		}
	}
	return false
}

// inChain reports whether match holds for err or any error it wraps.
func inChain(err error, match func(error) bool) bool {
	for err != nil {
		if match(err) {
			return true
		}
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				if inChain(e, match) {
					return true
				}
			}
			return false
		default:
			return false
		}
	}
	return false
}

// http2PeerResetCodes are the error codes of an RST_STREAM received from the
// server that are retried: each says the stream failed on the server's side.
// A code is matched only as the name net/http's http2ErrCode.String gives
// it, between the stream ID and the cause, never in text of the server's.
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

// isHTTP2PeerReset reports whether msg is, as a whole, the text of a stream
// error that the server sent, an RST_STREAM, with a code in codes: "stream
// error: stream ID 3; REFUSED_STREAM; received from peer"
// (http2StreamError.Error with the cause http2errFromPeer). A stream error
// the client raised itself, such as "stream error: stream ID 1;
// PROTOCOL_ERROR; malformed response from server: missing status pseudo
// header", has another cause or none; and one whose cause quotes what the
// server sent (`invalid header field value for "..."`) never ends in the
// cause "received from peer" after the code.
func isHTTP2PeerReset(msg string, codes map[string]bool) bool {
	const prefix, fromPeer = "stream error: stream ID ", "; received from peer"
	rest, ok := strings.CutPrefix(msg, prefix)
	if !ok {
		return false
	}
	digits := 0
	for digits < len(rest) && isDigit(rest[digits]) {
		digits++
	}
	rest, ok = strings.CutPrefix(rest[digits:], "; ")
	if digits == 0 || !ok {
		return false
	}
	code, ok := strings.CutSuffix(rest, fromPeer)
	return ok && codes[code]
}

// sendHistory is what net/http's own tries of one attempt did, as
// httptrace told (see tryTrace). The zero value is an attempt of which
// nothing is known: one that Base never said it sent.
type sendHistory struct {
	// gotConn: a try was given a connection (GotConn), on which the
	// request may have gone out.
	gotConn bool
	// wroteEarlier: a try before the last wrote the request's headers
	// (WroteHeaders), so a copy of it may have been processed whatever
	// became of the last.
	wroteEarlier bool
}

// neverSent reports whether err, the error of an attempt whose tries did
// what h says, proves that no copy of the request ever reached the server,
// so that sending it again cannot repeat its effect. An error tells only of
// the attempt's last try, and net/http resends a request by itself (even a
// POST, after an HTTP/2 PROTOCOL_ERROR from the server), so each proof
// holds only when no earlier try can have sent the request:
//
//   - the connection could not be dialled (net/http's dial error, a
//     *net.OpError with Op "dial", which it returns before writing
//     anything, even when it timed out), and no try was given a connection
//     before;
//   - the server refused the HTTP/2 stream, or a GOAWAY left it out, and no
//     try before the last wrote the request's headers.
//
// An error after which a byte of the request may have been written and
// processed (a reset, an EOF, a timeout) proves nothing of the kind.
func neverSent(err error, h sendHistory) bool {
	var timeout *attemptTimeoutError
	if errors.As(err, &timeout) {
		// net/http's own dial timeout (a net.Dialer's Timeout) is a dial
		// error too; Policy.AttemptTimeout's own timer tells nothing of
		// where the attempt was.
		return timeout.cause != nil && neverSent(timeout.cause, h)
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		// The first *net.OpError is what net/http returned: a dial through
		// a proxy comes as Op "proxyconnect", which may also be a failed
		// CONNECT, and does not count.
		return opErr.Op == "dial" && !h.gotConn
	}
	// The stream the server refused or left out is the last try's; the
	// headers that try wrote are the ones the server did not process.
	return !h.wroteEarlier && hasNetHTTPText(err, neverSentHTTP2)
}

// peerTextError marks an error that may be a proxy's words: net/http turns
// a proxy's refusal of a CONNECT into an error whose whole message is the
// proxy's reason phrase, an errors.New value like net/http's own, so its
// text proves nothing and no text table reads it. Error and Unwrap keep it
// as it was.
type peerTextError struct{ err error }

func (e *peerTextError) Error() string { return e.err.Error() }
func (e *peerTextError) Unwrap() error { return e.err }

// errorStringType is the type of errors.New's errors, the type of a refused
// CONNECT's error.
var errorStringType = reflect.TypeOf(errors.New(""))

// markPeerText returns err marked with peerTextError when it may hold a
// refused CONNECT's reason phrase: an error of errors.New's type anywhere
// in its chain (a Base may wrap what net/http returned), of a request to an
// https URL (net/http sends a CONNECT for those alone), whose Base either
// sends it through a proxy or cannot be seen into. A Base that wraps an
// *http.Transport hides whether it has a proxy, unless it declares what it
// wraps (see wrappedTransport).
func markPeerText(base http.RoundTripper, req *http.Request, err error) error {
	if !strings.EqualFold(req.URL.Scheme, "https") ||
		!inChain(err, func(e error) bool { return reflect.TypeOf(e) == errorStringType }) {
		return err
	}
	if tr := wrappedTransport(base); tr != nil {
		if tr.Proxy == nil {
			return err
		}
		if proxy, perr := tr.Proxy(req); perr == nil && proxy == nil {
			return err
		}
	}
	return &peerTextError{err: err}
}

// maxUnwrap bounds the chain of wrappers wrappedTransport follows, so that
// a wrapper that unwraps to itself cannot hang a request.
const maxUnwrap = 100

// wrappedTransport returns the *http.Transport that base sends through: base
// itself, or the one found by following, from base, each wrapper's
// Unwrap() http.RoundTripper method, as http.ResponseController follows a
// ResponseWriter's Unwrap. It returns nil when the chain ends in anything
// else, or in a wrapper that does not declare what it wraps.
//
// A wrapper that declares Unwrap promises that it sends each request
// through the RoundTripper Unwrap returns, and returns that RoundTripper's
// errors, wrapped or not, and errors of its own, but no error whose text a
// server or a proxy chose: the text of net/http's errors is then read as
// net/http's (see netHTTPBroken).
func wrappedTransport(base http.RoundTripper) *http.Transport {
	for range maxUnwrap {
		switch b := base.(type) {
		case *http.Transport:
			return b
		case interface{ Unwrap() http.RoundTripper }:
			base = b.Unwrap()
		default:
			return nil
		}
	}
	return nil
}
