// Package otelretryhttp instruments a retrying retryhttp.Transport with
// OpenTelemetry: a CLIENT span for every attempt, made by otelhttp, that
// carries http.request.resend_count on every resend, and metrics of the
// retries, the give-ups, the waits, the retry budget and the hedges.
//
//	client := &http.Client{Transport: otelretryhttp.NewTransport(nil, retryhttp.Policy{})}
//
// # Layers
//
// NewTransport stacks, from the outside in:
//
//	retryhttp.Transport        retries; its hooks feed the metrics
//	  otelhttp.Transport       one CLIENT span per attempt, and otelhttp's own metrics
//	    attempt layer          sets http.request.resend_count = retryhttp.Attempt − 1,
//	                           and a failed attempt's error.type as the metrics name it
//	      base                 sends each attempt (http.DefaultTransport when nil)
//
// Every attempt is its own span, as the OpenTelemetry HTTP conventions ask
// of every physical request. No span is added for the logical request: the
// attempts' spans are children of the span in the caller's request context,
// siblings of one another, so a caller who wants one span around the whole
// request starts it before calling the client. The first attempt's span has
// no http.request.resend_count; the first resend's has 1, the next 2, and so
// on. An attempt's span ends when its response body is closed or read to
// its end (which the retry layer does for every response it discards), or
// at once when the attempt fails with an error.
//
// # Metrics
//
// The instruments come from the Meter named ScopeName of the
// MeterProvider:
//
//	| name                    | instrument               | unit      | attributes                                        |
//	|-------------------------|--------------------------|-----------|---------------------------------------------------|
//	| retryhttp.retries       | Int64Counter             | {retry}   | http.response.status_code, or error.type          |
//	| retryhttp.give_ups      | Int64Counter             | {give_up} | retryhttp.give_up.reason                          |
//	| retryhttp.wait.duration | Float64Histogram         | s         | none                                              |
//	| retryhttp.holds         | Int64Counter             | {request} | retryhttp.hold.reason                             |
//	| retryhttp.hold.duration | Float64Histogram         | s         | none                                              |
//	| retryhttp.budget.tokens | Float64ObservableGauge   | {token}   | url.scheme, server.address, server.port, retryhttp.budget.id |
//	| retryhttp.hedges        | Int64Counter             | {hedge}   | none                                              |
//	| retryhttp.hedges.won    | Int64Counter             | {hedge}   | none                                              |
//
// retryhttp.retries counts each retry when it is decided, before its wait
// (when Policy.OnRetry is called), by the outcome of the attempt that
// called for it: the response's status code in http.response.status_code,
// or, for a transport error, a class of error in error.type, one of
// "timeout", "connection_refused", "connection_reset" (reset or aborted),
// "broken_pipe", "eof", "connection_closed", "http2", "dns" and "_OTHER".
// The span of an attempt that failed so carries the same value in its own
// error.type, where otelhttp alone would put the error's Go type; an error
// of no known class keeps otelhttp's type name there.
//
// retryhttp.give_ups counts each request whose last outcome called for
// another attempt but that was returned anyway (when Policy.OnGiveUp is
// called), by retryhttp.give_up.reason: "attempts_used_up",
// "retry_after_too_long", "max_elapsed", "deadline", "budget_empty",
// "backoff_stop", "not_resendable" and "throttled" (a request that
// Policy.Throttle rejected before sending anything) for the sentinels of
// package retryhttp, "canceled" and "deadline_exceeded" for a context that ended a
// wait, and "_OTHER" for a reason this version does not know. A retry that
// retryhttp.retries counted can still end in a give-up, counted too: when
// the request's context ends during its wait, or when the hooks took so
// long that the retry no longer fits the Policy's limits.
//
// retryhttp.wait.duration records, for each retry, the wait that the
// Transport chose before it (RetryEvent.Wait), in seconds, as the wait
// begins; a wait cut short by the request's context is recorded whole.
//
// retryhttp.holds counts each attempt that a quota hold kept back before it
// was sent (when Policy.OnHold is called, as the hold ends), by
// retryhttp.hold.reason: "reset" when the destination's quota was spent
// and the attempt waited for its reset, "quota" when it waited for the
// server's next answer because the quota announced since the reset had been
// let through. retryhttp.hold.duration records how long each was held
// (HoldEvent.Held), in seconds.
//
// retryhttp.budget.tokens reports, for each destination (scheme, host and
// port) that the Transport has sent to recently, the retry Budget's tokens
// that a request to it may spend now (Budget.TokensFor): one point per
// destination of a per-host budget, and the one shared bucket's tokens at
// every destination of a budget made by retryhttp.NewBudget. A Transport
// tracks at most 64 destinations, the most recently used, and forgets one
// it has sent nothing to for 10 minutes, so the gauge has at most 64 points
// per Transport. An unlimited budget (retryhttp.UnlimitedBudget) has no
// tokens to count and reports no point. Each point carries
// retryhttp.budget.id, the Budget's name (see WithName; by default
// "budget-1", "budget-2", ... in the order the process's Transports were
// made), so that Transports with budgets of their own that send to one
// destination report apart, while Transports that share a Budget report the
// same points. The name is stable across restarts, so a restart continues
// the same series.
//
// retryhttp.hedges counts the hedged attempts sent (when Policy.OnHedge is
// called; see retryhttp.Hedge), and retryhttp.hedges.won the requests whose
// response came from a hedged attempt. A hedged attempt's span is like any
// other attempt's, with http.request.resend_count, and carries
// retryhttp.hedge = true.
//
// otelhttp records its own metrics, such as http.client.request.duration,
// for every attempt, with the same MeterProvider.
//
// # The default budget
//
// When p.Budget is nil, retryhttp.Transport would make a per-host budget of
// its own that nothing outside it can read. NewTransport therefore makes
// that same default itself and sets it in the Policy, so that the gauge can
// observe it:
//
//	p.Budget = retryhttp.NewHostBudget(retryhttp.DefaultBudgetRatio, retryhttp.DefaultBudgetBurst)
//
// The retries allowed are those of the uninstrumented Transport.
package otelretryhttp

import (
	"net/http"

	"github.com/b4dedce7/retryhttp"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope name of the Meter that holds the
// retryhttp.* instruments.
const ScopeName = "github.com/b4dedce7/retryhttp/otelretryhttp"

// hedgeKey marks the span of a hedged attempt.
const hedgeKey = attribute.Key("retryhttp.hedge")

// An Option configures NewTransport.
type Option interface {
	apply(*config)
}

type config struct {
	tracerProvider trace.TracerProvider
	meterProvider  metric.MeterProvider
	name           string
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// WithTracerProvider sets the TracerProvider that makes the attempts' spans.
// Without it, or with nil, otelhttp's default applies: the provider of the
// span in the request's context when it holds a valid one, and otherwise
// the global provider (otel.GetTracerProvider).
func WithTracerProvider(tp trace.TracerProvider) Option {
	return optionFunc(func(c *config) { c.tracerProvider = tp })
}

// WithMeterProvider sets the MeterProvider of the retryhttp.* instruments
// and of otelhttp's own metrics. Without it, or with nil, the global
// provider (otel.GetMeterProvider) is used.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return optionFunc(func(c *config) { c.meterProvider = mp })
}

// WithName sets the value of retryhttp.budget.id on the budget gauge's
// points: a name for the Transport's retry Budget, which stays the same
// across restarts so that dashboards and alerts keep their series, such as
// "github-api" or "payments". Transports that share a Budget should be
// given the same name, and Transports with budgets of their own different
// names, or their points at a destination they both send to collide.
//
// Without it, or with "", the Budget is named "budget-1", "budget-2", and
// so on, in the order NewTransport first sees each Budget in the process:
// stable across restarts as long as the program makes its Transports in the
// same order, as one that makes them at start-up does. Transports that
// share a Budget then share its name.
func WithName(name string) Option {
	return optionFunc(func(c *config) { c.name = name })
}

// NewTransport returns an http.RoundTripper that retries requests as a
// retryhttp.Transport with Policy p does, sending each attempt through an
// otelhttp Transport over base (http.DefaultTransport when nil), and that
// records the metrics described in the package documentation. The retry
// layer's Base declares base as what it wraps (Unwrap() http.RoundTripper),
// so that the retry layer sees base's proxy settings as a
// retryhttp.Transport over base itself would; a base that wraps an
// *http.Transport should declare it likewise (see retryhttp.Transport's
// Base).
//
// The hooks p.OnRetry, p.OnGiveUp, p.OnHold and p.OnHedge, when set, are
// still called, each after the event has been recorded. When p.Budget is nil, NewTransport sets
// it to a new retryhttp.NewHostBudget(retryhttp.DefaultBudgetRatio,
// retryhttp.DefaultBudgetBurst), the budget the Transport would otherwise
// make for itself, so that the budget gauge can observe it.
//
// The returned RoundTripper also has a CloseIdleConnections method, which
// http.Client.CloseIdleConnections calls: it calls base's, if base has one,
// directly, for otelhttp's Transport does not pass the call on.
//
// Like an http.Transport, the RoundTripper should be made once and reused:
// each one registers the budget gauge's callback with the MeterProvider, for
// as long as the provider lives.
func NewTransport(base http.RoundTripper, p retryhttp.Policy, opts ...Option) http.RoundTripper {
	var c config
	for _, o := range opts {
		o.apply(&c)
	}
	if c.meterProvider == nil {
		c.meterProvider = otel.GetMeterProvider()
	}
	if base == nil {
		base = http.DefaultTransport
	}
	if p.Budget == nil {
		p.Budget = retryhttp.NewHostBudget(retryhttp.DefaultBudgetRatio, retryhttp.DefaultBudgetBurst)
	}

	meter := c.meterProvider.Meter(ScopeName)
	inst := newInstruments(meter)
	p.OnRetry = inst.onRetry(p.OnRetry)
	p.OnGiveUp = inst.onGiveUp(p.OnGiveUp)
	p.OnHold = inst.onHold(p.OnHold)
	p.OnHedge = inst.onHedge(p.OnHedge)

	var dests *destinations
	if p.Validate() == nil && !isUnlimited(p.Budget) { // an invalid Policy sends nothing
		dests = newDestinations()
		name := c.name
		if name == "" {
			name = defaultBudgetName(p.Budget)
		}
		registerBudgetGauge(meter, p.Budget, name, dests)
	}

	otelOpts := []otelhttp.Option{otelhttp.WithMeterProvider(c.meterProvider)}
	if c.tracerProvider != nil {
		otelOpts = append(otelOpts, otelhttp.WithTracerProvider(c.tracerProvider))
	}
	return &transport{
		retry: &retryhttp.Transport{
			Base: spanLayer{
				RoundTripper: otelhttp.NewTransport(attemptLayer{base: base}, otelOpts...),
				base:         base,
			},
			Policy: p,
		},
		base:  base,
		dests: dests,
		inst:  inst,
	}
}

// transport is the RoundTripper that NewTransport returns: the retry layer,
// with a note of each request's destination for the budget gauge, and a
// CloseIdleConnections that reaches the base.
type transport struct {
	retry *retryhttp.Transport
	base  http.RoundTripper
	dests *destinations // nil when the budget is unlimited or the Policy invalid
	inst  *instruments
}

// RoundTrip notes the request's destination for the budget gauge and sends
// the request through the retry layer. It implements http.RoundTripper.
func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.dests != nil && req.URL != nil {
		t.dests.touch(req.URL)
	}
	resp, err := t.retry.RoundTrip(req)
	if t.retry.Policy.Hedge != nil {
		t.inst.countWin(req, resp)
	}
	return resp, err
}

// CloseIdleConnections closes the idle connections of the base transport, if
// it has such a method. It calls the base directly, once, since neither
// otelhttp's Transport nor the attempt layer has connections of its own and
// otelhttp does not pass the call on.
func (t *transport) CloseIdleConnections() {
	type closeIdler interface{ CloseIdleConnections() }
	if c, ok := t.base.(closeIdler); ok {
		c.CloseIdleConnections()
	}
}

// spanLayer is otelhttp's Transport over the attempt layer, as the retry
// layer's Base, and declares the base it sends through (Unwrap): the retry
// layer reads net/http's errors by their text only when it can see that no
// proxy's words may be behind it, which it sees in the *http.Transport that
// the base is, or declares it wraps. Neither otelhttp nor the attempt layer
// makes an error of its own from what a server or a proxy sent, so the
// retries are those of a retryhttp.Transport over base itself.
type spanLayer struct {
	http.RoundTripper // otelhttp's Transport over the attempt layer
	base              http.RoundTripper
}

// Unwrap returns the base that every attempt is sent through.
func (l spanLayer) Unwrap() http.RoundTripper { return l.base }

// attemptLayer sits below otelhttp, where the request's context holds the
// attempt's span, and marks every resend's span with its resend count.
type attemptLayer struct {
	base http.RoundTripper
}

// RoundTrip sets http.request.resend_count to retryhttp.Attempt − 1 on the
// span in req's context for every attempt after the first, and
// retryhttp.hedge = true for a hedged attempt, and sends req through the
// base. An error of a class that retryhttp.retries knows ends the span
// here, with that class in error.type (see endWithErrorClass).
func (l attemptLayer) RoundTrip(req *http.Request) (*http.Response, error) {
	span := trace.SpanFromContext(req.Context())
	if n := retryhttp.Attempt(req.Context()); n > 1 && span.IsRecording() {
		span.SetAttributes(semconv.HTTPRequestResendCount(n - 1))
		if retryhttp.Hedged(req.Context()) {
			span.SetAttributes(hedgeKey.Bool(true))
		}
	}
	resp, err := l.base.RoundTrip(req)
	if err != nil && span.IsRecording() {
		endWithErrorClass(span, err)
	}
	return resp, err
}

// endWithErrorClass ends an attempt's span that failed with err as otelhttp
// would, with error status and err's text, but with error.type set to the
// class that retryhttp.retries counts the error by (errorClass), where
// otelhttp would name its Go type (*net.OpError): one name for one cause
// on both. otelhttp's own attributes and End, which follow, are then
// ignored, as the API asks of an ended span. An error of no known class
// ("_OTHER" on the metric) is left to otelhttp, whose type name tells more.
func endWithErrorClass(span trace.Span, err error) {
	class := errorClass(err)
	if class == semconv.ErrorTypeOther.Value.AsString() {
		return
	}
	span.SetAttributes(semconv.ErrorTypeKey.String(class))
	span.SetStatus(codes.Error, err.Error())
	span.End()
}
