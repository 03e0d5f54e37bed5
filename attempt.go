package retryhttp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"time"
)

// An attempt: one send of a request through Base (sendOne), with a timeout
// of its own when Policy.AttemptTimeout says so, and a recorder of its
// body's errors, which are the caller's to see. A hedged race (hedge.go) is
// made of such attempts too.

// sendOne makes attempt n of r.req. The first attempt sends the caller's
// request itself unless it needs a timeout of its own, or a recorder of its
// body's errors (every request with a body: an error of the caller's body
// ends the request, whatever the request); every later one sends a clone
// from GetBody that carries its attempt number. An error from reading the
// body is returned as it is, before anything else can make it an attempt
// timeout or a transport error.
func (r *retrier) sendOne(n int) (*http.Response, error) {
	p := &r.t.Policy
	req := r.req
	r.abandon = nil
	base := r.t.base()
	recordBody := req.Body != nil && req.Body != http.NoBody
	if n == 1 && p.AttemptTimeout <= 0 {
		if r.traceConns {
			req = req.WithContext(r.traceConn(req.Context()))
		}
		if recordBody {
			// One allocation holds both the shallow copy, which keeps the
			// caller's context, and the body recorder.
			first := &recordedRequest{req: *req}
			first.body.body = req.Body
			first.req.Body = &first.body
			first.body.wrapGetBody(&first.req)
			r.bodyErr = &first.body
			req = &first.req
		}
		r.last = req
		resp, err := base.RoundTrip(req)
		if err != nil {
			if bodyErr := r.bodyError(); bodyErr != nil {
				return nil, callerBodyError(err, bodyErr)
			}
		}
		return resp, attemptError(r.req.Context(), err)
	}
	ctx := req.Context()
	if n > 1 {
		ctx = context.WithValue(ctx, attemptKey{}, n)
	}
	ctx, ac := startAttempt(r.traceConn(ctx), p.AttemptTimeout)
	r.abandon = ac.release
	var attemptReq *http.Request
	if n > 1 {
		attemptReq = req.Clone(ctx) // a Base that changed the header could not reach the caller's
	} else {
		attemptReq = req.WithContext(ctx)
	}
	if req.Body != nil && req.Body != http.NoBody && n > 1 {
		body, err := req.GetBody()
		if err != nil {
			ac.abandon()
			return nil, fmt.Errorf("%w for attempt %d: %w", errReopenBody, n, err)
		}
		attemptReq.Body = body
	}
	if recordBody {
		r.bodyErr = &recordingBody{body: attemptReq.Body}
		attemptReq.Body = r.bodyErr
		r.bodyErr.wrapGetBody(attemptReq)
	}
	r.last = attemptReq
	resp, err := base.RoundTrip(attemptReq)
	if err != nil {
		if bodyErr := r.bodyError(); bodyErr != nil {
			ac.abandon()
			return nil, callerBodyError(err, bodyErr)
		}
	}
	return ac.finish(req.Context(), resp, err)
}

// callerBodyError returns the error of an attempt whose request body failed
// with bodyErr: Base's error when it holds bodyErr (net/http returns it as
// it is), and otherwise bodyErr itself, so that errors.Is(err, bodyErr)
// always holds.
func callerBodyError(err, bodyErr error) error {
	if errors.Is(err, bodyErr) {
		return err
	}
	return bodyErr
}

// recordedRequest is a first attempt's request whose body errors are
// recorded.
type recordedRequest struct {
	req  http.Request
	body recordingBody
}

// errReopenBody marks an error of req.GetBody, which ends the request.
var errReopenBody = errors.New("retryhttp: reopening the request body")

// bodyFailed reports whether reading the request body of the latest attempt
// failed: the caller's error, which no retry can mend.
func (r *retrier) bodyFailed() bool {
	return r.bodyError() != nil
}

// bodyError returns the error reading the request body of the latest
// attempt returned, or nil.
func (r *retrier) bodyError() error {
	if r.bodyErr == nil {
		return nil
	}
	return r.bodyErr.get()
}

// traceConn returns ctx, with a trace that records in r.tries what
// net/http's tries of the attempt do when r.traceConns is set. It costs
// nothing to the requests that may be resent, which never ask.
func (r *retrier) traceConn(ctx context.Context) context.Context {
	if !r.traceConns {
		return ctx
	}
	tt := new(tryTrace)
	r.tries = tt
	// A new trace each time: WithClientTrace composes the caller's own
	// trace into the one it is given.
	tt.trace.GotConn = tt.gotConn
	tt.trace.WroteHeaders = tt.wroteHeaders
	return httptrace.WithClientTrace(ctx, &tt.trace)
}

// tryTrace records, through httptrace, what net/http's own tries of one
// attempt did. An attempt's error tells only of its last try, but net/http
// resends a request by itself, on the same connection or a new one, even a
// POST without a key (after an HTTP/2 PROTOCOL_ERROR or REFUSED_STREAM from
// the server, or a GOAWAY), and the copies it sent before may have been
// processed. Each try begins when net/http hands it a connection (GotConn,
// which HTTP/2 calls for every stream, on a new connection or a reused one);
// a try has written the request once its headers are out (WroteHeaders,
// after the HTTP/1 header block or the HTTP/2 HEADERS frames, even when that
// write failed). net/http ends a try, its writing included, before it begins
// the next, so each event falls in its own try.
type tryTrace struct {
	trace        httptrace.ClientTrace // in one allocation with the record
	mu           sync.Mutex
	tries        int  // connections handed to the attempt, one per try
	wrote        bool // the latest try wrote the request's headers
	wroteEarlier bool // a try before the latest wrote them
}

func (tt *tryTrace) gotConn(httptrace.GotConnInfo) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	tt.tries++
	tt.wroteEarlier = tt.wroteEarlier || tt.wrote
	tt.wrote = false
}

func (tt *tryTrace) wroteHeaders() {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	tt.wrote = true
}

// history returns what the attempt's tries did; nil, for an attempt that
// was not traced, means none is known.
func (tt *tryTrace) history() sendHistory {
	if tt == nil {
		return sendHistory{}
	}
	tt.mu.Lock()
	defer tt.mu.Unlock()
	return sendHistory{gotConn: tt.tries > 0, wroteEarlier: tt.wroteEarlier}
}

// attemptTimeoutError is the error of an attempt that timed out while the
// caller still waited. It matches ErrAttemptTimeout and, on purpose, not
// context.DeadlineExceeded: the caller's own deadline is another matter.
type attemptTimeoutError struct {
	after time.Duration // Policy.AttemptTimeout, or 0 for net/http's own
	cause error         // net/http's timeout error, if it was one of its own
}

func (e *attemptTimeoutError) Error() string {
	if e.cause != nil {
		return "retryhttp: attempt timed out: " + e.cause.Error()
	}
	return fmt.Sprintf("retryhttp: attempt timed out: no response headers within %v", e.after)
}

// Is makes errors.Is(err, ErrAttemptTimeout) hold. The cause is not
// unwrapped: net/http's timeout errors match context.DeadlineExceeded.
func (e *attemptTimeoutError) Is(target error) bool { return target == ErrAttemptTimeout }

// Timeout reports true, as net.Error's timeouts do.
func (e *attemptTimeoutError) Timeout() bool { return true }

// attemptError returns the error of an attempt as the Policy sees it: a
// timeout of net/http's own (Transport.ResponseHeaderTimeout,
// TLSHandshakeTimeout, a net.Dialer's Timeout) while the caller's context is
// still live belongs to the attempt, not to the caller, and becomes an
// attemptTimeoutError.
func attemptError(callerCtx context.Context, err error) error {
	if err == nil || callerCtx.Err() != nil || errors.Is(err, ErrAttemptTimeout) {
		return err
	}
	var netErr net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &netErr) && netErr.Timeout()) {
		return &attemptTimeoutError{cause: err}
	}
	return err
}

// attemptContext is the context of an attempt of its own: a retry's, or
// any attempt's under Policy.AttemptTimeout. Cancelling it makes net/http
// close the attempt's connection, which is how a hung attempt is abandoned
// and how a discarded body stuck in a Read is set free.
//
// It is also the body of the attempt's response, when the context must live
// until that body is closed or read to its end: one allocation holds both.
type attemptContext struct {
	release context.CancelCauseFunc // safe to call more than once
	timer   *attemptTimer           // bounds the wait for headers; nil for none
	after   time.Duration
	body    io.ReadCloser // the response body it wraps, once it does
}

// startAttempt returns the attempt's context, derived from ctx, cancelled
// after timeout unless that is 0.
func startAttempt(ctx context.Context, timeout time.Duration) (context.Context, *attemptContext) {
	ctx, release := context.WithCancelCause(ctx)
	ac := &attemptContext{release: release, after: timeout}
	if timeout > 0 {
		ac.timer = startAttemptTimer(ac, timeout)
	}
	return ctx, ac
}

// stopTimer stops the attempt's timer, if it has one, and reports whether
// the timer had not fired.
func (ac *attemptContext) stopTimer() bool {
	at := ac.timer
	if at == nil {
		return true
	}
	ac.timer = nil
	return at.stop()
}

// abandon stops the timer and releases the context of an attempt that was
// not sent, or whose outcome is not kept.
func (ac *attemptContext) abandon() {
	ac.stopTimer()
	ac.release(nil)
}

// finish turns the outcome of an attempt with a context of its own into
// what the Transport handles. Headers in time: the attempt's context lives
// on until the response body is closed or read to its end, since the
// timeout does not cover the body; a response with no content to read, or
// a 101 Switching Protocols one (net/http stops watching the context of
// both), releases it at once and keeps its body as it is. Too late: the
// attempt is abandoned, and its error is an attemptTimeoutError unless the
// caller's own context ended first.
func (ac *attemptContext) finish(callerCtx context.Context, resp *http.Response, err error) (*http.Response, error) {
	if ac.stopTimer() {
		if err != nil || resp == nil || resp.Body == nil || hasNoContent(resp) ||
			resp.StatusCode == http.StatusSwitchingProtocols {
			ac.release(nil)
			return resp, attemptError(callerCtx, err)
		}
		ac.body = resp.Body
		resp.Body = ac
		return resp, nil
	}
	// The timer fired: the attempt's context is cancelled, and a response
	// that slipped in just then has a body that can no longer be read.
	ac.release(nil)
	if callerCtx.Err() != nil {
		return resp, err
	}
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	return nil, &attemptTimeoutError{after: ac.after}
}

// Read reads the response body, and releases the attempt's context at its
// end.
func (ac *attemptContext) Read(p []byte) (int, error) {
	n, err := ac.body.Read(p)
	if err == io.EOF {
		ac.release(nil)
	}
	return n, err
}

// Close closes the response body and releases the attempt's context.
func (ac *attemptContext) Close() error {
	err := ac.body.Close()
	ac.release(nil)
	return err
}

// attemptTimer is the timer of an attempt under Policy.AttemptTimeout. A
// timer stopped before it fired is kept in attemptTimers for a later
// attempt, so that the usual attempt, whose headers come in time, does not
// pay for a timer and its function each time.
type attemptTimer struct {
	t  *time.Timer
	ac atomic.Pointer[attemptContext] // the attempt it times, nil while pooled
}

var attemptTimers sync.Pool // of *attemptTimer, stopped

// startAttemptTimer starts a timer that cancels ac's context, with an
// attemptTimeoutError, after d.
func startAttemptTimer(ac *attemptContext, d time.Duration) *attemptTimer {
	at, _ := attemptTimers.Get().(*attemptTimer)
	if at == nil {
		at = &attemptTimer{}
		at.ac.Store(ac)
		at.t = time.AfterFunc(d, at.fire)
		return at
	}
	at.ac.Store(ac)
	at.t.Reset(d)
	return at
}

func (at *attemptTimer) fire() {
	if ac := at.ac.Load(); ac != nil {
		ac.release(&attemptTimeoutError{after: ac.after})
	}
}

// stop stops the timer and reports whether it stopped it before it fired.
// Only a timer that never fired, whose function will not run, is reused.
func (at *attemptTimer) stop() bool {
	if !at.t.Stop() {
		return false
	}
	at.ac.Store(nil)
	attemptTimers.Put(at)
	return true
}

// recordingBody passes the request body of one attempt through to Base and
// records any error its Read returns, so that a broken caller's body (a
// truncated file) is told apart from a broken connection.
type recordingBody struct {
	body    io.ReadCloser
	err     atomic.Pointer[error]
	getBody func() (io.ReadCloser, error) // the caller's GetBody, when wrapped
}

func (b *recordingBody) Read(p []byte) (int, error) {
	n, err := b.body.Read(p)
	if err != nil && err != io.EOF {
		b.record(err)
	}
	return n, err
}

// record keeps err. It is apart from Read so that only a failed Read pays
// for keeping it: taking the address of Read's own err would move it to the
// heap on every call.
func (b *recordingBody) record(err error) {
	b.err.Store(&err)
}

func (b *recordingBody) Close() error { return b.body.Close() }

// wrapGetBody makes the bodies that req.GetBody opens, and its errors,
// recorded in b too: net/http resends a request by itself on a kept-alive
// connection that the server closed, with a body from GetBody, and an error
// of that body is the caller's just the same.
func (b *recordingBody) wrapGetBody(req *http.Request) {
	if req.GetBody == nil {
		return
	}
	b.getBody = req.GetBody
	req.GetBody = b.reopen
}

// reopen is the attempt's GetBody: the caller's, recorded.
func (b *recordingBody) reopen() (io.ReadCloser, error) {
	body, err := b.getBody()
	if err != nil {
		b.record(err)
		return nil, err
	}
	return &reopenedBody{body: body, rec: b}, nil
}

// reopenedBody is a body that net/http opened with GetBody, whose read
// errors go to the attempt's recordingBody.
type reopenedBody struct {
	body io.ReadCloser
	rec  *recordingBody
}

func (b *reopenedBody) Read(p []byte) (int, error) {
	n, err := b.body.Read(p)
	if err != nil && err != io.EOF {
		b.rec.record(err)
	}
	return n, err
}

func (b *reopenedBody) Close() error { return b.body.Close() }

func (b *recordingBody) get() error {
	if e := b.err.Load(); e != nil {
		return *e
	}
	return nil
}
