package retryhttp

import (
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLatencyRingFollowsAShift(t *testing.T) {
	var lr latencyRing
	for range hedgeWarmup - 1 {
		lr.add(10 * time.Millisecond)
	}
	_, warm := lr.estimate()
	assert.False(t, warm, "warming up")
	for range hedgeWindow {
		lr.add(10 * time.Millisecond)
	}
	p95, warm := lr.estimate()
	assert.True(t, warm)
	assert.Equal(t, 10*time.Millisecond, p95)

	// Slower: once more than 5% of the window is slow, the p95 is.
	for range hedgeWindow/20 + 1 {
		lr.add(100 * time.Millisecond)
	}
	p95, _ = lr.estimate()
	assert.Equal(t, 100*time.Millisecond, p95)

	// Faster again: the slow samples age out of the window.
	for range hedgeWindow {
		lr.add(time.Millisecond)
	}
	p95, _ = lr.estimate()
	assert.Equal(t, time.Millisecond, p95)
}

func TestLatencyRingPercentile(t *testing.T) {
	var lr latencyRing
	for i := range 100 {
		lr.add(time.Duration(i+1) * time.Millisecond)
	}
	p95, _ := lr.estimate()
	assert.Equal(t, 95*time.Millisecond, p95)
}

// sleepyBase answers 200 after the latency it is set to, in real time.
type sleepyBase struct{ latency time.Duration }

func (s *sleepyBase) RoundTrip(req *http.Request) (*http.Response, error) {
	select {
	case <-time.After(s.latency):
	case <-req.Context().Done():
		return nil, req.Context().Err()
	}
	return &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: http.NoBody, Request: req}, nil
}

func TestAdaptiveDelayFollowsAShiftThroughTheTransport(t *testing.T) {
	base := &sleepyBase{latency: time.Millisecond}
	tr := &Transport{Base: base, Policy: Policy{Budget: UnlimitedBudget(), Hedge: &Hedge{}}}
	u, _ := url.Parse("http://shift.example/")
	send := func(n int) {
		for range n {
			req, _ := http.NewRequest(http.MethodGet, u.String(), nil)
			resp, err := tr.RoundTrip(req)
			require.NoError(t, err)
			resp.Body.Close()
		}
	}
	send(hedgeWarmup + 10)
	fast, warm := tr.latency.ring(u).estimate()
	require.True(t, warm)
	assert.Less(t, fast, 15*time.Millisecond)

	base.latency = 30 * time.Millisecond // between requests: no race with the Base
	send(hedgeWindow/20 + 3)
	slow, _ := tr.latency.ring(u).estimate()
	assert.GreaterOrEqual(t, slow, 25*time.Millisecond, "the delay rose with the latency")

	other, _ := url.Parse("http://OTHER.example:80/")
	_, warm = tr.latency.ring(other).estimate()
	assert.False(t, warm, "each destination has its own samples")
}

func TestLatenciesBoundedMemory(t *testing.T) {
	tr := &Transport{}
	for i := range maxHedgeDestinations + 10 {
		u, _ := url.Parse("http://h" + string(rune('a'+i%26)) + time.Duration(i).String() + ".example/")
		tr.latencyFor(u, true).add(time.Millisecond)
	}
	assert.LessOrEqual(t, len(tr.latency.m), maxHedgeDestinations)
	same, _ := url.Parse("HTTP://x.example:80/")
	tr.latencyFor(same, true).add(time.Second)
	again, _ := url.Parse("http://x.example/")
	assert.Equal(t, 1, tr.latencyFor(again, true).n, "the same destination, however spelled")
}

func TestLatencyRingMatchesASort(t *testing.T) {
	var lr latencyRing
	var all []time.Duration
	for i := range 1000 {
		d := time.Duration((i*7919)%613) * time.Microsecond
		lr.add(d)
		all = append(all, d)
		window := append([]time.Duration(nil), all[max(0, len(all)-hedgeWindow):]...)
		slices.Sort(window)
		require.Equal(t, window, lr.sorted[:lr.n], "after %d samples", i+1)
		if len(window) >= hedgeWarmup {
			p95, warm := lr.estimate()
			require.True(t, warm)
			require.Equal(t, window[(95*len(window)+99)/100-1], p95)
		}
	}
}
