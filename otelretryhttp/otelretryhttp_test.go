package otelretryhttp_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/b4dedce7/retryhttp"
	"github.com/b4dedce7/retryhttp/otelretryhttp"
	"github.com/b4dedce7/retryhttp/retrytest"
	"github.com/cenkalti/backoff/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const resendCount = attribute.Key("http.request.resend_count")

func constantBackoff(d time.Duration) func() backoff.BackOff {
	return func() backoff.BackOff { return backoff.NewConstantBackOff(d) }
}

func TestOneClientSpanPerAttemptUnderTheCallersSpan(t *testing.T) {
	h := newHarness(t)
	srv := serve(t, statuses("", 503, 503))
	client := h.client(retryhttp.Policy{})

	ctx, caller := h.tp.Tracer("test").Start(context.Background(), "caller")
	resp, err := get(t, ctx, client, srv.URL)
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	closeResponse(resp)
	caller.End()

	spans := h.clientSpans()
	require.Len(t, spans, 3, "one CLIENT span per attempt")
	wantStatus := []int64{503, 503, 200}
	for i, s := range spans {
		assert.Equal(t, trace.SpanKindClient, s.SpanKind())
		assert.Equal(t, caller.SpanContext().TraceID(), s.SpanContext().TraceID(), "span %d: trace", i)
		assert.Equal(t, caller.SpanContext().SpanID(), s.Parent().SpanID(), "span %d: parent is the caller's span", i)
		status := attrValue(s.Attributes(), "http.response.status_code")
		assert.Equal(t, wantStatus[i], status.AsInt64(), "span %d: status", i)
		rc := attrValue(s.Attributes(), resendCount)
		if i == 0 {
			assert.False(t, hasAttr(s.Attributes(), resendCount), "the first attempt has no resend count")
		} else {
			assert.Equal(t, int64(i), rc.AsInt64(), "span %d: resend count", i)
		}
	}
	assert.Equal(t, int64(3), h.base.attempts.Load())
}

func TestNoResendCountWithoutRetries(t *testing.T) {
	h := newHarness(t)
	srv := serve(t, statuses("", 503))
	client := h.client(retryhttp.Policy{})

	resp, err := client.Post(srv.URL, "text/plain", strings.NewReader("not idempotent"))
	require.NoError(t, err)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	closeResponse(resp)

	spans := h.clientSpans()
	require.Len(t, spans, 1)
	assert.False(t, hasAttr(spans[0].Attributes(), resendCount))
	assert.False(t, spans[0].Parent().IsValid(), "no caller span, so a root span")
}

func TestRetriesByStatusAndWaits(t *testing.T) {
	h := newHarness(t)
	srv := serve(t, statuses("", 503, 429, 503))
	client := h.client(retryhttp.Policy{Backoff: constantBackoff(20 * time.Millisecond)})

	resp, err := get(t, context.Background(), client, srv.URL)
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	closeResponse(resp)

	ms := h.metrics(t)
	assert.Equal(t, map[string]int64{"503": 2, "429": 1},
		counter(t, ms, "retryhttp.retries", "http.response.status_code"))
	assert.Equal(t, "{retry}", ms["retryhttp.retries"].Unit)

	wait, ok := ms["retryhttp.wait.duration"]
	require.True(t, ok, "the wait histogram is reported")
	assert.Equal(t, "s", wait.Unit)
	hist, ok := wait.Data.(metricdata.Histogram[float64])
	require.True(t, ok, "%T", wait.Data)
	require.Len(t, hist.DataPoints, 1)
	dp := hist.DataPoints[0]
	assert.Equal(t, uint64(3), dp.Count)
	assert.InDelta(t, 0.060, dp.Sum, 1e-9, "three waits of 20 ms, in seconds")
	minWait, _ := dp.Min.Value()
	maxWait, _ := dp.Max.Value()
	assert.InDelta(t, 0.020, minWait, 1e-9)
	assert.InDelta(t, 0.020, maxWait, 1e-9)

	assert.Empty(t, counter(t, ms, "retryhttp.give_ups", "retryhttp.give_up.reason"), "no give-up")
}

func TestWaitsFollowRetryAfter(t *testing.T) {
	h := newHarness(t)
	srv := serve(t, statuses("120", 503, 503))
	clock := retrytest.NewClock(t) // plays the waits without sleeping
	client := h.client(retryhttp.Policy{Clock: clock, MaxRetryAfter: 5 * time.Minute, MaxElapsed: 10 * time.Minute})

	resp, err := get(t, context.Background(), client, srv.URL)
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	closeResponse(resp)

	hist := h.metrics(t)["retryhttp.wait.duration"].Data.(metricdata.Histogram[float64])
	require.Len(t, hist.DataPoints, 1)
	dp := hist.DataPoints[0]
	assert.Equal(t, uint64(2), dp.Count)
	assert.InDelta(t, clock.Waited().Seconds(), dp.Sum, 1e-6, "the waits the Transport made")
	minWait, _ := dp.Min.Value()
	maxWait, _ := dp.Max.Value()
	assert.GreaterOrEqual(t, minWait, 120.0, "never earlier than Retry-After: 120")
	assert.Less(t, maxWait, 144.0, "at most a fifth of jitter")
}

func TestRetriesByErrorClass(t *testing.T) {
	hang := func(c net.Conn) { _, _ = io.Copy(io.Discard, c); c.Close() }
	cases := []struct {
		name   string
		url    func(t *testing.T) string
		policy retryhttp.Policy
		base   func(*http.Transport)
	}{
		{name: "connection_refused", url: refusedURL},
		{name: "connection_reset", url: func(t *testing.T) string {
			return rawServer(t, func(c net.Conn) {
				_ = c.(*net.TCPConn).SetLinger(0) // close with a RST
				c.Close()
			})
		}},
		{name: "eof", url: func(t *testing.T) string {
			return rawServer(t, func(c net.Conn) { c.Close() })
		}},
		{
			name: "timeout",
			url:  func(t *testing.T) string { return rawServer(t, hang) },
			// net/http's own timeout, retried by a rule of the caller's.
			policy: retryhttp.Policy{Retryable: func(_ *http.Response, err error) bool { return err != nil }},
			base:   func(tr *http.Transport) { tr.ResponseHeaderTimeout = 50 * time.Millisecond },
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			if tc.base != nil {
				tc.base(h.base.rt)
			}
			p := tc.policy
			p.MaxAttempts = 2
			p.Backoff = constantBackoff(time.Millisecond)
			resp, err := get(t, context.Background(), h.client(p), tc.url(t))
			require.Error(t, err)
			require.Nil(t, resp)

			ms := h.metrics(t)
			assert.Equal(t, map[string]int64{tc.name: 1}, counter(t, ms, "retryhttp.retries", "error.type"), "err: %v", err)
			assert.Equal(t, int64(2), h.base.attempts.Load())
			spans := h.clientSpans()
			require.Len(t, spans, 2)
			assert.Equal(t, int64(1), attrValue(spans[1].Attributes(), resendCount).AsInt64())
			for i, s := range spans {
				assert.Equal(t, tc.name, attrValue(s.Attributes(), semconv.ErrorTypeKey).AsString(),
					"span %d's error.type names the cause as retryhttp.retries does", i)
				assert.Equal(t, codes.Error, s.Status().Code)
				assert.NotEmpty(t, s.Status().Description, "the status keeps the error's text")
			}
		})
	}
}

func TestRetriesOnAttemptTimeout(t *testing.T) {
	h := newHarness(t)
	url := rawServer(t, func(c net.Conn) { _, _ = io.Copy(io.Discard, c); c.Close() })
	p := retryhttp.Policy{MaxAttempts: 2, AttemptTimeout: 50 * time.Millisecond, Backoff: constantBackoff(time.Millisecond)}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second) // in case the timeout is not applied
	defer cancel()
	_, err := get(t, ctx, h.client(p), url)
	require.ErrorIs(t, err, retryhttp.ErrAttemptTimeout)

	assert.Equal(t, map[string]int64{"timeout": 1}, counter(t, h.metrics(t), "retryhttp.retries", "error.type"))
	spans := h.clientSpans()
	require.Len(t, spans, 2)
	for i, s := range spans {
		assert.Equal(t, "timeout", attrValue(s.Attributes(), semconv.ErrorTypeKey).AsString(),
			"span %d's error.type names the cause as retryhttp.retries does", i)
	}
}

func TestGiveUpsByReason(t *testing.T) {
	unavailable := statuses("", 503, 503, 503, 503, 503, 503)
	cases := []struct {
		reason  string
		want    error
		handler func(int, http.ResponseWriter, *http.Request)
		policy  retryhttp.Policy
		send    func(ctx context.Context, c *http.Client, url string) (*http.Response, error)
		timeout time.Duration
	}{
		{reason: "attempts_used_up", want: retryhttp.ErrAttemptsUsedUp, handler: unavailable,
			policy: retryhttp.Policy{MaxAttempts: 2}},
		{reason: "retry_after_too_long", want: retryhttp.ErrRetryAfterTooLong, handler: statuses("120", 503)},
		{reason: "max_elapsed", want: retryhttp.ErrMaxElapsed, handler: statuses("1", 503),
			policy: retryhttp.Policy{MaxElapsed: 100 * time.Millisecond}},
		{reason: "deadline", want: retryhttp.ErrDeadline, handler: statuses("2", 503), timeout: time.Second},
		{reason: "budget_empty", want: retryhttp.ErrBudgetEmpty, handler: unavailable,
			policy: retryhttp.Policy{Budget: retryhttp.NewBudget(0, 0)}},
		{reason: "backoff_stop", want: retryhttp.ErrBackoffStop, handler: unavailable,
			policy: retryhttp.Policy{Backoff: func() backoff.BackOff { return &backoff.StopBackOff{} }}},
		{reason: "not_resendable", want: retryhttp.ErrNotResendable, handler: unavailable,
			send: func(ctx context.Context, c *http.Client, url string) (*http.Response, error) {
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader("{}"))
				if err != nil {
					return nil, err
				}
				return c.Do(req)
			}},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			h := newHarness(t)
			srv := serve(t, tc.handler)
			var events []retryhttp.GiveUpEvent
			p := tc.policy
			p.OnGiveUp = func(ev retryhttp.GiveUpEvent) { events = append(events, ev) }
			ctx := context.Background()
			if tc.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.timeout)
				defer cancel()
			}
			send := tc.send
			if send == nil {
				send = func(ctx context.Context, c *http.Client, url string) (*http.Response, error) {
					return get(t, ctx, c, url)
				}
			}

			resp, err := send(ctx, h.client(p), srv.URL)
			require.NoError(t, err)
			assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "the last response is returned")
			closeResponse(resp)

			require.Len(t, events, 1, "the caller's OnGiveUp is still called, once")
			assert.ErrorIs(t, events[0].Reason, tc.want)
			ms := h.metrics(t)
			assert.Equal(t, map[string]int64{tc.reason: 1}, counter(t, ms, "retryhttp.give_ups", "retryhttp.give_up.reason"))
			assert.Equal(t, "{give_up}", ms["retryhttp.give_ups"].Unit)
		})
	}
}

func TestGiveUpWhenCanceledDuringTheWait(t *testing.T) {
	h := newHarness(t)
	srv := serve(t, statuses("", 503))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var reasons []error
	client := h.client(retryhttp.Policy{
		Backoff:  constantBackoff(10 * time.Second),
		OnRetry:  func(retryhttp.RetryEvent) { cancel() },
		OnGiveUp: func(ev retryhttp.GiveUpEvent) { reasons = append(reasons, ev.Reason) },
	})

	_, err := get(t, ctx, client, srv.URL)
	require.ErrorIs(t, err, context.Canceled)

	require.Len(t, reasons, 1)
	assert.ErrorIs(t, reasons[0], context.Canceled)
	ms := h.metrics(t)
	assert.Equal(t, map[string]int64{"canceled": 1}, counter(t, ms, "retryhttp.give_ups", "retryhttp.give_up.reason"))
	assert.Equal(t, map[string]int64{"503": 1}, counter(t, ms, "retryhttp.retries", "http.response.status_code"),
		"the retry was counted when it was decided")
}

func TestCallersHooksAreCalledAfterRecording(t *testing.T) {
	h := newHarness(t)
	srv := serve(t, statuses("", 503, 503))
	var retries []retryhttp.RetryEvent
	var giveUps []retryhttp.GiveUpEvent
	var countedBefore []int64
	client := h.client(retryhttp.Policy{
		MaxAttempts: 2,
		OnRetry: func(ev retryhttp.RetryEvent) {
			retries = append(retries, ev)
			countedBefore = append(countedBefore, counter(t, h.metrics(t), "retryhttp.retries", "http.response.status_code")["503"])
		},
		OnGiveUp: func(ev retryhttp.GiveUpEvent) {
			giveUps = append(giveUps, ev)
			countedBefore = append(countedBefore, counter(t, h.metrics(t), "retryhttp.give_ups", "retryhttp.give_up.reason")["attempts_used_up"])
		},
	})

	resp, err := get(t, context.Background(), client, srv.URL)
	require.NoError(t, err)
	closeResponse(resp)

	require.Len(t, retries, 1)
	assert.Equal(t, 1, retries[0].Attempt)
	assert.Equal(t, http.StatusServiceUnavailable, retries[0].Response.StatusCode)
	require.Len(t, giveUps, 1)
	assert.Equal(t, 2, giveUps[0].Attempts)
	assert.Equal(t, []int64{1, 1}, countedBefore, "each event was recorded before the caller's hook ran")
}

// destinationOf returns the url.scheme, server.address and server.port of a
// loopback server's URL.
func destinationOf(t *testing.T, rawURL string) attribute.Set {
	t.Helper()
	u, err := url.Parse(rawURL)
	require.NoError(t, err)
	port, err := strconv.Atoi(u.Port())
	require.NoError(t, err)
	return attribute.NewSet(
		attribute.String("url.scheme", u.Scheme),
		attribute.String("server.address", u.Hostname()),
		attribute.Int("server.port", port),
	)
}

// gaugeAt returns the value of the point whose attributes include dest's
// (a point also carries its budget's retryhttp.budget.id).
func gaugeAt(points []metricdata.DataPoint[float64], dest attribute.Set) (float64, bool) {
	for _, p := range points {
		if hasAttributes(p.Attributes, dest) {
			return p.Value, true
		}
	}
	return 0, false
}

func hasAttributes(set, want attribute.Set) bool {
	for _, kv := range want.ToSlice() {
		if v, ok := set.Value(kv.Key); !ok || v != kv.Value {
			return false
		}
	}
	return true
}

func TestBudgetGaugeOfTheDefaultBudget(t *testing.T) {
	h := newHarness(t)
	srv := serve(t, statuses("", 503))
	client := h.client(retryhttp.Policy{})

	assert.Empty(t, gauge(t, h.metrics(t)), "no destination yet")
	resp, err := get(t, context.Background(), client, srv.URL)
	require.NoError(t, err)
	closeResponse(resp)

	ms := h.metrics(t)
	assert.Equal(t, "{token}", ms["retryhttp.budget.tokens"].Unit)
	points := gauge(t, ms)
	require.Len(t, points, 1)
	v, ok := gaugeAt(points, destinationOf(t, srv.URL))
	require.True(t, ok, "a point for the server: %v", points[0].Attributes.Encoded(attribute.DefaultEncoder()))
	// The retry took one of the burst of a fresh destination; its success
	// ended the burst and earned the ratio, of which the pace allows a
	// tenth in any second.
	assert.InDelta(t, retryhttp.DefaultBudgetRatio/10, v, 1e-9)
}

func TestBudgetGaugeOfTheDefaultBudgetIsPerHost(t *testing.T) {
	h := newHarness(t)
	failing := serve(t, statuses("", 503, 503))
	healthy := serve(t, statuses(""))
	client := h.client(retryhttp.Policy{})

	for _, u := range []string{failing.URL, healthy.URL} {
		resp, err := get(t, context.Background(), client, u)
		require.NoError(t, err)
		closeResponse(resp)
	}

	points := gauge(t, h.metrics(t))
	require.Len(t, points, 2, "one point per destination")
	v, ok := gaugeAt(points, destinationOf(t, failing.URL))
	require.True(t, ok)
	assert.InDelta(t, retryhttp.DefaultBudgetRatio/10, v, 1e-9,
		"the failing server's two retries came from its burst, which its success ended; the success earned the ratio, paced")
	v, ok = gaugeAt(points, destinationOf(t, healthy.URL))
	require.True(t, ok)
	assert.InDelta(t, retryhttp.DefaultBudgetRatio/10, v, 1e-9, "the healthy server's window, its own: one success, no retry")
}

func TestBudgetGaugeOfASharedBudget(t *testing.T) {
	h := newHarness(t)
	a := serve(t, statuses("", 503))
	b := serve(t, statuses("", 503, 503))
	budget := retryhttp.NewBudget(0.5, 5)
	clientA := h.client(retryhttp.Policy{Budget: budget})
	clientB := h.client(retryhttp.Policy{Budget: budget})

	for _, r := range []struct {
		c   *http.Client
		url string
	}{{clientA, a.URL}, {clientB, b.URL}} {
		resp, err := get(t, context.Background(), r.c, r.url)
		require.NoError(t, err)
		closeResponse(resp)
	}

	// A's retry came from the burst, which A's success ended; that success
	// earned half a retry, not enough for B's: one success in the window,
	// 0.5 × 1 paced at a tenth.
	require.InDelta(t, 0.05, budget.Tokens(), 1e-9)
	points := gauge(t, h.metrics(t))
	require.Len(t, points, 2, "one point per destination, from each transport")
	for _, dest := range []string{a.URL, b.URL} {
		v, ok := gaugeAt(points, destinationOf(t, dest))
		require.True(t, ok, dest)
		assert.InDelta(t, budget.Tokens(), v, 1e-9, "the shared bucket's tokens, at %s", dest)
	}
}

func TestBudgetGaugeOfAnUnlimitedBudget(t *testing.T) {
	h := newHarness(t)
	srv := serve(t, statuses("", 503))
	client := h.client(retryhttp.Policy{Budget: retryhttp.UnlimitedBudget()})

	resp, err := get(t, context.Background(), client, srv.URL)
	require.NoError(t, err)
	closeResponse(resp)

	ms := h.metrics(t)
	assert.Empty(t, gauge(t, ms), "an unlimited budget reports no point")
	assert.Equal(t, map[string]int64{"503": 1}, counter(t, ms, "retryhttp.retries", "http.response.status_code"))
}

func TestCloseIdleConnectionsReachesTheBase(t *testing.T) {
	closed := make(chan struct{}, 1)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateClosed {
			select {
			case closed <- struct{}{}:
			default:
			}
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	h := newHarness(t)
	client := h.client(retryhttp.Policy{})

	resp, err := get(t, context.Background(), client, srv.URL)
	require.NoError(t, err)
	closeResponse(resp) // the connection goes idle
	select {
	case <-closed:
		t.Fatal("the connection closed before CloseIdleConnections")
	case <-time.After(20 * time.Millisecond):
	}

	client.CloseIdleConnections()

	assert.Equal(t, int64(1), h.base.closeIdle.Load(), "the base was told once")
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the server never saw the idle connection close")
	}
}

func TestCloseIdleConnectionsWithoutBase(t *testing.T) {
	rt := otelretryhttp.NewTransport(nil, retryhttp.Policy{})
	c, ok := rt.(interface{ CloseIdleConnections() })
	require.True(t, ok, "the RoundTripper has CloseIdleConnections")
	c.CloseIdleConnections() // http.DefaultTransport's; must not panic
	// A base without the method is left alone.
	otelretryhttp.NewTransport(roundTripperFunc(http.DefaultTransport.RoundTrip), retryhttp.Policy{}).(interface{ CloseIdleConnections() }).CloseIdleConnections()
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestConcurrentRequests(t *testing.T) {
	h := newHarness(t)
	var hits atomic.Int64
	srv := serve(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		if hits.Add(1)%3 == 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
	var onRetry, onGiveUp atomic.Int64
	client := h.client(retryhttp.Policy{
		Budget:   retryhttp.NewBudget(1, 1000),
		OnRetry:  func(retryhttp.RetryEvent) { onRetry.Add(1) },
		OnGiveUp: func(retryhttp.GiveUpEvent) { onGiveUp.Add(1) },
	})

	const workers, perWorker = 8, 25
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() { // collect while requests are in flight
		for {
			select {
			case <-stop:
				return
			default:
				var rm metricdata.ResourceMetrics
				assert.NoError(t, h.reader.Collect(context.Background(), &rm))
			}
		}
	})
	var requests sync.WaitGroup
	for w := range workers {
		requests.Go(func() {
			ctx, span := h.tp.Tracer("test").Start(context.Background(), "worker "+strconv.Itoa(w))
			defer span.End()
			for range perWorker {
				resp, err := get(t, ctx, client, srv.URL)
				if assert.NoError(t, err) {
					closeResponse(resp)
				}
			}
		})
	}
	requests.Wait()
	close(stop)
	wg.Wait()

	ms := h.metrics(t)
	var retries, giveUps int64
	for _, v := range counter(t, ms, "retryhttp.retries", "http.response.status_code") {
		retries += v
	}
	for _, v := range counter(t, ms, "retryhttp.give_ups", "retryhttp.give_up.reason") {
		giveUps += v
	}
	assert.Equal(t, onRetry.Load(), retries)
	assert.Equal(t, onGiveUp.Load(), giveUps)
	assert.Equal(t, int64(workers*perWorker)+retries, hits.Load(), "every attempt is a first attempt or a counted retry")
	spans := h.clientSpans()
	assert.Len(t, spans, int(hits.Load()), "a span per attempt")
	var resent int64
	for _, s := range spans {
		if hasAttr(s.Attributes(), resendCount) {
			resent++
		}
	}
	assert.Equal(t, retries, resent, "a resend count on every retry's span")
	assert.Len(t, gauge(t, ms), 1)
}

func TestGlobalProvidersByDefault(t *testing.T) {
	h := newHarness(t)
	otel.SetTracerProvider(h.tp)
	otel.SetMeterProvider(h.mp)
	t.Cleanup(func() {
		otel.SetTracerProvider(tracenoop.NewTracerProvider())
		otel.SetMeterProvider(metricnoop.NewMeterProvider())
	})
	srv := serve(t, statuses("", 503))
	client := &http.Client{Transport: otelretryhttp.NewTransport(h.base, retryhttp.Policy{Backoff: constantBackoff(time.Millisecond)})}

	resp, err := get(t, context.Background(), client, srv.URL) // no span in the context
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	closeResponse(resp)

	assert.Len(t, h.clientSpans(), 2, "the global TracerProvider made the spans")
	assert.Equal(t, map[string]int64{"503": 1}, counter(t, h.metrics(t), "retryhttp.retries", "http.response.status_code"),
		"the global MeterProvider has the metrics")
}

func TestPolicyErrorsPassThrough(t *testing.T) {
	h := newHarness(t)
	client := h.client(retryhttp.Policy{MaxAttempts: -1})
	_, err := get(t, context.Background(), client, "http://127.0.0.1:1/")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "MaxAttempts")
	assert.Zero(t, h.base.attempts.Load())
	assert.False(t, errors.Is(err, context.Canceled))
	assert.Empty(t, gauge(t, h.metrics(t)), "a Transport that sends nothing has no budget to report")
}

func hasAttr(attrs []attribute.KeyValue, key attribute.Key) bool {
	for _, kv := range attrs {
		if kv.Key == key {
			return true
		}
	}
	return false
}

func attrValue(attrs []attribute.KeyValue, key attribute.Key) attribute.Value {
	for _, kv := range attrs {
		if kv.Key == key {
			return kv.Value
		}
	}
	return attribute.Value{}
}

func TestHoldsAndTimeHeld(t *testing.T) {
	h := newHarness(t)
	srv := serve(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			w.Header().Set("Retry-After", "20")
			w.WriteHeader(http.StatusTooManyRequests)
		}
	})
	clock := retrytest.NewClock(t)
	var held []retryhttp.HoldEvent
	client := h.client(retryhttp.Policy{Clock: clock, OnHold: func(ev retryhttp.HoldEvent) { held = append(held, ev) }})
	// A POST is not retried: its 429 says the quota is spent for 20 s.
	req, err := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader("{}"))
	require.NoError(t, err)
	resp, err := client.Do(req)
	require.NoError(t, err)
	closeResponse(resp)
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)

	resp, err = get(t, context.Background(), client, srv.URL)
	require.NoError(t, err)
	closeResponse(resp)
	assert.Equal(t, http.StatusOK, resp.StatusCode)

	require.Len(t, held, 1, "the caller's OnHold is still called")
	ms := h.metrics(t)
	assert.Equal(t, map[string]int64{"reset": 1}, counter(t, ms, "retryhttp.holds", "retryhttp.hold.reason"))
	hist, ok := ms["retryhttp.hold.duration"].Data.(metricdata.Histogram[float64])
	require.True(t, ok)
	require.Len(t, hist.DataPoints, 1)
	assert.EqualValues(t, 1, hist.DataPoints[0].Count)
	assert.GreaterOrEqual(t, hist.DataPoints[0].Sum, 20.0, "the time held, in seconds")
	assert.Equal(t, "s", ms["retryhttp.hold.duration"].Unit)
}

func TestThrottledGiveUps(t *testing.T) {
	h := newHarness(t)
	srv := serve(t, statuses("", 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503))
	client := h.client(retryhttp.Policy{MaxAttempts: 1, Throttle: retryhttp.NewThrottle(1, time.Minute)})
	throttled := 0
	for range 40 {
		resp, err := get(t, context.Background(), client, srv.URL)
		if err != nil {
			require.ErrorIs(t, err, retryhttp.ErrThrottled)
			throttled++
			continue
		}
		closeResponse(resp)
	}
	require.Positive(t, throttled, "a server that accepts nothing sees rejections")
	ms := h.metrics(t)
	assert.Equal(t, int64(throttled), counter(t, ms, "retryhttp.give_ups", "retryhttp.give_up.reason")["throttled"])
}

func TestBudgetGaugeOfTwoTransportsAtOneDestination(t *testing.T) {
	h := newHarness(t)
	srv := serve(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fail" {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
	failing := h.client(retryhttp.Policy{}) // registered first
	healthy := h.client(retryhttp.Policy{}) // registered second

	resp, err := get(t, context.Background(), failing, srv.URL+"/fail")
	require.NoError(t, err)
	closeResponse(resp)
	resp, err = get(t, context.Background(), healthy, srv.URL+"/")
	require.NoError(t, err)
	closeResponse(resp)

	dest := destinationOf(t, srv.URL)
	var values []float64
	for _, p := range gauge(t, h.metrics(t)) {
		if hasAttributes(p.Attributes, dest) { // a fix may add an attribute of its own
			values = append(values, p.Value)
		}
	}
	// The failing client's budget paid for 3 retries (MaxAttempts 4) from
	// its burst: none left; the healthy one's earned a paced tenth of the
	// ratio. Each Transport's point must be there.
	assert.ElementsMatch(t, []float64{0, retryhttp.DefaultBudgetRatio / 10}, values,
		"one point per Transport at %s", srv.URL)
}

func TestEmptyBodyCostsNoDrainTimeUnderInstrumentation(t *testing.T) {
	srv := serve(t, statuses("", http.StatusServiceUnavailable))
	p := retryhttp.Policy{
		Backoff:    constantBackoff(time.Millisecond),
		MaxElapsed: 30 * time.Millisecond,
	}

	plain := &http.Client{Transport: &retryhttp.Transport{Base: &http.Transport{}, Policy: p}}
	resp, err := get(t, context.Background(), plain, srv.URL)
	require.NoError(t, err)
	closeResponse(resp)
	require.Equal(t, http.StatusOK, resp.StatusCode, "uninstrumented, the retry fits MaxElapsed")

	h := newHarness(t)
	srv2 := serve(t, statuses("", http.StatusServiceUnavailable))
	var reason error
	p.OnGiveUp = func(ev retryhttp.GiveUpEvent) { reason = ev.Reason }
	resp, err = get(t, context.Background(), h.client(p), srv2.URL)
	require.NoError(t, err)
	closeResponse(resp)
	assert.Equal(t, http.StatusOK, resp.StatusCode,
		"instrumented, the same retry is given up on (reason %v)", reason)
}

func budgetIDs(t *testing.T, h *harness, dest attribute.Set) []string {
	var ids []string
	for _, p := range gauge(t, h.metrics(t)) {
		if hasAttributes(p.Attributes, dest) {
			id, _ := p.Attributes.Value("retryhttp.budget.id")
			ids = append(ids, id.AsString())
		}
	}
	return ids
}

func TestBudgetIDIsTheNameGiven(t *testing.T) {
	h := newHarness(t)
	srv := serve(t, statuses("", http.StatusServiceUnavailable))
	github := h.client(retryhttp.Policy{}, otelretryhttp.WithName("github-api"))
	payments := h.client(retryhttp.Policy{}, otelretryhttp.WithName("payments"))

	for _, c := range []*http.Client{github, payments} {
		resp, err := get(t, context.Background(), c, srv.URL)
		require.NoError(t, err)
		closeResponse(resp)
	}

	assert.ElementsMatch(t, []string{"github-api", "payments"}, budgetIDs(t, h, destinationOf(t, srv.URL)))
}

func TestBudgetIDByDefaultIsStableAcrossRestarts(t *testing.T) {
	if os.Getenv("OTELRETRYHTTP_PRINT_BUDGET_IDS") == "1" {
		h := newHarness(t)
		srv := serve(t, statuses(""))
		shared := retryhttp.NewBudget(0.1, 5)
		clients := []*http.Client{
			h.client(retryhttp.Policy{}), // a default budget of its own
			h.client(retryhttp.Policy{Budget: shared}),
			h.client(retryhttp.Policy{Budget: shared}),
			h.client(retryhttp.Policy{}),
		}
		for _, c := range clients {
			resp, err := get(t, context.Background(), c, srv.URL)
			require.NoError(t, err)
			closeResponse(resp)
		}
		ids := budgetIDs(t, h, destinationOf(t, srv.URL))
		slices.Sort(ids)
		fmt.Printf("budget ids: %s\n", strings.Join(ids, " "))
		return
	}
	t.Parallel() // it waits on two child processes
	run := func() string {
		cmd := exec.Command(os.Args[0], "-test.run=^TestBudgetIDByDefaultIsStableAcrossRestarts$", "-test.count=1")
		cmd.Env = append(os.Environ(), "OTELRETRYHTTP_PRINT_BUDGET_IDS=1")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
		for _, line := range strings.Split(string(out), "\n") {
			if ids, ok := strings.CutPrefix(line, "budget ids: "); ok {
				return ids
			}
		}
		t.Fatalf("no budget ids in %s", out)
		return ""
	}

	first, second := run(), run()

	assert.Equal(t, first, second, "the ids of a restarted process")
	assert.Equal(t, "budget-1 budget-2 budget-3", first,
		"three budgets: one of its own, one shared by two Transports, one of its own")
	assert.NotContains(t, first, "0x", "not a memory address")
}
