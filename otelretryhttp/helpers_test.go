package otelretryhttp_test

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/b4dedce7/retryhttp"
	"github.com/b4dedce7/retryhttp/otelretryhttp"
	"github.com/cenkalti/backoff/v4"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// harness holds a real OpenTelemetry SDK, with a span recorder and a manual
// metric reader, and a base transport of the test's own.
type harness struct {
	spans  *tracetest.SpanRecorder
	tp     *sdktrace.TracerProvider
	reader *sdkmetric.ManualReader
	mp     *sdkmetric.MeterProvider
	base   *recordingBase
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{spans: tracetest.NewSpanRecorder(), reader: sdkmetric.NewManualReader()}
	h.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(h.spans))
	h.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(h.reader))
	h.base = &recordingBase{rt: &http.Transport{}}
	t.Cleanup(func() {
		h.base.rt.CloseIdleConnections()
		_ = h.tp.Shutdown(context.Background())
		_ = h.mp.Shutdown(context.Background())
	})
	return h
}

// transport returns a NewTransport over h's base with h's providers, and a
// Backoff of 1 ms unless p has one, so that tests do not wait.
func (h *harness) transport(p retryhttp.Policy, opts ...otelretryhttp.Option) http.RoundTripper {
	if p.Backoff == nil {
		p.Backoff = func() backoff.BackOff { return backoff.NewConstantBackOff(time.Millisecond) }
	}
	opts = append([]otelretryhttp.Option{otelretryhttp.WithTracerProvider(h.tp), otelretryhttp.WithMeterProvider(h.mp)}, opts...)
	return otelretryhttp.NewTransport(h.base, p, opts...)
}

func (h *harness) client(p retryhttp.Policy, opts ...otelretryhttp.Option) *http.Client {
	return &http.Client{Transport: h.transport(p, opts...)}
}

// metrics collects h's metrics, by name.
func (h *harness) metrics(t *testing.T) map[string]metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, h.reader.Collect(context.Background(), &rm))
	out := make(map[string]metricdata.Metrics)
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if _, dup := out[m.Name]; dup {
				t.Fatalf("metric %s reported by two scopes", m.Name)
			}
			out[m.Name] = m
		}
	}
	return out
}

// clientSpans returns the ended CLIENT spans, in the order they started.
func (h *harness) clientSpans() []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range h.spans.Ended() {
		if s.SpanKind() == trace.SpanKindClient {
			out = append(out, s)
		}
	}
	slices.SortStableFunc(out, func(a, b sdktrace.ReadOnlySpan) int { return a.StartTime().Compare(b.StartTime()) })
	return out
}

// counter returns the int64 sum points of metric name, keyed by the value
// of attribute key ("" when the point lacks it).
func counter(t *testing.T, ms map[string]metricdata.Metrics, name string, key attribute.Key) map[string]int64 {
	t.Helper()
	m, ok := ms[name]
	if !ok {
		return nil
	}
	sum, ok := m.Data.(metricdata.Sum[int64])
	require.Truef(t, ok, "%s is a %T, not a Sum[int64]", name, m.Data)
	require.True(t, sum.IsMonotonic, name)
	out := make(map[string]int64)
	for _, dp := range sum.DataPoints {
		v, _ := dp.Attributes.Value(key)
		out[v.String()] += dp.Value
	}
	return out
}

// gauge returns the points of retryhttp.budget.tokens.
func gauge(t *testing.T, ms map[string]metricdata.Metrics) []metricdata.DataPoint[float64] {
	t.Helper()
	m, ok := ms["retryhttp.budget.tokens"]
	if !ok {
		return nil
	}
	g, ok := m.Data.(metricdata.Gauge[float64])
	require.Truef(t, ok, "retryhttp.budget.tokens is a %T, not a Gauge[float64]", m.Data)
	return g.DataPoints
}

// recordingBase is a base RoundTripper that counts the attempts it sends and
// the calls of its CloseIdleConnections.
type recordingBase struct {
	rt        *http.Transport
	attempts  atomic.Int64
	closeIdle atomic.Int64
}

func (b *recordingBase) RoundTrip(req *http.Request) (*http.Response, error) {
	b.attempts.Add(1)
	return b.rt.RoundTrip(req)
}

func (b *recordingBase) CloseIdleConnections() {
	b.closeIdle.Add(1)
	b.rt.CloseIdleConnections()
}

// serve starts a loopback server whose handler is told the number of each
// request, from 1.
func serve(t *testing.T, handle func(n int, w http.ResponseWriter, r *http.Request)) *httptest.Server {
	t.Helper()
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handle(int(hits.Add(1)), w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// statuses returns a handler that answers the requests with codes in turn,
// then with 200 OK. A 503 or 429 carries a Retry-After of retryAfter, if not
// empty; without one the Policy's backoff applies.
func statuses(retryAfter string, codes ...int) func(int, http.ResponseWriter, *http.Request) {
	return func(n int, w http.ResponseWriter, _ *http.Request) {
		if n > len(codes) {
			_, _ = w.Write([]byte("ok"))
			return
		}
		code := codes[n-1]
		if retryAfter != "" && (code == http.StatusServiceUnavailable || code == http.StatusTooManyRequests) {
			w.Header().Set("Retry-After", retryAfter)
		}
		w.WriteHeader(code)
	}
}

// rawServer starts a loopback TCP server that reads each connection's
// request head and then hands the connection to handle, which must close it.
func rawServer(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				r := bufio.NewReader(conn)
				for {
					line, err := r.ReadString('\n')
					if err != nil || line == "\r\n" {
						break
					}
				}
				handle(conn)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return "http://" + ln.Addr().String()
}

// refusedURL returns the URL of a loopback port that nothing listens on.
func refusedURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return "http://" + addr
}

func get(t *testing.T, ctx context.Context, c *http.Client, url string) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	require.NoError(t, err)
	return c.Do(req)
}

// closeResponse drains and closes resp's body, which ends its span.
func closeResponse(resp *http.Response) {
	if resp != nil {
		buf := make([]byte, 512)
		for {
			if _, err := resp.Body.Read(buf); err != nil {
				break
			}
		}
		resp.Body.Close()
	}
}
