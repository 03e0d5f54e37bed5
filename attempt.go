package retryhttp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

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

// attemptTimer bounds the wait for one attempt's response headers
// (Policy.AttemptTimeout) through a context of the attempt's own, which
// net/http honours by closing the attempt's connection.
type attemptTimer struct {
	timer   *time.Timer
	release context.CancelCauseFunc
	after   time.Duration
}

// startAttemptTimer returns the attempt's context, derived from ctx, and
// the timer that cancels it after d.
func startAttemptTimer(ctx context.Context, d time.Duration) (context.Context, *attemptTimer) {
	ctx, release := context.WithCancelCause(ctx)
	at := &attemptTimer{release: release, after: d}
	at.timer = time.AfterFunc(d, func() { release(&attemptTimeoutError{after: d}) })
	return ctx, at
}

// abandon stops the timer and releases the context of an attempt that was
// not sent.
func (at *attemptTimer) abandon() {
	at.timer.Stop()
	at.release(nil)
}

// finish turns the outcome of a timed attempt into what the Transport
// handles. Headers in time: the attempt's context lives on until the
// response body is closed or read to its end, since the timeout does not
// cover the body. Too late: the attempt is abandoned, and its error is an
// attemptTimeoutError unless the caller's own context ended first.
func (at *attemptTimer) finish(callerCtx context.Context, resp *http.Response, err error) (*http.Response, error) {
	if at.timer.Stop() {
		if err != nil || resp == nil || resp.Body == nil {
			at.release(nil)
			return resp, attemptError(callerCtx, err)
		}
		resp.Body = releaseOnEnd(resp.Body, at.release)
		return resp, nil
	}
	// The timer fired: the attempt's context is cancelled, and a response
	// that slipped in just then has a body that can no longer be read.
	at.release(nil)
	if callerCtx.Err() != nil {
		return resp, err
	}
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	return nil, &attemptTimeoutError{after: at.after}
}

// releaseOnEnd wraps a response body so that release runs when it is closed
// or read to its end. A body that is also an io.Writer (a 101 Switching
// Protocols connection) stays one.
func releaseOnEnd(body io.ReadCloser, release context.CancelCauseFunc) io.ReadCloser {
	b := releasingBody{body: body, release: release}
	if w, ok := body.(io.Writer); ok {
		return &releasingReadWriter{releasingBody: b, w: w}
	}
	return &b
}

type releasingBody struct {
	body    io.ReadCloser
	release context.CancelCauseFunc // safe to call more than once
}

func (b *releasingBody) Read(p []byte) (int, error) {
	n, err := b.body.Read(p)
	if err == io.EOF {
		b.release(nil)
	}
	return n, err
}

func (b *releasingBody) Close() error {
	err := b.body.Close()
	b.release(nil)
	return err
}

type releasingReadWriter struct {
	releasingBody
	w io.Writer
}

func (b *releasingReadWriter) Write(p []byte) (int, error) { return b.w.Write(p) }

// bodyReadError passes the request body of one attempt through to Base and
// records any error its Read returns, so that a broken caller's body (a
// truncated file) is told apart from a broken connection.
type bodyReadError struct {
	body io.ReadCloser
	err  atomic.Pointer[error]
}

func (b *bodyReadError) Read(p []byte) (int, error) {
	n, err := b.body.Read(p)
	if err != nil && err != io.EOF {
		b.err.Store(&err)
	}
	return n, err
}

func (b *bodyReadError) Close() error { return b.body.Close() }

func (b *bodyReadError) get() error {
	if e := b.err.Load(); e != nil {
		return *e
	}
	return nil
}
