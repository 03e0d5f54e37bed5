package otelretryhttp

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"

	"github.com/b4dedce7/retryhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// The names of the instruments, and of the attribute that says why a
// request was given up on.
const (
	retriesName     = "retryhttp.retries"
	giveUpsName     = "retryhttp.give_ups"
	waitName        = "retryhttp.wait.duration"
	budgetName      = "retryhttp.budget.tokens"
	holdsName       = "retryhttp.holds"
	holdName        = "retryhttp.hold.duration"
	holdReasonKey   = attribute.Key("retryhttp.hold.reason")
	hedgesName      = "retryhttp.hedges"
	hedgesWonName   = "retryhttp.hedges.won"
	giveUpReasonKey = attribute.Key("retryhttp.give_up.reason")
	budgetIDKey     = attribute.Key("retryhttp.budget.id")
)

// waitBuckets are the bucket boundaries of retryhttp.wait.duration, in
// seconds: those OpenTelemetry advises for HTTP durations, extended to the
// 30 s of retryhttp.DefaultMaxRetryAfter and beyond.
var waitBuckets = []float64{0, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 30, 60, 120}

// instruments are the synchronous instruments that the Policy's hooks feed.
type instruments struct {
	retries   metric.Int64Counter
	giveUps   metric.Int64Counter
	waits     metric.Float64Histogram
	holds     metric.Int64Counter
	held      metric.Float64Histogram
	hedges    metric.Int64Counter
	hedgesWon metric.Int64Counter
}

func newInstruments(meter metric.Meter) *instruments {
	retries, err1 := meter.Int64Counter(retriesName,
		metric.WithUnit("{retry}"),
		metric.WithDescription("Retries decided, each counted before its wait, by the outcome of the attempt that called for it."))
	giveUps, err2 := meter.Int64Counter(giveUpsName,
		metric.WithUnit("{give_up}"),
		metric.WithDescription("Requests whose last outcome called for another attempt but that were returned anyway, by the reason the retries ended."))
	waits, err3 := meter.Float64Histogram(waitName,
		metric.WithUnit("s"),
		metric.WithDescription("The wait chosen before each retry."),
		metric.WithExplicitBucketBoundaries(waitBuckets...))
	holds, err4 := meter.Int64Counter(holdsName,
		metric.WithUnit("{request}"),
		metric.WithDescription("Attempts held back before they were sent, because the destination's quota was spent, by the reason of the hold."))
	held, err5 := meter.Float64Histogram(holdName,
		metric.WithUnit("s"),
		metric.WithDescription("How long each held attempt was held."),
		metric.WithExplicitBucketBoundaries(waitBuckets...))
	hedges, err6 := meter.Int64Counter(hedgesName,
		metric.WithUnit("{hedge}"),
		metric.WithDescription("Hedged attempts sent: copies of a request sent because an earlier attempt had no response headers after the hedge delay."))
	hedgesWon, err7 := meter.Int64Counter(hedgesWonName,
		metric.WithUnit("{hedge}"),
		metric.WithDescription("Requests whose response came from a hedged attempt."))
	if err := errors.Join(err1, err2, err3, err4, err5, err6, err7); err != nil {
		otel.Handle(err)
	}
	// The SDK returns a working instrument along with its error; a
	// provider that returns none gets a no-op one.
	inst := &instruments{retries: retries, giveUps: giveUps, waits: waits, holds: holds, held: held, hedges: hedges, hedgesWon: hedgesWon}
	if inst.hedges == nil {
		inst.hedges = noop.Int64Counter{}
	}
	if inst.hedgesWon == nil {
		inst.hedgesWon = noop.Int64Counter{}
	}
	if inst.retries == nil {
		inst.retries = noop.Int64Counter{}
	}
	if inst.giveUps == nil {
		inst.giveUps = noop.Int64Counter{}
	}
	if inst.waits == nil {
		inst.waits = noop.Float64Histogram{}
	}
	if inst.holds == nil {
		inst.holds = noop.Int64Counter{}
	}
	if inst.held == nil {
		inst.held = noop.Float64Histogram{}
	}
	return inst
}

// onRetry returns a Policy.OnRetry that records the retry and then calls
// next, if not nil.
func (inst *instruments) onRetry(next func(retryhttp.RetryEvent)) func(retryhttp.RetryEvent) {
	return func(ev retryhttp.RetryEvent) {
		ctx := requestContext(ev.Request)
		inst.retries.Add(ctx, 1, metric.WithAttributes(causeAttributes(ev.Response, ev.Err)...))
		inst.waits.Record(ctx, ev.Wait.Seconds())
		if next != nil {
			next(ev)
		}
	}
}

// onGiveUp returns a Policy.OnGiveUp that records the give-up and then calls
// next, if not nil.
func (inst *instruments) onGiveUp(next func(retryhttp.GiveUpEvent)) func(retryhttp.GiveUpEvent) {
	return func(ev retryhttp.GiveUpEvent) {
		inst.giveUps.Add(requestContext(ev.Request), 1, metric.WithAttributes(giveUpReasonKey.String(reasonName(ev.Reason))))
		if next != nil {
			next(ev)
		}
	}
}

// onHold returns a Policy.OnHold that records the hold and then calls next,
// if not nil.
func (inst *instruments) onHold(next func(retryhttp.HoldEvent)) func(retryhttp.HoldEvent) {
	return func(ev retryhttp.HoldEvent) {
		ctx := requestContext(ev.Request)
		inst.holds.Add(ctx, 1, metric.WithAttributes(holdReasonKey.String(ev.Reason.String())))
		inst.held.Record(ctx, ev.Held.Seconds())
		if next != nil {
			next(ev)
		}
	}
}

// onHedge returns a Policy.OnHedge that counts the hedge and then calls
// next, if not nil.
func (inst *instruments) onHedge(next func(retryhttp.HedgeEvent)) func(retryhttp.HedgeEvent) {
	return func(ev retryhttp.HedgeEvent) {
		inst.hedges.Add(requestContext(ev.Request), 1)
		if next != nil {
			next(ev)
		}
	}
}

// countWin counts a response that came from a hedged attempt.
func (inst *instruments) countWin(req *http.Request, resp *http.Response) {
	if resp != nil && resp.Request != nil && retryhttp.Hedged(resp.Request.Context()) {
		inst.hedgesWon.Add(requestContext(req), 1)
	}
}

// requestContext returns the context to record an event of req in, which
// links exemplars to the caller's span.
func requestContext(req *http.Request) context.Context {
	if req == nil {
		return context.Background()
	}
	return req.Context()
}

// causeAttributes name the outcome that called for a retry: the response's
// status code, or the class of the transport error.
func causeAttributes(resp *http.Response, err error) []attribute.KeyValue {
	switch {
	case resp != nil:
		return []attribute.KeyValue{semconv.HTTPResponseStatusCode(resp.StatusCode)}
	case err != nil:
		return []attribute.KeyValue{semconv.ErrorTypeKey.String(errorClass(err))}
	default:
		return nil
	}
}

// errorClass sorts a transport error into one of a few classes, so that the
// error.type attribute has a bounded number of values. It names the error
// both on retryhttp.retries and on the failed attempt's span (see
// endWithErrorClass), so that one cause has one name. It names rather than
// judges: the Policy has judged.
func errorClass(err error) string {
	var netErr net.Error
	var dnsErr *net.DNSError
	switch {
	case errors.Is(err, retryhttp.ErrAttemptTimeout),
		errors.As(err, &netErr) && netErr.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection_refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNABORTED):
		return "connection_reset"
	case errors.Is(err, syscall.EPIPE):
		return "broken_pipe"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	case errors.Is(err, net.ErrClosed):
		return "connection_closed"
	case errors.As(err, &dnsErr):
		return "dns"
	}
	// net/http's HTTP/2 errors, and its HTTP/1 errServerClosedIdle, are of
	// unexported types: only their text tells them apart.
	switch msg := err.Error(); {
	case strings.Contains(msg, "http2: "), strings.Contains(msg, "stream error: stream ID "):
		return "http2"
	case strings.Contains(msg, "server closed idle connection"):
		return "connection_closed"
	}
	return semconv.ErrorTypeOther.Value.AsString()
}

// reasons maps each reason a retryhttp.Transport gives up for to the value
// of retryhttp.give_up.reason.
var reasons = []struct {
	err  error
	name string
}{
	{retryhttp.ErrAttemptsUsedUp, "attempts_used_up"},
	{retryhttp.ErrRetryAfterTooLong, "retry_after_too_long"},
	{retryhttp.ErrMaxElapsed, "max_elapsed"},
	{retryhttp.ErrDeadline, "deadline"},
	{retryhttp.ErrBudgetEmpty, "budget_empty"},
	{retryhttp.ErrBackoffStop, "backoff_stop"},
	{retryhttp.ErrNotResendable, "not_resendable"},
	{retryhttp.ErrThrottled, "throttled"},
	{context.Canceled, "canceled"},
	{context.DeadlineExceeded, "deadline_exceeded"},
}

// reasonName returns the value of retryhttp.give_up.reason for a
// GiveUpEvent's Reason.
func reasonName(reason error) string {
	for _, r := range reasons {
		if errors.Is(reason, r.err) {
			return r.name
		}
	}
	return semconv.ErrorTypeOther.Value.AsString()
}
