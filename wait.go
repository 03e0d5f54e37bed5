package retryhttp

import (
	"context"
	"errors"
	"io"
	"net/http"
	"time"
)

// Waiting: a retry waits as long as decide said, counted from the moment
// of the decision, while the old response's body is drained (bounded, so
// that its connection may serve the retry) and closed. The caller's context
// and its Cancel channel cut the wait short. A virtual Clock stands still
// while the Transport works; the waits it plays are summed (played), so
// that the limits and the context's deadline still see them.

// Limits on the part of a discarded response body read to keep its
// connection alive: a larger or slower body costs the connection, which is
// cheaper than stalling the retry on it.
// The reading stops a little before the retry stops waiting for it, so that
// a body that trickles is closed before the retry is sent.
const (
	drainLimit   = 32 << 10
	drainTimeout = 50 * time.Millisecond
	drainReadFor = 40 * time.Millisecond
)

// wait waits for the retry d decided: it discards resp's body and sleeps
// until d's wait has passed since the decision. It returns the error that
// cut the wait short: the request's cancellation, or the Clock's. The time
// from a wait the server named counts, with a quota hold's that may follow,
// against MaxRetryAfter (see admit).
func (r *retrier) wait(resp *http.Response, d decision) error {
	r.named = delayMark{}
	if d.server.ok {
		r.named = delayMark{clock: d.decidedAt, real: d.decidedReal, played: r.played, set: true}
	}
	ctx := r.req.Context()
	err := r.drainAndWait(ctx, resp, d)
	if err == nil && !requestLive(r.req) {
		err = context.Canceled // the Cancel channel closed as the wait ended
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = ctxErr
		}
	}
	return err
}

// drainAndWait discards resp's body and waits until d's wait has passed
// since the decision, or until the request is cancelled.
func (r *retrier) drainAndWait(ctx context.Context, resp *http.Response, d decision) error {
	//lint:ignore SA1019 net/http still honours the deprecated Cancel channel, so must a retry's wait.
	if cancel := r.req.Cancel; cancel != nil {
		var stop context.CancelFunc
		ctx, stop = withCancelChannel(ctx, cancel)
		defer stop()
	}
	if err := discard(ctx, resp, r.abandon); err != nil {
		return err
	}
	// The time since the decision is part of the wait. A virtual Clock
	// stands still while the Transport works, and its waits are played in
	// full.
	wait := d.wait
	if !isVirtual(r.clock) {
		wait = max(d.wait-r.sinceDecision(d), 0)
	}
	if err := r.clock.Sleep(ctx, wait); err != nil {
		return err
	}
	if isVirtual(r.clock) {
		r.played = saturatingAdd(r.played, wait)
	}
	return nil
}

// delayMark is a moment from which an attempt's delay is measured.
type delayMark struct {
	clock  time.Time     // on the Clock
	real   time.Time     // in real time
	played time.Duration // the retrier's played then
	set    bool
}

// mark returns a delayMark for now.
func (r *retrier) mark(now time.Time) delayMark {
	return delayMark{clock: now, real: time.Now(), played: r.played, set: true}
}

// delayedSince returns how long ago m was: on the Clock, or, on a virtual
// Clock, which concurrent requests' waits move too, the waits this request
// played since plus the real time its own work took.
func (r *retrier) delayedSince(m delayMark, now time.Time) time.Duration {
	if !m.set {
		return 0
	}
	if isVirtual(r.clock) {
		return saturatingAdd(r.played-m.played, max(time.Since(m.real), 0))
	}
	return max(now.Sub(m.clock), 0)
}

// sinceDecision returns how long ago d was decided: on the Clock, or in real
// time on a virtual Clock, which concurrent requests' waits may have moved
// meanwhile.
func (r *retrier) sinceDecision(d decision) time.Duration {
	if isVirtual(r.clock) {
		return time.Since(d.decidedReal)
	}
	return r.clock.Now().Sub(d.decidedAt)
}

// withCancelChannel returns a context that is done when ctx is, or when the
// deprecated Request.Cancel channel closes, which net/http still honours.
func withCancelChannel(ctx context.Context, cancel <-chan struct{}) (context.Context, context.CancelFunc) {
	ctx, stop := context.WithCancel(ctx)
	go func() {
		select {
		case <-cancel:
			stop()
		case <-ctx.Done():
		}
	}()
	return ctx, stop
}

// discard reads what remains of a response body that will not be returned,
// up to drainLimit bytes and for at most drainTimeout, and closes it. A body
// read to its end lets the connection be reused for the retry.
//
// The trade-off: an io.ReadCloser promises nothing about Read and Close at
// once, and a Base that wraps bodies (for metrics, for tracing) may race if
// a timer closed the body under a Read. So one goroutine reads and then
// closes, never both at once, and the retry waits for it only up to
// drainTimeout, or until ctx is done. A body whose Read blocks longer is set
// free by cancelling its attempt's own context (abandon), which makes
// net/http close the connection and the Read return; the goroutine then
// closes the body and ends. A first attempt has no context of its own, so
// that the happy path allocates nothing (unless Policy.AttemptTimeout is
// set): its stuck body keeps the goroutine until the server sends or closes,
// or the caller's context ends. The connection is lost either way.
func discard(ctx context.Context, resp *http.Response, abandon context.CancelCauseFunc) error {
	if resp == nil || resp.Body == nil {
		return nil
	}
	if hasNoContent(resp) {
		// Nothing to read, but a Base that wraps bodies (otelhttp ends a
		// span on Close) must still see it closed.
		resp.Body.Close()
		return nil
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		drainBody(resp.Body)
	}()
	timer := time.NewTimer(drainTimeout)
	defer timer.Stop()
	select {
	case <-done:
		return nil
	case <-timer.C:
		if abandon != nil {
			abandon(errDrainAbandoned)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// errDrainAbandoned is the cause of cancelling an attempt whose discarded
// body could not be read in time.
var errDrainAbandoned = errors.New("retryhttp: discarded response body abandoned")

// drainBody reads body until EOF, drainLimit bytes or drainReadFor, then
// closes it.
func drainBody(body io.ReadCloser) {
	defer body.Close()
	deadline := time.Now().Add(drainReadFor)
	var buf [4 << 10]byte
	for read := 0; read < drainLimit && time.Now().Before(deadline); {
		n, err := body.Read(buf[:min(len(buf), drainLimit-read)])
		read += n
		if err != nil {
			return
		}
	}
}

// drainAllowance is how long discarding resp's body may take.
func drainAllowance(resp *http.Response) time.Duration {
	if resp == nil || resp.Body == nil || hasNoContent(resp) {
		return 0
	}
	return drainTimeout
}

// hasNoContent reports whether resp's body is known to be empty: http.NoBody,
// a Content-Length of 0, or the answer to a HEAD. A Base that wraps bodies
// (for tracing, for metrics) hides http.NoBody, so the length and the method
// tell too.
func hasNoContent(resp *http.Response) bool {
	return resp.Body == http.NoBody || resp.ContentLength == 0 ||
		(resp.Request != nil && resp.Request.Method == http.MethodHead)
}
