package retryhttp_test

// Tests of the limits at their edges: waits that overflow, limits of
// math.MaxInt64, the time OnRetry and the drain take, and the jitter that
// must never make a retry give up.

import (
	"context"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/b4dedce7/retryhttp"
	"github.com/b4dedce7/retryhttp/retrytest"
)

const noLimit = time.Duration(math.MaxInt64)

func TestHugeWaitsNeverWrap(t *testing.T) {
	tests := []struct {
		name       string
		retryAfter string
		policy     retryhttp.Policy
		wantReason error
	}{
		{"delta-seconds beyond a Duration, no cap", "10000000000", retryhttp.Policy{MaxRetryAfter: noLimit}, retryhttp.ErrRetryAfterTooLong},
		{"delta-seconds beyond a Duration, no limits at all", "10000000000", retryhttp.Policy{MaxRetryAfter: noLimit, MaxElapsed: noLimit}, retryhttp.ErrRetryAfterTooLong},
		{"a date in the year 9999, no limits", "Fri, 31 Dec 9999 23:59:59 GMT", retryhttp.Policy{MaxRetryAfter: noLimit, MaxElapsed: noLimit}, retryhttp.ErrRetryAfterTooLong},
		{"just under the saturation, past MaxElapsed", "9223372035", retryhttp.Policy{MaxRetryAfter: noLimit}, retryhttp.ErrMaxElapsed},
		{"saturating jitter, against a deadline", "9223372030", retryhttp.Policy{MaxRetryAfter: noLimit, MaxElapsed: noLimit}, retryhttp.ErrDeadline},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := retrytest.NewServer(t).Otherwise(retrytest.Reply(503, "").WithHeader("Retry-After", tt.retryAfter))
			var hook giveUps
			tt.policy.OnGiveUp = hook.record
			client, clock := newClient(t, tt.policy)
			ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
			defer cancel()

			resp, _, err := do(t, client, newRequest(t, "GET", srv.URL, nil).WithContext(ctx))

			require.NoError(t, err)
			assert.Equal(t, 503, resp.StatusCode)
			assert.Equal(t, 1, srv.Count(), "never retried at once")
			assert.Empty(t, clock.Waits())
			require.Len(t, hook.all(), 1)
			assert.Same(t, tt.wantReason, hook.all()[0].Reason)
		})
	}
}

func TestHugeWaitWithinNoLimitsIsWaitedInFull(t *testing.T) {
	srv := retrytest.NewServer(t, retrytest.Reply(503, "").WithHeader("Retry-After", "9223372035"), retrytest.OK("ok"))
	client, clock := newClient(t, retryhttp.Policy{MaxRetryAfter: noLimit, MaxElapsed: noLimit})

	resp, _, err := do(t, client, newRequest(t, "GET", srv.URL, nil))

	require.NoError(t, err)
	assert.Equal(t, 200, resp.StatusCode)
	require.Len(t, clock.Waits(), 1)
	assert.GreaterOrEqual(t, clock.Waits()[0], 9223372035*time.Second, "never earlier than the server asked, never wrapped")
}

// hugeBackOff returns waits at the edge of what a Duration holds, and a
// negative one.
type hugeBackOff struct{ waits []time.Duration }

func (b *hugeBackOff) NextBackOff() time.Duration {
	w := b.waits[0]
	b.waits = b.waits[1:]
	return w
}

func (b *hugeBackOff) Reset() {}

func TestHugeBackoffValuesSaturate(t *testing.T) {
	srv := retrytest.NewServer(t, retrytest.Unavailable(0), retrytest.Unavailable(0), retrytest.Unavailable(0))
	var hook giveUps
	client, clock := newClient(t, retryhttp.Policy{
		MaxElapsed: noLimit,
		Backoff: func() backoff.BackOff {
			return &hugeBackOff{waits: []time.Duration{-time.Second, noLimit - 1, noLimit}}
		},
		OnGiveUp: hook.record,
	})

	resp, _, err := do(t, client, newRequest(t, "GET", srv.URL, nil))

	require.NoError(t, err)
	assert.Equal(t, 503, resp.StatusCode)
	require.NotEmpty(t, clock.Waits())
	assert.Equal(t, time.Duration(0), clock.Waits()[0], "a negative wait is no wait")
	for _, w := range clock.Waits() {
		assert.GreaterOrEqual(t, w, time.Duration(0))
	}
	require.Len(t, hook.all(), 1)
	assert.Same(t, retryhttp.ErrMaxElapsed, hook.all()[0].Reason, "a wait past even math.MaxInt64 of MaxElapsed gives up")
}

// slowBodyServer answers its first request 503 with a body of size bytes
// sent slowly, and every later one 200, recording when each arrived.
func slowBodyServer(t *testing.T, size int) (*httptest.Server, func() []time.Time) {
	var mu sync.Mutex
	var arrivals []time.Time
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		arrivals = append(arrivals, time.Now())
		n := len(arrivals)
		mu.Unlock()
		if n > 1 {
			_, _ = io.WriteString(w, "ok")
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(size))
		w.WriteHeader(503)
		chunk := strings.Repeat("x", size/10)
		for i := 0; i < 10 && r.Context().Err() == nil; i++ {
			_, _ = io.WriteString(w, chunk)
			http.NewResponseController(w).Flush()
			time.Sleep(10 * time.Millisecond)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, func() []time.Time {
		mu.Lock()
		defer mu.Unlock()
		return append([]time.Time(nil), arrivals...)
	}
}

func constant(d time.Duration) func() backoff.BackOff {
	return func() backoff.BackOff { return backoff.NewConstantBackOff(d) }
}

func TestMaxElapsedCountsOnRetryAndTheDrain(t *testing.T) {
	if testing.Short() {
		t.Skip("real time is what it tests: a slow hook and a slow body's drain on the real clock, over loopback")
	}
	t.Run("the retry starts within MaxElapsed", func(t *testing.T) {
		srv, arrivals := slowBodyServer(t, 1000)
		client := &http.Client{Transport: &retryhttp.Transport{Base: newBase(t), Policy: retryhttp.Policy{
			MaxElapsed: 3 * time.Second,
			Backoff:    constant(time.Second),
			OnRetry:    func(retryhttp.RetryEvent) { time.Sleep(time.Second) },
		}}}

		resp, _, err := do(t, client, newRequest(t, "GET", srv.URL, nil))

		require.NoError(t, err)
		assert.Equal(t, 200, resp.StatusCode)
		got := arrivals()
		require.Len(t, got, 2)
		// The hook (1 s) and the drain (up to 50 ms) run inside the 1 s
		// wait, not after it, which would take 2 s; seconds, so that a busy
		// machine's delays do not reach the margin.
		assert.Less(t, got[1].Sub(got[0]), 1600*time.Millisecond)
	})
	t.Run("a slow OnRetry that leaves no room gives up with the whole response", func(t *testing.T) {
		const size = 100 << 10 // more than the drain would read
		srv, arrivals := slowBodyServer(t, size)
		var hook giveUps
		var retries atomic.Int32
		client := &http.Client{Transport: &retryhttp.Transport{Base: newBase(t), Policy: retryhttp.Policy{
			MaxElapsed: 200 * time.Millisecond,
			Backoff:    constant(50 * time.Millisecond),
			OnRetry:    func(retryhttp.RetryEvent) { retries.Add(1); time.Sleep(250 * time.Millisecond) },
			OnGiveUp:   hook.record,
		}}}

		resp, body, err := do(t, client, newRequest(t, "GET", srv.URL, nil))

		require.NoError(t, err)
		assert.Equal(t, 503, resp.StatusCode)
		assert.Len(t, body, size, "the body is whole")
		assert.Len(t, arrivals(), 1)
		require.Len(t, hook.all(), 1)
		assert.Same(t, retryhttp.ErrMaxElapsed, hook.all()[0].Reason)
	})
	t.Run("against the deadline, the 503 comes back at once", func(t *testing.T) {
		const size = 100 << 10
		srv, arrivals := slowBodyServer(t, size)
		var hook giveUps
		budget := retryhttp.NewBudget(0, 5)
		client := &http.Client{Transport: &retryhttp.Transport{Base: newBase(t), Policy: retryhttp.Policy{
			Backoff:  constant(100 * time.Millisecond),
			Budget:   budget,
			OnRetry:  func(retryhttp.RetryEvent) { time.Sleep(250 * time.Millisecond) },
			OnGiveUp: hook.record,
		}}}
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()

		resp, err := client.Do(newRequest(t, "GET", srv.URL, nil).WithContext(ctx))

		require.NoError(t, err, "no sleep ending in 'context deadline exceeded'")
		defer resp.Body.Close()
		assert.Equal(t, 503, resp.StatusCode)
		body, readErr := io.ReadAll(resp.Body)
		require.NoError(t, readErr)
		assert.Len(t, body, size)
		assert.Len(t, arrivals(), 1)
		require.Len(t, hook.all(), 1)
		assert.Same(t, retryhttp.ErrDeadline, hook.all()[0].Reason)
		assert.Equal(t, 5.0, budget.Tokens(), "the token of the abandoned retry is back")
	})
}

func TestJitterNeverMakesARetryGiveUp(t *testing.T) {
	// The server's 10 s fits MaxElapsed (10.5 s), but its full jitter (up to
	// 2 s) would not: the extra must shrink to fit, every time.
	const clients = 100
	srv := retrytest.NewServer(t).Otherwise(retrytest.Unavailable(10 * time.Second))
	var hook giveUps
	clock := retrytest.NewClock(t)
	for range clients {
		// A client each: one Transport would hold its later requests
		// until the reset the first 503 named.
		client, _ := newClient(t, retryhttp.Policy{
			MaxAttempts: 2, MaxElapsed: 10500 * time.Millisecond,
			Budget: retryhttp.UnlimitedBudget(), OnGiveUp: hook.record, Clock: clock,
		})
		resp, _, err := do(t, client, newRequest(t, "GET", srv.URL, nil))
		require.NoError(t, err)
		require.Equal(t, 503, resp.StatusCode)
	}
	waits := clock.Waits()
	require.Len(t, waits, clients, "every request was retried")
	lo, hi := waits[0], waits[0]
	for _, w := range waits {
		lo, hi = min(lo, w), max(hi, w)
	}
	assert.GreaterOrEqual(t, lo, 10*time.Second, "never earlier than the server said")
	assert.Less(t, hi, 10500*time.Millisecond, "within MaxElapsed")
	assert.Greater(t, hi-lo, 200*time.Millisecond, "drawn across the room left, not clamped to one point")
	for _, ev := range hook.all() {
		assert.Same(t, retryhttp.ErrAttemptsUsedUp, ev.Reason, "no give-up for MaxElapsed")
	}
}

func TestRetryAfterZeroIsJitteredUpToASecond(t *testing.T) {
	const clients = 100
	srv := retrytest.NewServer(t).Otherwise(retrytest.Reply(503, "").WithHeader("Retry-After", "0"))
	client, clock := newClient(t, retryhttp.Policy{MaxAttempts: 2, Budget: retryhttp.UnlimitedBudget()})
	for range clients {
		_, _, err := do(t, client, newRequest(t, "GET", srv.URL, nil))
		require.NoError(t, err)
	}
	waits := clock.Waits()
	require.Len(t, waits, clients)
	var hi time.Duration
	for _, w := range waits {
		assert.GreaterOrEqual(t, w, time.Duration(0))
		assert.Less(t, w, time.Second)
		hi = max(hi, w)
	}
	assert.Greater(t, hi, 500*time.Millisecond, "spread over the second")
}

func TestCancelledWaitGivesTheTokenBack(t *testing.T) {
	srv := retrytest.NewServer(t).Otherwise(retrytest.Unavailable(5 * time.Second))
	budget := retryhttp.NewBudget(0, 4)
	client := &http.Client{Transport: &retryhttp.Transport{Base: newBase(t), Policy: retryhttp.Policy{Budget: budget}}}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)

	_, err := client.Do(newRequest(t, "GET", srv.URL, nil).WithContext(ctx))

	require.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, 4.0, budget.Tokens())
}

// TestEmptyBodiesCostNoDrainTime: a Base that wraps every body (as otelhttp
// does) hides http.NoBody; an empty body must still cost no drain time
// against the limits. A retry 1 ms off fits a MaxElapsed of 30 ms only when
// the drain costs nothing: a body to drain is allowed 50 ms.
func TestEmptyBodiesCostNoDrainTime(t *testing.T) {
	clock := stillClock{retrytest.NewClock(t)}
	srv := retrytest.NewServer(t, retrytest.Reply(503, ""), retrytest.OK("ok"))
	var closed atomic.Int32
	wrapping := roundTripFunc(func(req *http.Request) (*http.Response, error) {
		resp, err := newBase(t).RoundTrip(req)
		if err == nil {
			resp.Body = &closeCounter{ReadCloser: resp.Body, closed: &closed}
		}
		return resp, err
	})
	client := &http.Client{Transport: &retryhttp.Transport{Base: wrapping, Policy: retryhttp.Policy{
		MaxElapsed: 30 * time.Millisecond,
		Backoff:    constant(time.Millisecond),
		Clock:      clock,
	}}}

	resp, body, err := do(t, client, newRequest(t, "GET", srv.URL, nil))

	require.NoError(t, err)
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "ok", body)
	assert.EqualValues(t, 2, closed.Load(), "the empty body was closed, and the returned one by the caller")
	assert.Equal(t, []time.Duration{time.Millisecond}, clock.fake.Waits(), "the retry's wait")
}

// stillClock is a fake clock that does not say it is virtual: it stands
// still while the Transport works, and the Transport, taking it for a clock
// that tells the time, measures its own work on it, where that work takes
// no time at all. Only the waits move it, so that a limit of a few
// milliseconds is exact, however busy the machine.
type stillClock struct{ fake *retrytest.Clock }

func (c stillClock) Now() time.Time { return c.fake.Now() }
func (c stillClock) Sleep(ctx context.Context, d time.Duration) error {
	return c.fake.Sleep(ctx, d)
}

type closeCounter struct {
	io.ReadCloser
	closed *atomic.Int32
}

func (c *closeCounter) Close() error {
	c.closed.Add(1)
	return c.ReadCloser.Close()
}

// wallClock is a Clock of the user's own that tells the real time, as a
// clock wrapped for logging or metrics would.
type wallClock struct{}

func (wallClock) Now() time.Time { return time.Now() }
func (wallClock) Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Policy.OnRetry: "its time counts against the wait", for any Clock that
// tells the real time, not only the package's own: a retry that fitted the
// deadline when decided is sent, not slept past the deadline.
func TestOnRetryTimeCountsAgainstTheWaitOfAnyRealTimeClock(t *testing.T) {
	// In a testing/synctest bubble, whose fake time the real clock reads
	// and waits on, so that the second of the wait passes at once.
	synctest.Test(t, func(t *testing.T) {
		var calls atomic.Int32
		base := roundTripFunc(func(req *http.Request) (*http.Response, error) {
			if calls.Add(1) == 1 {
				return &http.Response{StatusCode: 503, Header: http.Header{}, Body: http.NoBody, Request: req}, nil
			}
			return &http.Response{StatusCode: 200, Header: http.Header{}, Body: http.NoBody, Request: req}, nil
		})
		tr := &retryhttp.Transport{Base: base, Policy: retryhttp.Policy{
			Clock:   wallClock{},
			Budget:  retryhttp.UnlimitedBudget(),
			Backoff: constant(time.Second),
			OnRetry: func(retryhttp.RetryEvent) { time.Sleep(600 * time.Millisecond) },
		}}
		ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
		defer cancel()
		req := newRequest(t, "GET", "http://example.invalid/", nil).WithContext(ctx)

		resp, err := tr.RoundTrip(req)

		require.NoError(t, err, "the retry, due 1 s after the decision, fits a 1.5 s deadline")
		assert.Equal(t, 200, resp.StatusCode)
		assert.EqualValues(t, 2, calls.Load())
	})
}

// MaxElapsed is measured right on the real clock inside a testing/synctest
// bubble, where time.Now has no monotonic reading and the fake wall clock
// starts in 2000: 1 s attempts, 1 s waits and MaxElapsed 5 s make exactly 3
// attempts.
func TestMaxElapsedOnTheRealClockInASynctestBubble(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var n atomic.Int64
		tr := &retryhttp.Transport{
			Base: roundTripFunc(func(req *http.Request) (*http.Response, error) {
				n.Add(1)
				time.Sleep(time.Second)
				return respond(req, 503), nil
			}),
			Policy: retryhttp.Policy{MaxAttempts: 100, MaxElapsed: 5 * time.Second, Budget: retryhttp.UnlimitedBudget(),
				Backoff: func() backoff.BackOff { return backoff.NewConstantBackOff(time.Second) }},
		}
		var reason error
		tr.Policy.OnGiveUp = func(e retryhttp.GiveUpEvent) { reason = e.Reason }
		req, _ := http.NewRequest("GET", "http://x.example/", nil)
		resp, err := tr.RoundTrip(req)
		require.NoError(t, err)
		assert.Equal(t, 503, resp.StatusCode)
		assert.ErrorIs(t, reason, retryhttp.ErrMaxElapsed)
		assert.Equal(t, int64(3), n.Load())
	})
}
