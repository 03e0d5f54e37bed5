package retryhttp_test

import (
	"context"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/b4dedce7/retryhttp"
)

type review3RT func(*http.Request) (*http.Response, error)

func (f review3RT) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func review3Resp(req *http.Request, code int) *http.Response {
	return &http.Response{StatusCode: code, Header: http.Header{}, Body: http.NoBody, Request: req}
}

// Passing check, not a finding: e608b6a's start (monotonicBase plus
// time.Since) still measures MaxElapsed correctly on the real clock inside
// a testing/synctest bubble, where time.Now has no monotonic reading and the
// fake wall clock starts in 2000: 1 s attempts, 1 s waits, MaxElapsed 5 s
// make exactly 3 attempts.
func TestReview3SanitySynctestMaxElapsed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var n atomic.Int64
		tr := &retryhttp.Transport{
			Base: review3RT(func(req *http.Request) (*http.Response, error) {
				n.Add(1)
				time.Sleep(time.Second)
				return review3Resp(req, 503), nil
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

// Passing check, not a finding: burst + ratio × successes holds per
// destination for NewHostBudget under concurrency (-race), with deposits
// now made after the response and drained buckets dropped as they refill.
func TestReview3SanityHostBoundWithSuccesses(t *testing.T) {
	const ratio, burst = 0.5, 2
	hosts := []string{"http://a.example/", "http://b.example/", "http://c.example/"}
	for round, end := 0, time.Now().Add(1500*time.Millisecond); time.Now().Before(end); round++ {
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
			Base: review3RT(func(req *http.Request) (*http.Response, error) {
				attempts[idx(req.URL.Host)].Add(1)
				if rand.IntN(3) == 0 {
					return review3Resp(req, 200), nil
				}
				return review3Resp(req, 503), nil
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

// FINDING: a request answered 200, returned to the caller as a success with
// a nil error, earns the budget nothing when its context ended (or its
// Cancel channel closed) as the answer came: retrier.retryable checks
// requestLive before it looks at the outcome, so the deposit is skipped.
// Budget's godoc: "Every request answered with a response that is not
// retried (a success: a 200, a 404, ...) adds ratio tokens".
func TestReview3SuccessReturnedAfterContextEndedEarnsNothing(t *testing.T) {
	budget := retryhttp.NewFixedBudget(0.5, 1)
	var cancelNext atomic.Pointer[context.CancelFunc]
	tr := &retryhttp.Transport{
		Base: review3RT(func(req *http.Request) (*http.Response, error) {
			if req.URL.Path == "/dead" {
				return review3Resp(req, 503), nil
			}
			if c := cancelNext.Load(); c != nil {
				(*c)() // the caller's deadline passes as the answer arrives
			}
			return review3Resp(req, 200), nil
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
