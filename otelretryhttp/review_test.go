package otelretryhttp_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/b4dedce7/retryhttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
)

// Two Transports made by NewTransport with the same MeterProvider, each with
// its own default budget, send to the same destination. The package says
// each reports "the retry Budget's tokens that a request to it may spend
// now" for each destination it sent to, "at most 64 points per Transport".
// Their points carry the same attributes, so the SDK keeps one of them: the
// drained budget of the failing client disappears behind the full one.
func TestReview2BudgetGaugeOfTwoTransportsAtOneDestination(t *testing.T) {
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
		if hasAll(p.Attributes, dest) { // a fix may add an attribute of its own
			values = append(values, p.Value)
		}
	}
	// The failing client's budget paid for 3 retries (MaxAttempts 4) from
	// its burst: none left; the healthy one's earned a paced tenth of the
	// ratio. Each Transport's point must be there.
	assert.ElementsMatch(t, []float64{0, retryhttp.DefaultBudgetRatio / 10}, values,
		"one point per Transport at %s", srv.URL)
}

// hasAll reports whether set holds every attribute of want.
func hasAll(set, want attribute.Set) bool {
	for _, kv := range want.ToSlice() {
		if v, ok := set.Value(kv.Key); !ok || v != kv.Value {
			return false
		}
	}
	return true
}

// NewTransport promises to retry "as a retryhttp.Transport with Policy p
// does". otelhttp wraps every response body, http.NoBody included, so the
// retry layer no longer sees that a 503 without a body (Content-Length: 0,
// the usual w.WriteHeader(503)) has nothing to drain: it budgets 50 ms of
// drain time for it, and a retry that fits MaxElapsed (or the deadline)
// uninstrumented is given up on once instrumented.
func TestReview2EmptyBodyCostsNoDrainTimeUnderInstrumentation(t *testing.T) {
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
