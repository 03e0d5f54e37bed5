package retryhttp

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sync/atomic"
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
// The latency is atomic: a losing hedge may still be starting its
// RoundTrip after the request it raced has returned.
type sleepyBase struct{ latency atomic.Int64 }

func (s *sleepyBase) RoundTrip(req *http.Request) (*http.Response, error) {
	select {
	case <-time.After(time.Duration(s.latency.Load())):
	case <-req.Context().Done():
		return nil, req.Context().Err()
	}
	return &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: http.NoBody, Request: req}, nil
}

func TestAdaptiveDelayFollowsAShiftThroughTheTransport(t *testing.T) {
	if testing.Short() {
		// The adaptive delay is measured in real time, whatever the
		// Policy's Clock (see Hedge.Delay): no fake clock makes an attempt
		// slow, so the slow ones take 60 ms each, several of them.
		t.Skip("the adaptive delay is measured in real time: plays attempts of 60 ms")
	}
	t.Parallel() // mostly waiting on real timers: it overlaps the other real-time tests
	base := &sleepyBase{}
	base.latency.Store(int64(time.Millisecond))
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
	// Margins wide enough for a busy 2-core machine, where a timer of
	// 1 ms may fire tens of milliseconds late.
	assert.Less(t, fast, 50*time.Millisecond)

	base.latency.Store(int64(60 * time.Millisecond))
	send(hedgeWindow/20 + 3)
	slow, _ := tr.latency.ring(u).estimate()
	assert.GreaterOrEqual(t, slow, 55*time.Millisecond, "the delay rose with the latency")

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
	assert.LessOrEqual(t, tr.latency.table.len(), maxHedgeDestinations)
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

// slowFirstServer answers its first request only once a second request has
// come, or release is closed, and every other at once, each with status:
// the first attempt of a race is answered after its hedge was sent, or
// after the test knows it will not be, however long either takes in real
// time. When neither comes in 5 s it answers all the same, so that the
// test fails rather than hangs.
func slowFirstServer(t *testing.T, status int, release <-chan struct{}) (*httptest.Server, *atomic.Int32) {
	var n atomic.Int32
	second := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch n.Add(1) {
		case 1:
			select {
			case <-second:
			case <-release:
			case <-time.After(5 * time.Second):
			case <-r.Context().Done():
				return
			}
		case 2:
			close(second)
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

// TestHedgeCountedAndThrottledByTheThrottle checks that the Throttle sees
// hedges as the attempts they are: each refused attempt of a race is
// counted as a request, and a hedge is rejected as a retry would be.
func TestHedgeCountedAndThrottledByTheThrottle(t *testing.T) {
	t.Run("every refused attempt of a race counts", func(t *testing.T) {
		// The first 503 comes only once the hedge is at the server.
		srv, n := slowFirstServer(t, http.StatusServiceUnavailable, nil)
		th := NewThrottle(2, 10*time.Second)
		th.random = script(0.999) // admits all
		base := &http.Transport{}
		t.Cleanup(base.CloseIdleConnections)
		clock := &virtualClock{now: time.Now()} // the hedge delay passes at once
		tr := &Transport{Base: base, Policy: Policy{
			Clock: clock, MaxAttempts: 2, Budget: UnlimitedBudget(), Throttle: th, Hedge: &Hedge{Delay: 5 * time.Millisecond},
		}}
		req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
		resp, err := tr.RoundTrip(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
		require.EqualValues(t, 2, n.Load())
		// Two requests, no accept: (2 − 0) / (2 + 1).
		assert.InDelta(t, 2.0/3, th.Probability(srv.URL, clock.Now()), 1e-9)
	})
	t.Run("a hedge is rejected as a retry is", func(t *testing.T) {
		// The first answer comes only once the Throttle has been asked
		// about the hedge (its second draw), or once a hedge it did not
		// keep back is at the server.
		asked := make(chan struct{})
		srv, n := slowFirstServer(t, http.StatusOK, asked)
		th := NewThrottle(2, 10*time.Second)
		u, _ := url.Parse(srv.URL)
		clock := &virtualClock{now: time.Now()} // the hedge delay passes at once
		for range 10 {
			th.record(u, clock.Now(), false)
		}
		draws, drawn := script(0.999, 0), 0 // admits the request, rejects what follows
		th.random = func() float64 {
			if drawn++; drawn == 2 { // drawn under the destination's lock
				close(asked)
			}
			return draws()
		}
		var hedges int
		base := &http.Transport{}
		t.Cleanup(base.CloseIdleConnections)
		tr := &Transport{Base: base, Policy: Policy{
			Clock: clock, Budget: UnlimitedBudget(), Throttle: th, Hedge: &Hedge{Delay: 5 * time.Millisecond},
			OnHedge: func(HedgeEvent) { hedges++ },
		}}
		req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
		resp, err := tr.RoundTrip(req)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		assert.EqualValues(t, 1, n.Load(), "the throttled hedge was not sent")
		assert.Zero(t, hedges)
	})
}

// TestNoHedgeAfterARefusalInTheRace checks that once an attempt of a race
// comes back refused (a 429 asking to wait), no further hedge is sent while
// another attempt still runs: a hedge is for an attempt that is slow, and
// a refusal is the retries' to pace.
//
// The race plays on a clock that only the test moves. The hedge is refused
// only once the next hedge's delay is running, and the test lets that
// delay run out after the race has taken the refusal in, while the first
// attempt is still held: a delay the refusal did not stop would send a
// hedge then.
func TestNoHedgeAfterARefusalInTheRace(t *testing.T) {
	clock := newStepClock(t)
	release := make(chan struct{})
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch n.Add(1) {
		case 1:
			select {
			case <-release:
			case <-r.Context().Done():
				return
			case <-t.Context().Done(): // the test failed before it released the answer
				return
			}
			w.WriteHeader(http.StatusOK)
		case 2:
			for len(clock.sleeping()) == 0 { // the next hedge's delay
				select {
				case <-time.After(100 * time.Microsecond):
				case <-r.Context().Done():
					return
				}
			}
			w.Header().Set("Retry-After", "5")
			w.WriteHeader(http.StatusTooManyRequests)
		default:
			w.WriteHeader(http.StatusOK)
		}
	}))
	t.Cleanup(srv.Close)
	base := &http.Transport{}
	t.Cleanup(base.CloseIdleConnections)
	var hedges atomic.Int32
	tr := &Transport{Base: base, Policy: Policy{
		Clock: clock, Budget: UnlimitedBudget(), Hedge: &Hedge{Delay: 100 * time.Millisecond, Max: 2},
		OnHedge: func(HedgeEvent) { hedges.Add(1) },
	}}
	type outcome struct {
		resp *http.Response
		err  error
	}
	done := make(chan outcome, 1)
	go func() {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL, nil)
		resp, err := tr.RoundTrip(req)
		done <- outcome{resp, err}
	}()
	require.Eventually(t, func() bool { return n.Load() == 1 && len(clock.sleeping()) == 1 }, 5*time.Second, time.Millisecond,
		"the first attempt at the server, and the hedge delay running")
	clock.advance(100 * time.Millisecond) // the hedge is sent, and refused
	u, _ := url.Parse(srv.URL)
	require.Eventually(t, func() bool { return tr.holds.find(u) != nil }, 5*time.Second, time.Millisecond,
		"the race took the refusal in, and told the quota holds")
	clock.advance(100 * time.Millisecond) // the next hedge's delay runs out
	// The first answer is held while a hedge the refusal did not stop would
	// go out: released in the same instant, it would race that hedge to the
	// race's select and win now and then, hiding it. A correct race sends
	// nothing in this wait, so the wait cannot flake.
	assert.Never(t, func() bool { return hedges.Load() > 1 || n.Load() > 2 }, 50*time.Millisecond, time.Millisecond,
		"no hedge once the race has taken the refusal in")
	close(release) // the first attempt answers
	var o outcome
	select {
	case o = <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the request did not end")
	}
	require.NoError(t, o.err)
	o.resp.Body.Close()
	assert.Equal(t, http.StatusOK, o.resp.StatusCode)
	assert.EqualValues(t, 1, hedges.Load(), "no hedge after the 429")
	assert.EqualValues(t, 2, n.Load())
}
