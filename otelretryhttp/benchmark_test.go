package otelretryhttp_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/b4dedce7/retryhttp"
	"github.com/b4dedce7/retryhttp/otelretryhttp"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// BenchmarkRoundTrip measures the cost of a request that succeeds at once,
// over a base that answers without a network: the bare retryhttp.Transport,
// otelhttp alone and under retryhttp.Transport (what NewTransport adds to),
// then NewTransport with no-op providers and with the SDK's (every span
// sampled, none exported; metrics aggregated by a manual reader).
func BenchmarkRoundTrip(b *testing.B) {
	base := roundTripperFunc(func(*http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody, Header: http.Header{}}, nil
	})
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	tp := sdktrace.NewTracerProvider()
	b.Cleanup(func() {
		_ = tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	transports := []struct {
		name string
		rt   http.RoundTripper
	}{
		{"retryhttp", &retryhttp.Transport{Base: base}},
		{"otelhttp/noop", otelhttp.NewTransport(base,
			otelhttp.WithTracerProvider(tracenoop.NewTracerProvider()),
			otelhttp.WithMeterProvider(metricnoop.NewMeterProvider()))},
		{"retryhttp+otelhttp/noop", &retryhttp.Transport{Base: otelhttp.NewTransport(base,
			otelhttp.WithTracerProvider(tracenoop.NewTracerProvider()),
			otelhttp.WithMeterProvider(metricnoop.NewMeterProvider()))}},
		{"otelretryhttp/noop", otelretryhttp.NewTransport(base, retryhttp.Policy{},
			otelretryhttp.WithTracerProvider(tracenoop.NewTracerProvider()),
			otelretryhttp.WithMeterProvider(metricnoop.NewMeterProvider()))},
		{"otelretryhttp/sdk", otelretryhttp.NewTransport(base, retryhttp.Policy{},
			otelretryhttp.WithTracerProvider(tp), otelretryhttp.WithMeterProvider(mp))},
	}
	req, err := http.NewRequest(http.MethodGet, "http://api.example.com/items", nil)
	if err != nil {
		b.Fatal(err)
	}
	for _, tr := range transports {
		b.Run(tr.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := tr.rt.RoundTrip(req)
					if err != nil {
						b.Error(err)
						return
					}
					resp.Body.Close()
				}
			})
		})
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		b.Fatal(err)
	}
}
