package retryhttp_test

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"net/http"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/b4dedce7/retryhttp"
	"github.com/b4dedce7/retryhttp/retrytest"
)

// answerAt answers 200 or 503 by the fake clock's time, as fail says, and
// records when each success was answered.
type answerAt struct {
	clock *retrytest.Clock
	fail  func(now time.Time) bool
	mu    sync.Mutex
	oks   []time.Time
	sent  atomic.Int32
}

func (a *answerAt) RoundTrip(req *http.Request) (*http.Response, error) {
	a.sent.Add(1)
	now := a.clock.Now()
	status := http.StatusOK
	if a.fail(now) {
		status = http.StatusServiceUnavailable
	} else {
		a.mu.Lock()
		a.oks = append(a.oks, now)
		a.mu.Unlock()
	}
	return &http.Response{StatusCode: status, Header: http.Header{}, Body: http.NoBody, Request: req}, nil
}

// countSorted is countIn for ts in time order.
func countSorted(ts []time.Time, from, to time.Time) int {
	lo := sort.Search(len(ts), func(i int) bool { return !ts[i].Before(from) })
	hi := sort.Search(len(ts), func(i int) bool { return ts[i].After(to) })
	return max(hi-lo, 0)
}

func countIn(ts []time.Time, from, to time.Time) int {
	n := 0
	for _, t := range ts {
		if !t.Before(from) && !t.After(to) {
			n++
		}
	}
	return n
}

// TestBudgetBound checks the bound the Budget documents, at every blind
// retry: the retries of the 9.8 s up to it are at most ratio × the
// successes of the 10 s up to it, plus burst before the first success, and
// those of the 0.8 s up to it at most a tenth of that, rounded up.
func TestBudgetBound(t *testing.T) {
	t.Parallel() // CPU-bound: it runs beside the other parallel tests, on another core
	for _, ratio := range []float64{0.1, 0.5} {
		clock := retrytest.NewClock(t)
		start := clock.Now()
		rng := rand.New(rand.NewPCG(1, uint64(ratio*10)))
		// Failures come and go in spells of a few seconds.
		srv := &answerAt{clock: clock, fail: func(now time.Time) bool {
			return int(now.Sub(start)/(1500*time.Millisecond))%3 == 1
		}}
		const burst = 3
		budget := retryhttp.NewBudget(ratio, burst)
		var mu sync.Mutex
		var retries []time.Time
		rt := &retryhttp.Transport{Base: srv, Policy: retryhttp.Policy{
			Budget: budget, Clock: clock, MaxAttempts: 3, Backoff: noWait,
			OnRetry: func(retryhttp.RetryEvent) {
				mu.Lock()
				retries = append(retries, clock.Now())
				mu.Unlock()
			},
		}}
		for range 5000 {
			clock.Advance(time.Duration(rng.IntN(40)) * time.Millisecond)
			req, _ := http.NewRequest(http.MethodGet, "http://api.example/", nil)
			resp, err := rt.RoundTrip(req)
			require.NoError(t, err)
			resp.Body.Close()
		}
		require.NotEmpty(t, srv.oks)
		firstOK := srv.oks[0]
		for _, at := range retries {
			earned := ratio * float64(countIn(srv.oks, at.Add(-retryhttp.BudgetWindow), at))
			made := countIn(retries, at.Add(-retryhttp.BudgetWindow+200*time.Millisecond), at)
			paced := countIn(retries, at.Add(-retryhttp.BudgetPace+200*time.Millisecond), at)
			if at.Before(firstOK) {
				earned += burst
			}
			require.LessOrEqualf(t, float64(made), earned+1e-9, "ratio %v: %d retries in the 9.8 s up to %v", ratio, made, at.Sub(start))
			if !at.Before(firstOK) {
				require.LessOrEqualf(t, float64(paced), math.Ceil(earned/10-1e-9), "ratio %v: %d retries in the 0.8 s up to %v", ratio, paced, at.Sub(start))
			}
		}
		assert.Greater(t, len(retries), 100, "ratio %v: the failures were retried", ratio)
	}
}

// TestBudgetWindowExpires checks that successes earn retries for
// BudgetWindow only: the allowance is not stored.
func TestBudgetWindowExpires(t *testing.T) {
	clock := retrytest.NewClock(t)
	var failing atomic.Bool
	srv := &answerAt{clock: clock, fail: func(time.Time) bool { return failing.Load() }}
	budget := retryhttp.NewBudget(0.1, 3)
	rt := &retryhttp.Transport{Base: srv, Policy: retryhttp.Policy{Budget: budget, Clock: clock, MaxAttempts: 100, Backoff: noWait}}
	get := func() {
		req, _ := http.NewRequest(http.MethodGet, "http://api.example/", nil)
		resp, err := rt.RoundTrip(req)
		require.NoError(t, err)
		resp.Body.Close()
	}
	assert.Equal(t, 3.0, budget.Tokens(), "no history: the burst")
	get()
	clock.Advance(retryhttp.BudgetWindow)
	assert.Zero(t, budget.Tokens(), "the first success ended the burst, and its earnings expired")
	for range 100 {
		clock.Advance(100 * time.Millisecond)
		get()
	}
	assert.InDelta(t, 1.0, budget.Tokens(), 0.02, "100 successes in 10 s earn 10 retries, paced at one a second")
	failing.Store(true)
	before := srv.sent.Load()
	get()
	assert.EqualValues(t, 2, srv.sent.Load()-before, "one retry: the pace")
	clock.Advance(retryhttp.BudgetWindow)
	assert.Zero(t, budget.Tokens(), "the successes expire with the window")
	before = srv.sent.Load()
	get()
	assert.EqualValues(t, 1, srv.sent.Load()-before, "no retry from expired successes, and no burst again")
}

// TestFreshProcessRetries is the demo's path: a Transport with no history
// answered 503, 503, then 200 returns the 200.
func TestFreshProcessRetries(t *testing.T) {
	srv := retrytest.NewServer(t, retrytest.Unavailable(0), retrytest.Unavailable(0), retrytest.OK("done"))
	client, _ := newClient(t, retryhttp.Policy{})
	resp, body, err := do(t, client, newRequest(t, "GET", srv.URL, nil))
	require.NoError(t, err)
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "done", body)
	assert.Equal(t, 3, srv.Count())
}

// TestDeadServerFromAFreshTransport: at most 1.15 attempts per request,
// one at a time and all at once.
func TestDeadServerFromAFreshTransport(t *testing.T) {
	const n = 100
	for _, concurrent := range []bool{false, true} {
		srv := retrytest.NewServer(t).Otherwise(retrytest.Unavailable(0))
		client, _ := newClient(t, retryhttp.Policy{})
		var wg sync.WaitGroup
		for range n {
			get := func() {
				resp, _, err := do(t, client, newRequest(t, "GET", srv.URL, nil))
				assert.NoError(t, err)
				if err == nil {
					assert.Equal(t, 503, resp.StatusCode)
				}
			}
			if concurrent {
				wg.Go(get)
			} else {
				get()
			}
		}
		wg.Wait()
		assert.LessOrEqual(t, float64(srv.Count())/n, 1.15, "concurrent %v", concurrent)
		assert.Equal(t, n+retryhttp.DefaultBudgetBurst, srv.Count(), "concurrent %v: the burst and no more", concurrent)
	}
}

// TestBlipWithHistory is the blip of the Budget's documentation: a process
// that has sent 30 requests a second for 60 s, all answered, rides out a
// 3 s window in which every request gets a 503, on the retries its own
// traffic earned, and its extra load stays within the ratio of that
// traffic.
//
// The process sends one request after another on the fake clock, whose
// waits move it, so a request that meets the blip holds the next back until
// it ends: the reading of a caller that waits for each answer. The default
// backoff (1, 2 and 4 s, each ±50%) puts a request's last retry at least
// 3.5 s after its first attempt, past the blip; the schedule of earlier
// versions, from 250 ms, spent all three retries within 2.6 s, inside it.
// What an open-loop process, each request on its own goroutine, gets
// through is another matter: see the Limits of docs/budget.md.
func TestBlipWithHistory(t *testing.T) {
	clock := retrytest.NewClock(t)
	start := clock.Now()
	const rate, history, blip = 30, 60 * time.Second, 3 * time.Second
	blipFrom, blipTo := start.Add(history), start.Add(history+blip)
	srv := &answerAt{clock: clock, fail: func(now time.Time) bool {
		return !now.Before(blipFrom) && now.Before(blipTo)
	}}
	var retries atomic.Int32
	rt := &retryhttp.Transport{Base: srv, Policy: retryhttp.Policy{Clock: clock, OnRetry: func(retryhttp.RetryEvent) { retries.Add(1) }}}
	get := func() int {
		req, _ := http.NewRequest(http.MethodGet, "http://api.example/", nil)
		resp, err := rt.RoundTrip(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	sent := 0
	for clock.Now().Add(time.Second / rate).Before(blipFrom) {
		clock.Advance(time.Second / rate)
		require.Equal(t, 200, get())
		sent++
	}
	require.GreaterOrEqual(t, sent, int(history.Seconds())*rate-1, "60 s at 30 requests a second")
	tokens := rt.Budget().TokensFor("http://api.example")
	assert.InDelta(t, 3, tokens, 0.11, "ratio × the successes of the last 10 s, 30, paced at a tenth a second")
	require.Zero(t, retries.Load())

	// The blip, and the 3 s after it, at the same rate: each request
	// starts 1/30 s after the previous one ended.
	var inBlip, inBlipOK, all, allOK int
	for clock.Now().Before(blipTo.Add(blip)) {
		clock.Advance(time.Second / rate)
		started := clock.Now()
		ok := get() == 200
		all++
		if ok {
			allOK++
		}
		if !started.Before(blipFrom) && started.Before(blipTo) {
			inBlip++
			if ok {
				inBlipOK++
			}
		}
	}
	t.Logf("%d of %d requests started in the blip got a 200, %d of %d over the blip and the 3 s after it; %d retries",
		inBlipOK, inBlip, allOK, all, retries.Load())
	require.Positive(t, inBlip)
	assert.GreaterOrEqual(t, float64(inBlipOK), 0.95*float64(inBlip), "requests started in the blip got through")
	assert.GreaterOrEqual(t, float64(allOK), 0.95*float64(all), "requests of the blip and the 3 s after it got through")
	assert.Positive(t, retries.Load())
	assert.LessOrEqual(t, float64(retries.Load()), retryhttp.DefaultBudgetRatio*float64(sent),
		"extra load within the ratio of the process's own traffic")
}

// TestNamedWaitRetriesAreCharged: a retry at a time the server named is
// charged to the Budget like any other retry of an attempt that reached the
// server: the named wait says when, never how many. It is still sent no
// earlier than named.
func TestNamedWaitRetriesAreCharged(t *testing.T) {
	t.Run("Retry-After: 1 with an empty budget gives up", func(t *testing.T) {
		srv := retrytest.NewServer(t, retrytest.Unavailable(time.Second), retrytest.OK("done"))
		var hook giveUps
		client, clock := newClient(t, retryhttp.Policy{Budget: retryhttp.NewBudget(0, 0), OnGiveUp: hook.record})
		resp, _, err := do(t, client, newRequest(t, "GET", srv.URL, nil))
		require.NoError(t, err)
		assert.Equal(t, 503, resp.StatusCode)
		assert.Equal(t, 1, srv.Count())
		assert.Zero(t, clock.Waited(), "gave up without waiting")
		require.Len(t, hook.all(), 1)
		assert.Same(t, retryhttp.ErrBudgetEmpty, hook.all()[0].Reason)
	})
	t.Run("Retry-After: 1, 2 with two tokens waits as told and spends both", func(t *testing.T) {
		srv := retrytest.NewServer(t, retrytest.Unavailable(time.Second), retrytest.TooManyRequests(2*time.Second), retrytest.OK("done"))
		budget := retryhttp.NewBudget(0, 2)
		client, clock := newClient(t, retryhttp.Policy{Budget: budget})
		resp, _, err := do(t, client, newRequest(t, "GET", srv.URL, nil))
		require.NoError(t, err)
		assert.Equal(t, 200, resp.StatusCode)
		assert.GreaterOrEqual(t, clock.Waited(), 3*time.Second, "never earlier than named")
		assert.Zero(t, budget.Tokens(), "both retries charged")
	})
	t.Run("Retry-After: 0 to everything is still bounded", func(t *testing.T) {
		srv := retrytest.NewServer(t).Otherwise(retrytest.Reply(503, "").WithHeader("Retry-After", "0"))
		client, _ := newClient(t, retryhttp.Policy{})
		for range 100 {
			_, _, err := do(t, client, newRequest(t, "GET", srv.URL, nil))
			require.NoError(t, err)
		}
		assert.Equal(t, 100+retryhttp.DefaultBudgetBurst, srv.Count())
	})
	t.Run("a rate-limit refusal with Retry-After: 0 to everything is still bounded", func(t *testing.T) {
		srv := retrytest.NewServer(t).Otherwise(retrytest.Reply(429, "").
			WithHeader("Retry-After", "0").WithHeader("X-RateLimit-Remaining", "0"))
		client, _ := newClient(t, retryhttp.Policy{})
		for range 100 {
			_, _, err := do(t, client, newRequest(t, "GET", srv.URL, nil))
			require.NoError(t, err)
		}
		assert.Equal(t, 100+retryhttp.DefaultBudgetBurst, srv.Count(), "a quota hold's retry told to come back at once is blind")
	})
	t.Run("a scheduled retry is bounded by MaxAttempts", func(t *testing.T) {
		srv := retrytest.NewServer(t).Otherwise(retrytest.Unavailable(time.Second))
		var hook giveUps
		client, _ := newClient(t, retryhttp.Policy{Budget: retryhttp.UnlimitedBudget(), OnGiveUp: hook.record})
		_, _, err := do(t, client, newRequest(t, "GET", srv.URL, nil))
		require.NoError(t, err)
		assert.Equal(t, retryhttp.DefaultMaxAttempts, srv.Count())
		require.Len(t, hook.all(), 1)
		assert.Same(t, retryhttp.ErrAttemptsUsedUp, hook.all()[0].Reason)
	})
}

// TestRateLimitAndTheBudget is the user's case: 30 requests at once
// through one fresh Transport to a GitHub-like API with 5 requests of
// quota left and a reset 3 s ahead. Each request told to wait waits as
// told, or gives up with a reason that names the limit that stopped it,
// never the budget.
func TestRateLimitAndTheBudget(t *testing.T) {
	for _, recovers := range []bool{true, false} {
		t.Run(map[bool]string{true: "the quota comes back", false: "the quota stays spent"}[recovers], func(t *testing.T) {
			clock := retrytest.NewClock(t)
			limited := retrytest.RateLimited(3*time.Second, retrytest.GitHub)
			script := repeat(retrytest.OK("ok"), 5)
			script = append(script, repeat(limited, 25)...)
			srv := retrytest.NewServer(t, script...).UseClock(clock)
			if recovers {
				srv.Otherwise(retrytest.OK("ok"))
			} else {
				srv.Otherwise(limited)
			}
			var hook giveUps
			var waits sync.Map
			p := retryhttp.Policy{Clock: clock, OnGiveUp: hook.record, OnRetry: func(ev retryhttp.RetryEvent) {
				waits.Store(ev.Request, ev)
				// On the fake clock a wait takes no time: hold the retries
				// until the 30 first attempts have arrived, as the reset
				// 3 s ahead would.
				for srv.Count() < 30 {
					time.Sleep(time.Millisecond)
				}
			}}
			// The fake clock plays concurrent waits one after the other:
			// 25 waits of 3 s would pass the default MaxElapsed there,
			// though not in real time, whether the quota comes back or not;
			// a quota hold then gave some requests up with ErrMaxElapsed and
			// no response, as the goroutines happened to run.
			p.MaxElapsed = time.Hour
			client, _ := newClient(t, p)
			var ok atomic.Int32
			var wg sync.WaitGroup
			for range 30 {
				wg.Go(func() {
					resp, _, err := do(t, client, newRequest(t, "GET", srv.URL, nil))
					if assert.NoError(t, err) && resp.StatusCode == 200 {
						ok.Add(1)
					}
				})
			}
			wg.Wait()
			waits.Range(func(_, v any) bool {
				ev := v.(retryhttp.RetryEvent)
				assert.True(t, ev.HasRetryAfter, "the server named the wait")
				assert.GreaterOrEqual(t, ev.Wait, ev.RetryAfter, "and it was waited as told")
				return true
			})
			for _, ev := range hook.all() {
				t.Logf("gave up after %d attempts: %v", ev.Attempts, ev.Reason)
				assert.NotSame(t, retryhttp.ErrBudgetEmpty, ev.Reason, "a scheduled retry is not refused by the budget")
				assert.True(t, errors.Is(ev.Reason, retryhttp.ErrAttemptsUsedUp) || errors.Is(ev.Reason, retryhttp.ErrMaxElapsed) ||
					errors.Is(ev.Reason, retryhttp.ErrRetryAfterTooLong) || errors.Is(ev.Reason, retryhttp.ErrDeadline), "a limit: %v", ev.Reason)
			}
			if recovers {
				assert.EqualValues(t, 30, ok.Load(), "all 30 end 200")
			} else {
				assert.EqualValues(t, 5, ok.Load())
				assert.Len(t, hook.all(), 25, "the others give up, each naming MaxAttempts")
			}
		})
	}
}

// TestNilBudgetIsSafe: a nil *Budget, Policy.Budget's default, answers
// without panicking.
func TestNilBudgetIsSafe(t *testing.T) {
	var p retryhttp.Policy
	assert.NotPanics(t, func() {
		assert.True(t, math.IsNaN(p.Budget.Tokens()))
		assert.True(t, math.IsNaN(p.Budget.TokensFor("https://api.example.com")))
	})
}

// TestTransportBudget: the Transport's budget is readable, the default
// included.
func TestTransportBudget(t *testing.T) {
	srv := retrytest.NewServer(t).Otherwise(retrytest.Unavailable(0))
	tr := &retryhttp.Transport{Policy: retryhttp.Policy{Clock: retrytest.NewClock(t)}}
	b := tr.Budget()
	require.NotNil(t, b)
	assert.Same(t, b, tr.Budget(), "one default Budget per Transport")
	assert.Equal(t, float64(retryhttp.DefaultBudgetBurst), b.TokensFor(srv.URL))
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, srv.URL, nil)
	resp, err := tr.RoundTrip(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Zero(t, b.TokensFor(srv.URL), "the dead server spent the burst")

	own := retryhttp.NewBudget(0.1, 1)
	assert.Same(t, own, (&retryhttp.Transport{Policy: retryhttp.Policy{Budget: own}}).Budget())
}

// TestFixedBudgetKeepsTheOldModel: NewFixedBudget is the token bucket of
// earlier versions, its burst never expiring.
func TestFixedBudgetKeepsTheOldModel(t *testing.T) {
	clock := retrytest.NewClock(t)
	srv := &answerAt{clock: clock, fail: func(time.Time) bool { return true }}
	budget := retryhttp.NewFixedBudget(0.1, 10)
	rt := &retryhttp.Transport{Base: srv, Policy: retryhttp.Policy{Budget: budget, Clock: clock, MaxAttempts: 100, Backoff: noWait}}
	clock.Advance(time.Hour)
	req, _ := http.NewRequest(http.MethodGet, "http://api.example/", nil)
	resp, err := rt.RoundTrip(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.EqualValues(t, 11, srv.sent.Load(), "the burst of 10, however old")
}

// TestBudgetBoundAtEveryMoment checks the bound the Budget documents for any
// moment, not only at a retry: successes expire while the retries they paid
// for are still in the window, so at a moment after a retry the window's
// successes may be fewer than its retries need, and the bound must count
// the successes of the 20 s up to the moment.
func TestBudgetBoundAtEveryMoment(t *testing.T) {
	t.Parallel() // CPU-bound: it runs beside the other parallel tests, on another core
	for _, ratio := range []float64{0.1, 0.5} {
		clock := retrytest.NewClock(t)
		start := clock.Now()
		rng := rand.New(rand.NewPCG(2, uint64(ratio*10)))
		srv := &answerAt{clock: clock, fail: func(now time.Time) bool {
			return int(now.Sub(start)/(1500*time.Millisecond))%3 == 1
		}}
		const burst = 3
		var mu sync.Mutex
		var retries []time.Time
		rt := &retryhttp.Transport{Base: srv, Policy: retryhttp.Policy{
			Budget: retryhttp.NewBudget(ratio, burst), Clock: clock, MaxAttempts: 3, Backoff: noWait,
			OnRetry: func(retryhttp.RetryEvent) {
				mu.Lock()
				retries = append(retries, clock.Now())
				mu.Unlock()
			},
		}}
		var moments []time.Time
		for range 5000 {
			clock.Advance(time.Duration(rng.IntN(40)) * time.Millisecond)
			moments = append(moments, clock.Now())
			req, _ := http.NewRequest(http.MethodGet, "http://api.example/", nil)
			resp, err := rt.RoundTrip(req)
			require.NoError(t, err)
			resp.Body.Close()
		}
		require.NotEmpty(t, srv.oks)
		// One request at a time on a clock that only moves forward: both
		// are in time order, and counted by binary search.
		require.True(t, slices.IsSortedFunc(srv.oks, time.Time.Compare))
		require.True(t, slices.IsSortedFunc(retries, time.Time.Compare))
		firstOK := srv.oks[0]
		for _, at := range moments {
			earned := ratio * float64(countSorted(srv.oks, at.Add(-2*retryhttp.BudgetWindow), at))
			if at.Before(firstOK.Add(retryhttp.BudgetWindow)) {
				earned += burst
			}
			made := countSorted(retries, at.Add(-retryhttp.BudgetWindow+200*time.Millisecond), at)
			paced := countSorted(retries, at.Add(-retryhttp.BudgetPace+200*time.Millisecond), at)
			require.LessOrEqualf(t, float64(made), earned+1e-9, "ratio %v: %d retries in the 9.8 s up to %v", ratio, made, at.Sub(start))
			if !at.Before(firstOK.Add(retryhttp.BudgetPace)) {
				require.LessOrEqualf(t, float64(paced), math.Ceil(earned/10-1e-9), "ratio %v: %d retries in the 0.8 s up to %v", ratio, paced, at.Sub(start))
			}
		}
		assert.Greater(t, len(retries), 100, "ratio %v: the failures were retried", ratio)
	}
}

// TestRefundGivesBackTheTokenTaken checks that a retry cancelled in its wait
// gives back the token it took, not another: a retry that took one of the
// burst, cancelled after the first success has closed the burst and another
// request's retry has spent the pace, must not uncount that retry, which was
// sent, and so let a second blind retry into the same pace.
func TestRefundGivesBackTheTokenTaken(t *testing.T) {
	clock := retrytest.NewClock(t)
	var fail atomic.Bool
	srv := &answerAt{clock: clock, fail: func(time.Time) bool { return fail.Load() }}
	var rt *retryhttp.Transport
	get := func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://api.example/", nil)
		resp, err := rt.RoundTrip(req)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	ctxA, cancelA := context.WithCancel(context.Background())
	defer cancelA()
	var nested atomic.Bool
	rt = &retryhttp.Transport{Base: srv, Policy: retryhttp.Policy{
		Budget: retryhttp.NewBudget(1, 1), Clock: clock, MaxAttempts: 2, Backoff: noWait,
		OnRetry: func(retryhttp.RetryEvent) {
			if nested.Swap(true) {
				return
			}
			// Request A has taken the burst's token for its retry. Ten
			// successes close the burst and earn one retry for this pace,
			// which request C spends and sends; then A is cancelled.
			fail.Store(false)
			for range 10 {
				require.NoError(t, get(context.Background()))
			}
			fail.Store(true)
			before := srv.sent.Load()
			_ = get(context.Background())
			require.Equal(t, int32(2), srv.sent.Load()-before, "request C's retry was sent")
			cancelA()
		},
	}}
	fail.Store(true)
	require.ErrorIs(t, get(ctxA), context.Canceled)
	// The pace allows ⌈1 × 10 / 10⌉ = 1 blind retry, and C made it.
	before := srv.sent.Load()
	require.NoError(t, get(context.Background()))
	assert.Equal(t, int32(1), srv.sent.Load()-before, "no second blind retry in the pace")
}

// TestTokensForBadHostIsNaN: TokensFor documents NaN for a host that does
// not parse as a URL with a scheme and a host, whatever the Budget; a single
// Budget, which serves every destination alike, answered its Tokens instead.
func TestTokensForBadHostIsNaN(t *testing.T) {
	budgets := map[string]*retryhttp.Budget{
		"NewBudget":          retryhttp.NewBudget(0.1, 3),
		"NewHostBudget":      retryhttp.NewHostBudget(0.1, 3),
		"NewFixedBudget":     retryhttp.NewFixedBudget(0.1, 10),
		"NewFixedHostBudget": retryhttp.NewFixedHostBudget(0.1, 10),
		"UnlimitedBudget":    retryhttp.UnlimitedBudget(),
		"nil":                nil,
	}
	for name, b := range budgets {
		for _, host := range []string{"", "api.example.com", "://x", "https://"} {
			assert.Truef(t, math.IsNaN(b.TokensFor(host)), "%s.TokensFor(%q)", name, host)
		}
		assert.Falsef(t, math.IsNaN(b.TokensFor("https://api.example.com")) && b != nil, "%s reads a good host", name)
	}
}

// stallClock is a Clock whose next reading by the Budget, once stall is
// set, is taken and then held until release closes: the request reading it
// goes on with a slot that other requests have since left behind.
type stallClock struct {
	mu      sync.Mutex
	now     time.Time
	stall   atomic.Bool
	stalled chan struct{}
	release chan struct{}
}

func (c *stallClock) Now() time.Time {
	c.mu.Lock()
	now := c.now
	c.mu.Unlock()
	if c.stall.Load() && calledFromBudgetSlot() && c.stall.Swap(false) {
		close(c.stalled)
		<-c.release
	}
	return now
}

func (c *stallClock) Sleep(ctx context.Context, d time.Duration) error {
	c.advance(d)
	return ctx.Err()
}

func (c *stallClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(max(d, 0))
	c.mu.Unlock()
}

func calledFromBudgetSlot() bool {
	pcs := make([]uintptr, 8)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(2, pcs)])
	for {
		f, more := frames.Next()
		if strings.HasSuffix(f.Function, "(*Budget).slot") {
			return true
		}
		if !more {
			return false
		}
	}
}

// TestBudgetRetryReadingAnOlderSlot: a retry whose request read the clock
// just before a slot ended, and was counted after another request's retry
// in the next slot, must still count that retry. It summed the window of
// its own slot, which does not hold the later one, so both were made where
// the pace allowed one.
func TestBudgetRetryReadingAnOlderSlot(t *testing.T) {
	clock := &stallClock{now: time.Unix(1_800_000_000, 0), stalled: make(chan struct{}), release: make(chan struct{})}
	var fail atomic.Bool
	var sent atomic.Int32
	base := roundTripFunc(func(req *http.Request) (*http.Response, error) {
		sent.Add(1)
		status := http.StatusOK
		if fail.Load() {
			status = http.StatusServiceUnavailable
		}
		return &http.Response{StatusCode: status, Header: http.Header{}, Body: http.NoBody, Request: req}, nil
	})
	rt := &retryhttp.Transport{Base: base, Policy: retryhttp.Policy{
		Budget: retryhttp.NewBudget(1, 0), Clock: clock, MaxAttempts: 2, Backoff: noWait,
	}}
	get := func() {
		req, _ := http.NewRequest(http.MethodGet, "http://api.example/", nil)
		resp, err := rt.RoundTrip(req)
		if assert.NoError(t, err) {
			resp.Body.Close()
		}
	}
	for range 10 { // ten successes: the pace allows ⌈1 × 10 / 10⌉ = 1 retry
		get()
	}
	fail.Store(true)
	sent.Store(0)
	clock.stall.Store(true)
	done := make(chan struct{})
	go func() { defer close(done); get() }() // reads the slot, and stalls
	<-clock.stalled
	clock.advance(200 * time.Millisecond) // the next slot
	get()
	close(clock.release)
	<-done
	assert.Equal(t, int32(2+1), sent.Load(), "two requests, one blind retry in the pace")
}

// TestBudgetBoundUnderConcurrency stresses one Budget from many goroutines
// while the fake clock moves, the server failing in spells, and checks the
// window's bound at every 200 ms: the retries of the 9.6 s up to it (a slot
// less than the 9.8 s of the bound, since a retry is recorded a moment after
// it is counted, and the clock moves meanwhile) are at most ratio × the
// successes of the 20 s up to it, plus burst for 10 s after the first
// success, and in all at most ratio × all successes plus burst.
func TestBudgetBoundUnderConcurrency(t *testing.T) {
	t.Parallel() // CPU-bound: it runs beside the other parallel tests, on another core
	const ratio, burst = 0.2, 3
	clock := retrytest.NewClock(t)
	start := clock.Now()
	srv := &answerAt{clock: clock, fail: func(now time.Time) bool {
		return int(now.Sub(start)/(1300*time.Millisecond))%3 != 0
	}}
	var mu sync.Mutex
	var retries []time.Time
	rt := &retryhttp.Transport{Base: srv, Policy: retryhttp.Policy{
		Budget: retryhttp.NewHostBudget(ratio, burst), Clock: clock, MaxAttempts: 4, Backoff: noWait,
		OnRetry: func(retryhttp.RetryEvent) {
			mu.Lock()
			retries = append(retries, clock.Now())
			mu.Unlock()
		},
	}}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 3))
			for range 1500 {
				if rng.IntN(4) == 0 {
					clock.Advance(time.Duration(rng.IntN(20)) * time.Millisecond)
				}
				req, _ := http.NewRequest(http.MethodGet, "http://api.example/", nil)
				resp, err := rt.RoundTrip(req)
				if assert.NoError(t, err) {
					resp.Body.Close()
				}
			}
		})
	}
	wg.Wait()
	end := clock.Now()
	require.NotEmpty(t, srv.oks)
	firstOK := srv.oks[0]
	for _, o := range srv.oks {
		if o.Before(firstOK) {
			firstOK = o
		}
	}
	for at := start; !at.After(end.Add(time.Second)); at = at.Add(200 * time.Millisecond) {
		earned := ratio * float64(countIn(srv.oks, at.Add(-2*retryhttp.BudgetWindow), at))
		if at.Before(firstOK.Add(retryhttp.BudgetWindow + time.Second)) {
			earned += burst
		}
		made := countIn(retries, at.Add(-retryhttp.BudgetWindow+400*time.Millisecond), at)
		require.LessOrEqualf(t, float64(made), earned+1e-9, "%d retries in the 9.6 s up to %v", made, at.Sub(start))
	}
	assert.LessOrEqual(t, float64(len(retries)), ratio*float64(len(srv.oks))+burst+1e-9)
	assert.Greater(t, len(retries), 50, "the failures were retried")
	t.Logf("%d successes, %d retries over %v", len(srv.oks), len(retries), end.Sub(start))
}
