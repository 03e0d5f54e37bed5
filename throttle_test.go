package retryhttp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// script returns a random source that plays draws in order.
func script(draws ...float64) func() float64 {
	i := 0
	return func() float64 {
		d := draws[i%len(draws)]
		i++
		return d
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	require.NoError(t, err)
	return u
}

func TestThrottleProbabilityMatchesTheFormulaOnAScriptedSequence(t *testing.T) {
	const k = 2.0
	th := NewThrottle(k, time.Minute)
	require.NoError(t, th.validate())
	u := mustURL(t, "https://api.example.com/x")
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// Each step: a new request (admitted or not by the draw), then, when
	// admitted, its outcome: accepted or not. Retries add a request.
	type step struct {
		draw     float64
		accepted bool
		retries  int
	}
	steps := []step{
		{0.5, true, 0}, {0.5, true, 0}, {0.5, false, 2}, {0.01, false, 1}, {0.99, false, 3},
		{0.2, false, 0}, {0.3, false, 0}, {0.1, true, 0}, {0.05, false, 2}, {0.6, false, 0},
		{0.9, false, 0}, {0.4, false, 1}, {0.45, true, 0}, {0.35, false, 0}, {0.02, false, 0},
	}
	var requests, accepts, rejections int64
	for i, s := range steps {
		want := math.Min(math.Max(0, (float64(requests)-k*float64(accepts))/float64(requests+1)), MaxThrottleRejection)
		assert.InDelta(t, want, th.Probability("https://api.example.com:443", now), 1e-12, "step %d", i)
		th.random = script(s.draw)
		err := th.admit(u, now)
		if s.draw < want {
			require.Error(t, err, "step %d: a draw of %v under %v rejects", i, s.draw, want)
			assert.ErrorIs(t, err, ErrThrottled)
			assert.Contains(t, err.Error(), fmt.Sprintf("accept ratio %.2f", float64(accepts)/float64(requests)))
			rejections++ // not sent: not counted
			continue
		}
		require.NoError(t, err, "step %d: a draw of %v at or over %v admits", i, s.draw, want)
		th.record(u, now, s.accepted)
		requests++
		if s.accepted {
			accepts++
		}
		for range s.retries {
			th.record(u, now, false)
			requests++
		}
		now = now.Add(time.Second)
	}
	assert.Positive(t, rejections, "the script rejects some")
	// Past the window, every count has left it.
	assert.Zero(t, th.Probability("https://api.example.com", now.Add(time.Minute+6*time.Second)))
}

func TestThrottleFloorKeepsProbing(t *testing.T) {
	th := NewThrottle(2, time.Minute)
	u := mustURL(t, "http://down.example")
	now := time.Now()
	for range 1000 {
		th.random = script(0.999)
		if th.admit(u, now) == nil {
			th.record(u, now, false) // refused
		}
	}
	assert.Equal(t, MaxThrottleRejection, th.Probability("http://down.example", now), "never 100%")
	sent := 0
	th.random = script(0.05, 0.15, 0.25, 0.35, 0.45, 0.55, 0.65, 0.75, 0.85, 0.95)
	for range 100 {
		if th.admit(u, now) == nil {
			sent++
		}
	}
	assert.Equal(t, 10, sent, "one in ten probes")
}

func TestThrottleMemoryIsBoundedFor10000Destinations(t *testing.T) {
	t.Parallel() // CPU-bound: it runs beside the other parallel tests, on another core
	th := NewThrottle(2, time.Minute)
	now := time.Now()
	for i := range 10_000 {
		u := mustURL(t, fmt.Sprintf("https://host%d.example", i))
		require.NoError(t, th.admit(u, now))
		th.record(u, now, true)
	}
	assert.LessOrEqual(t, th.destinations(), MaxThrottleDestinations)
	// The latest destinations are kept, the oldest forgotten.
	assert.Positive(t, th.Probability("https://host9999.example", now)+1)
	assert.NotNil(t, th.find(mustURL(t, "https://host9999.example")))
	assert.Nil(t, th.find(mustURL(t, "https://host0.example")))
}

func TestQuotaHoldMemoryIsBoundedFor10000Destinations(t *testing.T) {
	t.Parallel() // CPU-bound: it runs beside the other parallel tests, on another core
	var hs holds
	now := time.Now()
	for i := range 10_000 {
		h := hs.findOrAdd(mustURL(t, fmt.Sprintf("https://host%d.example", i)))
		h.mu.Lock()
		h.spend(now, time.Hour, "X-RateLimit-Reset", 5)
		h.mu.Unlock()
	}
	assert.LessOrEqual(t, hs.places.len(), maxHolds)
	assert.LessOrEqual(t, hs.table.len(), maxHolds)

	// Holds expire on their own once idle past their reset, as long again
	// as the wait.
	later := now.Add(3 * time.Hour)
	u := mustURL(t, "https://fresh.example")
	h := hs.findOrAdd(u)
	assert.LessOrEqual(t, hs.places.len(), maxHolds)
	assert.LessOrEqual(t, hs.table.len(), maxHolds)
	h.mu.Lock()
	h.spend(later, time.Minute, "Retry-After", 0)
	h.mu.Unlock()
	hs.dropIfExpired(h, later.Add(time.Minute))
	assert.Same(t, h, hs.hold(u, limitScope{}), "kept after its reset, for the requests told of it")
	hs.dropIfExpired(h, later.Add(2*time.Minute))
	assert.Nil(t, hs.find(u), "expired")
}

func TestNewThrottleValidatesItsArguments(t *testing.T) {
	tests := []struct {
		k      float64
		window time.Duration
		want   string
	}{
		{0.5, time.Minute, "k 0.5 must be a finite number of at least 1"},
		{math.NaN(), time.Minute, "k NaN"},
		{math.Inf(1), time.Minute, "k +Inf"},
		{2, 0, "window 0s must be positive"},
		{2, -time.Second, "window -1s must be positive"},
	}
	for _, tt := range tests {
		p := Policy{Throttle: NewThrottle(tt.k, tt.window)}
		err := p.Validate()
		require.Error(t, err, "k %v window %v", tt.k, tt.window)
		assert.Contains(t, err.Error(), "invalid Policy.Throttle")
		assert.Contains(t, err.Error(), tt.want)
	}
	p := Policy{Throttle: &Throttle{}}
	assert.ErrorContains(t, p.Validate(), "the zero Throttle")
	p = Policy{Throttle: NewThrottle(1, time.Millisecond)}
	assert.NoError(t, p.Validate())
}

func TestThrottleThroughATransport(t *testing.T) {
	var healthy atomic.Bool
	var arrived atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived.Add(1)
		if !healthy.Load() {
			w.WriteHeader(http.StatusServiceUnavailable) // retryable, and no hold: no Retry-After
		}
	}))
	defer srv.Close()
	base := &http.Transport{}
	defer base.CloseIdleConnections()
	clock := &realTimeAt{}
	th := NewThrottle(2, 10*time.Second)
	th.random = script(0) // the most eager: rejects whenever p > 0
	var giveUps []GiveUpEvent
	tr := &Transport{Base: base, Policy: Policy{
		MaxAttempts: 1, Throttle: th, Clock: clock,
		OnGiveUp: func(ev GiveUpEvent) { giveUps = append(giveUps, ev) },
	}}
	client := &http.Client{Transport: tr}
	get := func() (*http.Response, error) {
		resp, err := client.Get(srv.URL)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return resp, err
	}

	// Healthy: nothing is rejected however many requests.
	healthy.Store(true)
	for range 200 {
		_, err := get()
		require.NoError(t, err, "a healthy server sees no rejection")
	}
	assert.EqualValues(t, 200, arrived.Load())

	// Overloaded: rejections come, without touching the network.
	clock.advance(20 * time.Second)
	healthy.Store(false)
	giveUps = nil
	rejected := 0
	for range 100 {
		before := arrived.Load()
		_, err := get()
		if errors.Is(err, ErrThrottled) {
			rejected++
			assert.Equal(t, before, arrived.Load(), "a rejection sends nothing")
			assert.Contains(t, err.Error(), "accept ratio")
			var gu *GiveUpError
			require.ErrorAs(t, err, &gu)
			assert.Zero(t, gu.Attempts)
			assert.Contains(t, err.Error(), "retryhttp: throttled locally: ")
		}
	}
	assert.Greater(t, rejected, 50, "most are rejected while nothing is accepted")
	assert.Less(t, rejected, 100, "never all: the floor probes")
	throttled := 0
	for _, ev := range giveUps {
		if ev.Reason == ErrThrottled {
			throttled++
			assert.Zero(t, ev.Attempts)
			assert.ErrorIs(t, ev.Err, ErrThrottled)
		}
	}
	assert.Equal(t, rejected, throttled, "OnGiveUp with its own reason for every rejection")

	// Recovered: once the window has passed, rejections are gone.
	healthy.Store(true)
	clock.advance(11 * time.Second)
	for range 50 {
		_, err := get()
		require.NoError(t, err)
	}
}

// realTimeAt is a Clock whose time can be moved forward, that waits in
// real time.
type realTimeAt struct{ offset atomic.Int64 }

func (c *realTimeAt) Now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *realTimeAt) advance(d time.Duration) { c.offset.Add(int64(d)) }
func (c *realTimeAt) Sleep(ctx context.Context, d time.Duration) error {
	return realClock{}.Sleep(ctx, d)
}

func TestThrottleRejectsRetriesToo(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	base := &http.Transport{}
	defer base.CloseIdleConnections()
	th := NewThrottle(2, time.Minute)
	th.random = script(0.4) // admits while p <= 0.4
	var giveUps []GiveUpEvent
	tr := &Transport{Base: base, Policy: Policy{
		Throttle: th, Clock: &realTimeAt{}, Budget: UnlimitedBudget(),
		Backoff:  func() backoff.BackOff { return &backoff.ZeroBackOff{} },
		OnGiveUp: func(ev GiveUpEvent) { giveUps = append(giveUps, ev) },
	}}
	req, err := http.NewRequest(http.MethodGet, srv.URL, nil)
	require.NoError(t, err)
	resp, err := tr.RoundTrip(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "the last response, as it came")
	require.Len(t, giveUps, 1)
	// After one refusal p = 1/2 > 0.4: the first retry is rejected.
	assert.Same(t, ErrThrottled, giveUps[0].Reason)
	assert.Equal(t, 1, giveUps[0].Attempts)
}

// A Clock may read any time, the zero time of a stub included: slots of a
// time before 1970 must not index out of range.
func TestThrottleCountsTimesBefore1970(t *testing.T) {
	for _, now := range []time.Time{{}, time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC)} {
		th := NewThrottle(2, time.Minute)
		u := mustURL(t, "https://api.example.com")
		require.NotPanics(t, func() {
			for range 5 {
				th.record(u, now, false)
			}
		}, "at %v", now)
		assert.InDelta(t, 5.0/6, th.Probability("https://api.example.com", now), 1e-12, "at %v", now)
	}
}

// A retry whose body GetBody could not reopen was never sent: the Throttle
// counts attempts sent, and must not count it as a refusal.
func TestThrottleDoesNotCountARetryNeverSent(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	base := &http.Transport{}
	defer base.CloseIdleConnections()
	th := NewThrottle(2, time.Minute)
	th.random = script(0.99) // admits whatever p
	clock := &realTimeAt{}
	tr := &Transport{Base: base, Policy: Policy{
		Throttle: th, Clock: clock, Budget: UnlimitedBudget(),
		Backoff: func() backoff.BackOff { return &backoff.ZeroBackOff{} },
	}}
	req, err := http.NewRequest(http.MethodPut, srv.URL, strings.NewReader("body"))
	require.NoError(t, err)
	req.GetBody = func() (io.ReadCloser, error) { return nil, errors.New("cannot reopen") }
	_, err = tr.RoundTrip(req)
	require.Error(t, err)
	// One attempt sent, refused: p = 1/2, not the 2/3 of two refusals.
	assert.InDelta(t, 0.5, th.Probability(srv.URL, clock.Now()), 1e-12)
}

// The Throttle counts what the server answered or failed, as the SRE book's
// client-side throttling does: an attempt the caller cancelled, or that a
// race cancelled because another copy won, tells nothing of the server and
// is neither an accept nor a refusal. Against a server that refused
// nothing, the rejection probability stays 0.
func TestThrottleDoesNotCountCancelledAttemptsAsRefusals(t *testing.T) {
	for _, tc := range []struct {
		name string
		// hedge is the Policy's Hedge; three copies of each request when set.
		hedge *Hedge
		// callerCancels is the number of requests the caller cancels once
		// every copy of each has reached the server, before one served.
		callerCancels int
		// raceCancels is how many copies of the served request the server
		// leaves unanswered until the race cancels them.
		raceCancels int64
	}{
		{name: "two requests the caller cancelled", callerCancels: 2},
		{name: "two hedged races of three copies the caller cancelled", hedge: &Hedge{Delay: time.Millisecond, Max: 2}, callerCancels: 2},
		{name: "two hedge losers the race cancelled", hedge: &Hedge{Delay: time.Millisecond, Max: 2}, raceCancels: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var arrived, served atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n := arrived.Add(1)
				if r.URL.Path == "/block" || n <= tc.raceCancels {
					<-r.Context().Done() // never answered: only a cancellation ends it
					return
				}
				served.Add(1)
			}))
			defer srv.Close()
			base := &http.Transport{}
			defer base.CloseIdleConnections()
			th := NewThrottle(2, time.Minute)
			th.random = script(0.99) // admits whatever p, so that every request is sent
			tr := &Transport{Base: base, Policy: Policy{
				Throttle: th, Hedge: tc.hedge, MaxAttempts: 3, Budget: UnlimitedBudget(),
			}}
			copies := int64(1)
			if tc.hedge != nil {
				copies = 3
			}

			for i := range tc.callerCancels {
				ctx, cancel := context.WithCancel(context.Background())
				req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/block", nil)
				require.NoError(t, err)
				done := make(chan error, 1)
				go func() {
					resp, err := tr.RoundTrip(req)
					if resp != nil {
						resp.Body.Close()
					}
					done <- err
				}()
				want := int64(i+1) * copies
				require.Eventually(t, func() bool { return arrived.Load() >= want },
					10*time.Second, time.Millisecond, "every copy reaches the server")
				cancel()
				require.ErrorIs(t, <-done, context.Canceled)
			}

			arrived.Store(0)
			req, err := http.NewRequest(http.MethodGet, srv.URL+"/ok", nil)
			require.NoError(t, err)
			resp, err := tr.RoundTrip(req)
			require.NoError(t, err)
			resp.Body.Close()
			require.Equal(t, http.StatusOK, resp.StatusCode)
			require.EqualValues(t, 1, served.Load())
			if tc.raceCancels > 0 {
				require.EqualValues(t, copies, arrived.Load(), "three copies raced")
			}

			assert.Zero(t, th.Probability(srv.URL, time.Now()),
				"the server refused nothing: cancelled attempts are not refusals")
		})
	}
}
