package otelretryhttp_test

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/b4dedce7/retryhttp"
	"github.com/b4dedce7/retryhttp/retrytest"
)

func TestHedgeSpansAndCounters(t *testing.T) {
	h := newHarness(t)
	first := make(chan struct{})
	srv := serve(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			close(first)
			<-r.Context().Done() // slow: the hedge answers first and this is cancelled
			return
		}
		_, _ = io.WriteString(w, "hedge")
	})
	var hedged []retryhttp.HedgeEvent
	client := h.client(retryhttp.Policy{
		Hedge:   &retryhttp.Hedge{Delay: 50 * time.Millisecond},
		OnHedge: func(ev retryhttp.HedgeEvent) { hedged = append(hedged, ev) },
	})

	resp, err := get(t, context.Background(), client, srv.URL)
	require.NoError(t, err)
	<-first
	closeResponse(resp)
	assert.Len(t, hedged, 1, "the caller's OnHedge is still called")

	require.Eventually(t, func() bool { return len(h.clientSpans()) == 2 }, 5*time.Second, time.Millisecond,
		"one span per attempt, the cancelled one included")
	spans := h.clientSpans()
	assert.False(t, hasAttr(spans[0].Attributes(), "retryhttp.hedge"), "the first attempt is no hedge")
	assert.True(t, attrValue(spans[1].Attributes(), "retryhttp.hedge").AsBool(), "the hedge's span says so")
	assert.Equal(t, int64(1), attrValue(spans[1].Attributes(), resendCount).AsInt64())

	ms := h.metrics(t)
	assert.Equal(t, map[string]int64{"": 1}, counter(t, ms, "retryhttp.hedges", ""))
	assert.Equal(t, map[string]int64{"": 1}, counter(t, ms, "retryhttp.hedges.won", ""))
	assert.Equal(t, "{hedge}", ms["retryhttp.hedges"].Unit)
}

func TestHedgeThatLosesIsNotCountedAsWon(t *testing.T) {
	h := newHarness(t)
	hedgeArrived := make(chan struct{})
	srv := serve(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			// Slow enough to be hedged, but first. Bounded, so that a
			// Transport that never hedges fails the test instead of
			// hanging it.
			select {
			case <-hedgeArrived:
			case <-time.After(5 * time.Second):
			}
			_, _ = io.WriteString(w, "first")
			return
		}
		close(hedgeArrived)
		<-r.Context().Done()
	})
	// On a fake clock the hedge's 100 ms pass at once.
	client := h.client(retryhttp.Policy{Hedge: &retryhttp.Hedge{Delay: 100 * time.Millisecond}, Clock: retrytest.NewClock(t)})
	resp, err := get(t, context.Background(), client, srv.URL)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "first", string(body))
	ms := h.metrics(t)
	assert.Equal(t, map[string]int64{"": 1}, counter(t, ms, "retryhttp.hedges", ""))
	assert.Empty(t, counter(t, ms, "retryhttp.hedges.won", ""))
}
