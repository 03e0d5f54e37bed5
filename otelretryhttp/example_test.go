package otelretryhttp_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"

	"github.com/b4dedce7/retryhttp"
	"github.com/b4dedce7/retryhttp/otelretryhttp"
	"github.com/b4dedce7/retryhttp/retrytest"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// A client whose retries show in traces and metrics. Here the providers
// record in memory; a program would give its exporting providers, or none
// to use the global ones.
func Example() {
	// A server that is unavailable once, then answers.
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if hits.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, "hello")
	}))
	defer srv.Close()

	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))

	// The fake clock of package retrytest plays the wait before the retry
	// at once; leave Clock out in real code.
	client := &http.Client{Transport: otelretryhttp.NewTransport(nil, retryhttp.Policy{Clock: retrytest.NewClock(nil)},
		otelretryhttp.WithTracerProvider(tp), otelretryhttp.WithMeterProvider(mp))}
	defer client.CloseIdleConnections()

	ctx, span := tp.Tracer("example").Start(context.Background(), "fetch greeting")
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	resp, err := client.Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close() // ends the last attempt's span
	span.End()
	fmt.Println(resp.StatusCode, string(body))

	for _, s := range spans.Ended() {
		if s.SpanKind() != trace.SpanKindClient {
			continue
		}
		fmt.Printf("span %q: child of %q: %v\n", s.Name(), "fetch greeting", s.Parent().SpanID() == span.SpanContext().SpanID())
		for _, kv := range s.Attributes() {
			if kv.Key == "http.response.status_code" || kv.Key == "http.request.resend_count" {
				fmt.Printf("  %s=%s\n", kv.Key, kv.Value.String())
			}
		}
	}

	var rm metricdata.ResourceMetrics
	_ = reader.Collect(context.Background(), &rm)
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != otelretryhttp.ScopeName {
			continue // otelhttp's own metrics
		}
		for _, m := range sm.Metrics {
			switch data := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, dp := range data.DataPoints {
					fmt.Printf("%s{%s} %d %s\n", m.Name, dp.Attributes.Encoded(attribute.DefaultEncoder()), dp.Value, m.Unit)
				}
			case metricdata.Histogram[float64]:
				for _, dp := range data.DataPoints {
					fmt.Printf("%s: %d wait(s), in %s\n", m.Name, dp.Count, m.Unit)
				}
			case metricdata.Gauge[float64]:
				for _, dp := range data.DataPoints {
					host, _ := dp.Attributes.Value("server.address")
					fmt.Printf("%s{server.address=%s,...} %g %s\n", m.Name, host.String(), dp.Value, m.Unit)
				}
			}
		}
	}
	// Output:
	// 200 hello
	// span "HTTP GET": child of "fetch greeting": true
	//   http.response.status_code=503
	// span "HTTP GET": child of "fetch greeting": true
	//   http.request.resend_count=1
	//   http.response.status_code=200
	// retryhttp.retries{http.response.status_code=503} 1 {retry}
	// retryhttp.wait.duration: 1 wait(s), in s
	// retryhttp.budget.tokens{server.address=127.0.0.1,...} 0.01 {token}
}
