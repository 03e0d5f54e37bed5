package retryhttp_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/b4dedce7/retryhttp"
	"github.com/b4dedce7/retryhttp/retrytest"
)

func TestBudgetsThatCanNeverRetryAreInvalid(t *testing.T) {
	tests := []struct {
		name    string
		budget  *retryhttp.Budget
		wantMsg string
	}{
		{"zero Budget", &retryhttp.Budget{}, "zero Budget"},
		{"fixed, positive ratio, no burst", retryhttp.NewFixedBudget(1, 0), "burst 0 can never hold"},
		{"fixed per host, positive ratio, no burst", retryhttp.NewFixedHostBudget(0.5, 0), "use a burst of at least 1"},
		{"per host, negative burst", retryhttp.NewHostBudget(0.1, -1), "burst -1 must not be negative"},
		{"per host, NaN ratio", retryhttp.NewHostBudget(math.NaN(), 1), "ratio NaN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := retryhttp.Policy{Budget: tt.budget}
			err := p.Validate()
			require.Error(t, err)
			assert.Contains(t, err.Error(), "invalid Policy.Budget")
			assert.Contains(t, err.Error(), tt.wantMsg)
			srv := retrytest.NewServer(t)
			_, doErr := (&http.Client{Transport: &retryhttp.Transport{Policy: p}}).Get(srv.URL)
			assert.ErrorContains(t, doErr, tt.wantMsg)
			assert.Zero(t, srv.Count(), "nothing is sent")
		})
	}
	t.Run("NewBudget(0, 0) is the explicit never-retry budget", func(t *testing.T) {
		p := retryhttp.Policy{Budget: retryhttp.NewBudget(0, 0)}
		require.NoError(t, p.Validate())
		srv := retrytest.NewServer(t).Otherwise(retrytest.Unavailable(0))
		client, _ := newClient(t, p)
		resp, _, err := do(t, client, newRequest(t, "GET", srv.URL, nil))
		require.NoError(t, err)
		assert.Equal(t, 503, resp.StatusCode)
		assert.Equal(t, 1, srv.Count())
	})
	t.Run("a burst with no ratio is a fixed allowance", func(t *testing.T) {
		p := retryhttp.Policy{Budget: retryhttp.NewBudget(0, 2)}
		assert.NoError(t, p.Validate())
	})
}

func TestDefaultBudgetIsPerHost(t *testing.T) {
	var deadHits, flakyHits atomic.Int32
	dead := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		deadHits.Add(1)
		w.WriteHeader(503)
	}))
	defer dead.Close()
	flaky := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if flakyHits.Add(1) <= 2 { // its first two attempts fail
			w.WriteHeader(503)
		}
	}))
	defer flaky.Close()
	client, _ := newClient(t, retryhttp.Policy{})

	for range 50 {
		resp, _, err := do(t, client, newRequest(t, "GET", dead.URL, nil))
		require.NoError(t, err)
		require.Equal(t, 503, resp.StatusCode)
	}
	// The dead host spent its burst and earns nothing.
	assert.Equal(t, int32(50+retryhttp.DefaultBudgetBurst), deadHits.Load())
	resp, _, err := do(t, client, newRequest(t, "GET", flaky.URL, nil))
	require.NoError(t, err)
	assert.Equal(t, 200, resp.StatusCode, "the other host has a burst of its own")
	for range 40 {
		resp, _, err := do(t, client, newRequest(t, "GET", flaky.URL, nil))
		require.NoError(t, err)
		assert.Equal(t, 200, resp.StatusCode)
	}
	before := deadHits.Load()
	for range 10 {
		resp, _, err := do(t, client, newRequest(t, "GET", dead.URL, nil))
		require.NoError(t, err)
		assert.Equal(t, 503, resp.StatusCode)
	}
	assert.Equal(t, int32(10), deadHits.Load()-before, "the dead host earned no retry")
}

// always503 answers every request 503 without a network.
var always503 = roundTripFunc(func(req *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: 503, Header: http.Header{}, Body: http.NoBody, Request: req}, nil
})

func TestHostBudgetDestinations(t *testing.T) {
	budget := retryhttp.NewHostBudget(0, 3)
	client := &http.Client{Transport: &retryhttp.Transport{Base: always503, Policy: retryhttp.Policy{
		Budget: budget, MaxAttempts: 2, Clock: retrytest.NewClock(t),
	}}}
	for _, url := range []string{"https://API.example.com/a", "https://api.example.com:443/b", "HTTPS://api.EXAMPLE.com/c"} {
		resp, err := client.Get(url)
		require.NoError(t, err)
		resp.Body.Close()
	}
	for _, host := range []string{"https://api.example.com", "https://API.example.com:443", "https://api.example.com/"} {
		assert.Equal(t, 0.0, budget.TokensFor(host), host)
	}
	assert.Equal(t, 3.0, budget.TokensFor("http://api.example.com"), "another scheme and port is another destination")
	assert.Equal(t, 3.0, budget.TokensFor("https://api.example.com:8443"))
	assert.Equal(t, 3.0, budget.TokensFor("https://other.example.com"))
	assert.Equal(t, 0.0, budget.Tokens(), "the fewest tokens of any destination")
	assert.True(t, math.IsNaN(budget.TokensFor("not a url")))

	single := retryhttp.NewBudget(0, 7)
	assert.Equal(t, 7.0, single.TokensFor("https://anything.example"), "one bucket serves every destination")
	assert.True(t, math.IsInf(retryhttp.UnlimitedBudget().TokensFor("https://x.example"), 1))
	assert.Equal(t, 3.0, retryhttp.NewHostBudget(0.1, 3).Tokens(), "no drained destination: burst")
}

func TestHostBudgetIsSharedBetweenTransports(t *testing.T) {
	budget := retryhttp.NewHostBudget(0, 2)
	p := retryhttp.Policy{Budget: budget, MaxAttempts: 10, Clock: retrytest.NewClock(t)}
	var attemptsA, attemptsB atomic.Int32
	counting := func(n *atomic.Int32) http.RoundTripper {
		return roundTripFunc(func(req *http.Request) (*http.Response, error) {
			n.Add(1)
			return always503.RoundTrip(req)
		})
	}
	a := &http.Client{Transport: &retryhttp.Transport{Base: counting(&attemptsA), Policy: p}}
	b := &http.Client{Transport: &retryhttp.Transport{Base: counting(&attemptsB), Policy: p}}
	for _, c := range []*http.Client{a, b} {
		resp, err := c.Get("http://shared.example/")
		require.NoError(t, err)
		resp.Body.Close()
	}
	assert.EqualValues(t, 3, attemptsA.Load(), "the first Transport spent the burst of 2")
	assert.EqualValues(t, 1, attemptsB.Load(), "the second found it spent")
	assert.Equal(t, 0.0, budget.TokensFor("http://shared.example"))
}

func TestHostBudgetMemoryIsBounded(t *testing.T) {
	t.Parallel() // CPU-bound: it runs beside the other parallel tests, on another core
	budget := retryhttp.NewHostBudget(0.5, 1)
	client := &http.Client{Transport: &retryhttp.Transport{Base: always503, Policy: retryhttp.Policy{
		Budget: budget, MaxAttempts: 2, Clock: retrytest.NewClock(t),
	}}}
	const hosts = 3 * retryhttp.MaxHostBuckets
	for i := range hosts {
		resp, err := client.Get(fmt.Sprintf("http://h%d.example/", i))
		require.NoError(t, err)
		resp.Body.Close()
	}
	// Which destinations are kept is checked inside the package
	// (TestHostBudgetKeepsTheMostRecentlyFailed): from outside, a forgotten
	// destination that spent its burst reads as a kept one does.
	assert.Equal(t, 0.0, budget.TokensFor("http://h0.example"), "an evicted destination does not get back the burst it spent")
	assert.Equal(t, 0.0, budget.TokensFor(fmt.Sprintf("http://h%d.example", hosts-1)), "a kept one keeps its count")
}

// A destination whose budget was forgotten to make room for others does not
// get back the burst it had spent: the bound "burst in all while it is open"
// holds however many destinations a program talks to.
func TestEvictedDestinationDoesNotGetItsSpentBurstBack(t *testing.T) {
	t.Parallel() // CPU-bound: it runs beside the other parallel tests, on another core
	for name, budget := range map[string]*retryhttp.Budget{
		"NewHostBudget":      retryhttp.NewHostBudget(0.5, 1),
		"NewFixedHostBudget": retryhttp.NewFixedHostBudget(0.5, 1),
	} {
		t.Run(name, func(t *testing.T) {
			var first atomic.Int64
			base := roundTripFunc(func(req *http.Request) (*http.Response, error) {
				if req.URL.Host == "h0.example" {
					first.Add(1)
				}
				return always503.RoundTrip(req)
			})
			client := &http.Client{Transport: &retryhttp.Transport{Base: base, Policy: retryhttp.Policy{
				Budget: budget, MaxAttempts: 2, Clock: retrytest.NewClock(t),
			}}}
			get := func(i int) {
				resp, err := client.Get(fmt.Sprintf("http://h%d.example/", i))
				require.NoError(t, err)
				resp.Body.Close()
			}
			get(0)
			require.EqualValues(t, 2, first.Load(), "the burst paid for one retry")
			for i := 1; i <= 2*retryhttp.MaxHostBuckets; i++ {
				get(i) // each spends its own burst, and h0 is forgotten
			}
			assert.Equal(t, 0.0, budget.TokensFor("http://h0.example"), "forgotten, not refilled")
			get(0)
			assert.EqualValues(t, 3, first.Load(), "no retry: the burst was spent before h0 was forgotten")
		})
	}
}

// always503Base answers every request with an empty 503 at once, and counts
// the attempts.
func always503Base(count *atomic.Int64) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		count.Add(1)
		if req.Body != nil {
			req.Body.Close()
		}
		return &http.Response{StatusCode: 503, Header: http.Header{}, Body: http.NoBody, Request: req}, nil
	})
}

// frozenClock never moves and never sleeps.
type frozenClock struct{}

func (frozenClock) Now() time.Time { return time.Unix(1_800_000_000, 0) }
func (frozenClock) Sleep(ctx context.Context, d time.Duration) error {
	return ctx.Err()
}

// The documented bound of a Budget holds under concurrency: at most burst +
// ratio × requests retries, per destination for NewHostBudget, although its
// buckets live in a map that is copied on write and a full bucket is dropped
// from it while a concurrent withdraw may still hold it.
func TestHostBudgetBoundHoldsUnderConcurrency(t *testing.T) {
	t.Parallel() // CPU-bound: it runs beside the other parallel tests, on another core
	const (
		ratio    = 0.5 // two deposits fill a drained bucket, which is then dropped
		burst    = 1
		workers  = 16
		requests = 2500 // per worker and round
	)
	// Rounds with a fresh Budget until the bound breaks, for a few seconds
	// at most; one round under -short.
	for round, end := 0, time.Now().Add(4*time.Second); round == 0 || !testing.Short() && time.Now().Before(end); round++ {
		var attempts atomic.Int64
		tr := &retryhttp.Transport{Base: always503Base(&attempts), Policy: retryhttp.Policy{
			MaxAttempts: 3,
			Budget:      retryhttp.NewHostBudget(ratio, burst),
			Backoff:     func() backoff.BackOff { return &backoff.ZeroBackOff{} },
			Clock:       frozenClock{},
		}}
		var wg sync.WaitGroup
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < requests; i++ {
					req, _ := http.NewRequest("GET", "http://shared.example/", nil)
					if resp, err := tr.RoundTrip(req); err == nil {
						resp.Body.Close()
					}
				}
			}()
		}
		wg.Wait()
		total := int64(workers * requests)
		retries := attempts.Load() - total
		bound := int64(burst) + int64(ratio*float64(total))
		if retries > bound {
			t.Fatalf("round %d: %d retries for %d requests to one destination: more than burst + ratio × requests = %d", round, retries, total, bound)
		}
	}
}

// burst + ratio × successes holds per destination for NewHostBudget under
// concurrency, with deposits made after the response and drained buckets
// dropped as they refill.
func TestHostBudgetBoundHoldsWithSuccessesUnderConcurrency(t *testing.T) {
	t.Parallel() // CPU-bound: it runs beside the other parallel tests, on another core
	const ratio, burst = 0.5, 2
	hosts := []string{"http://a.example/", "http://b.example/", "http://c.example/"}
	for round, end := 0, time.Now().Add(1500*time.Millisecond); round == 0 || !testing.Short() && time.Now().Before(end); round++ {
		var attempts, successes, requests [3]atomic.Int64
		idx := func(h string) int {
			for i, x := range hosts {
				if "http://"+h+"/" == x {
					return i
				}
			}
			panic(h)
		}
		tr := &retryhttp.Transport{
			Base: roundTripFunc(func(req *http.Request) (*http.Response, error) {
				attempts[idx(req.URL.Host)].Add(1)
				if rand.IntN(3) == 0 {
					return respond(req, 200), nil
				}
				return respond(req, 503), nil
			}),
			Policy: retryhttp.Policy{MaxAttempts: 3, Budget: retryhttp.NewHostBudget(ratio, burst),
				Backoff: func() backoff.BackOff { return &backoff.ZeroBackOff{} }},
		}
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for range 500 {
					i := rand.IntN(3)
					req, _ := http.NewRequest("GET", hosts[i], nil)
					requests[i].Add(1)
					resp, err := tr.RoundTrip(req)
					require.NoError(t, err)
					if resp.StatusCode == 200 {
						successes[i].Add(1)
					}
				}
			})
		}
		wg.Wait()
		for i := range hosts {
			retries := attempts[i].Load() - requests[i].Load()
			bound := float64(burst) + ratio*float64(successes[i].Load())
			if float64(retries) > bound {
				t.Fatalf("round %d host %d: %d retries > %v", round, i, retries, bound)
			}
		}
	}
}

// A 200 returned to the caller with a nil error earns the budget its ratio
// even when the request's context ended as the answer came. Budget's godoc:
// "Every request answered with a response that is not retried (a success: a
// 200, a 404, ...) adds ratio tokens".
func TestSuccessReturnedAsTheContextEndsEarnsTheBudget(t *testing.T) {
	budget := retryhttp.NewFixedBudget(0.5, 1)
	var cancelNext atomic.Pointer[context.CancelFunc]
	tr := &retryhttp.Transport{
		Base: roundTripFunc(func(req *http.Request) (*http.Response, error) {
			if req.URL.Path == "/dead" {
				return respond(req, 503), nil
			}
			if c := cancelNext.Load(); c != nil {
				(*c)() // the caller's deadline passes as the answer arrives
			}
			return respond(req, 200), nil
		}),
		Policy: retryhttp.Policy{MaxAttempts: 2, Budget: budget,
			Backoff: func() backoff.BackOff { return &backoff.ZeroBackOff{} }},
	}
	req, _ := http.NewRequest("GET", "http://x.example/dead", nil)
	_, err := tr.RoundTrip(req)
	require.NoError(t, err)
	require.Equal(t, 0.0, budget.Tokens(), "the burst is spent")

	ctx, cancel := context.WithCancel(context.Background())
	cancelNext.Store(&cancel)
	req, _ = http.NewRequestWithContext(ctx, "GET", "http://x.example/ok", nil)
	resp, err := tr.RoundTrip(req)
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode, "the caller gets the success")
	assert.Equal(t, 0.5, budget.Tokens(), "a 200 that is not retried earns ratio")
}
