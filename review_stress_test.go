package retryhttp_test

import (
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/b4dedce7/retryhttp"
	"github.com/b4dedce7/retryhttp/retrytest"
)

// bodyLedger counts the closes of every response body Base returned.
type bodyLedger struct {
	mu     sync.Mutex
	closes map[*ledgerBody]int
}

type ledgerBody struct {
	io.ReadCloser
	l *bodyLedger
}

func (b *ledgerBody) Close() error {
	b.l.mu.Lock()
	b.l.closes[b]++
	b.l.mu.Unlock()
	return b.ReadCloser.Close()
}

// TestHedgesHoldsOverridesAndCancelsAtOnceKeepTheContract runs many
// requests at once through one Transport with hedging, quota holds, a
// Throttle and per-request overrides, some cancelled at random, against a
// server that answers at random: each RoundTrip returns exactly one of a
// response and an error, every response body Base returned is closed
// exactly once, and no POST that may not be resent is processed twice.
func TestHedgesHoldsOverridesAndCancelsAtOnceKeepTheContract(t *testing.T) {
	var posts sync.Map // X-Request-Id → *atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if r.Method == http.MethodPost && r.Header.Get("X-Safe") == "" {
			n, _ := posts.LoadOrStore(r.Header.Get("X-Request-Id"), new(atomic.Int32))
			n.(*atomic.Int32).Add(1)
		}
		switch rand.IntN(7) {
		case 0:
			w.WriteHeader(http.StatusServiceUnavailable)
		case 1:
			w.Header().Set("Retry-After", "1")
			w.Header().Set("X-RateLimit-Limit", "5")
			w.Header().Set("X-RateLimit-Remaining", "0")
			w.WriteHeader(http.StatusTooManyRequests)
		case 2:
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusForbidden)
		case 3:
			time.Sleep(time.Duration(rand.IntN(20)) * time.Millisecond)
			_, _ = io.WriteString(w, "slow")
		case 4:
			w.Header().Set("X-RateLimit-Resource", "search")
			w.Header().Set("X-RateLimit-Remaining", strconv.Itoa(rand.IntN(3)))
			w.Header().Set("X-RateLimit-Reset-After", "1")
			_, _ = io.WriteString(w, "ok")
		default:
			_, _ = io.WriteString(w, "ok")
		}
	}))
	t.Cleanup(srv.Close)
	// Every goroutine that follows is this test's: once they have all
	// ended, no body can be closed any more.
	before, goroutines := goleak.IgnoreCurrent(), runtime.NumGoroutine()
	ledger := &bodyLedger{closes: map[*ledgerBody]int{}}
	base := newBase(t)
	var inFlight atomic.Int32 // Base's round trips not yet returned
	counting := roundTripFunc(func(req *http.Request) (*http.Response, error) {
		inFlight.Add(1)
		defer inFlight.Add(-1)
		resp, err := base.RoundTrip(req)
		if err == nil && resp.Body != nil {
			b := &ledgerBody{ReadCloser: resp.Body, l: ledger}
			ledger.mu.Lock()
			ledger.closes[b] = 0
			ledger.mu.Unlock()
			resp.Body = b
		}
		return resp, err
	})
	clock := retrytest.NewClock(t)
	tr := &retryhttp.Transport{Base: counting, Policy: retryhttp.Policy{
		Clock:       clock,
		Hedge:       &retryhttp.Hedge{Delay: 5 * time.Millisecond, Max: 3},
		Throttle:    retryhttp.NewThrottle(2, 30*time.Second),
		Budget:      retryhttp.UnlimitedBudget(),
		LimitKey:    func(r *http.Request) string { return r.URL.Path },
		MaxAttempts: 6,
	}}
	var wg sync.WaitGroup
	for i := range 300 {
		wg.Go(func() {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if rand.IntN(4) == 0 {
				ended := ctx.Done()
				go func() {
					select {
					case <-time.After(time.Duration(rand.IntN(30)) * time.Millisecond):
						cancel()
					case <-ended: // the request has ended: nothing left to cancel
					}
				}()
			}
			switch rand.IntN(4) {
			case 0:
				ctx = retryhttp.NoRetry(ctx)
			case 1:
				ctx = retryhttp.MaxAttempts(ctx, 1+rand.IntN(50))
			}
			method, body := http.MethodGet, io.Reader(nil)
			safe := false
			if i%2 == 1 {
				method, body = http.MethodPost, strings.NewReader("order "+strconv.Itoa(i))
				if rand.IntN(2) == 0 {
					ctx, safe = retryhttp.Idempotent(ctx), true
				}
			}
			path := []string{"/a", "/search", "/orders/" + strconv.Itoa(i)}[rand.IntN(3)]
			req, err := http.NewRequestWithContext(ctx, method, srv.URL+path, body)
			if !assert.NoError(t, err) {
				return
			}
			req.Header.Set("X-Request-Id", strconv.Itoa(i))
			if safe {
				req.Header.Set("X-Safe", "1")
			}
			resp, err := tr.RoundTrip(req)
			if (resp == nil) == (err == nil) {
				t.Errorf("request %d: resp %v and err %v", i, resp, err)
			}
			if resp != nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	// Losers answered after their race close on their own goroutines. Once
	// Base has returned every answer, the connections left idle are closed,
	// and every goroutine the requests left, losers' and connections',
	// must end: no body can be closed after that.
	require.Eventually(t, func() bool { return inFlight.Load() == 0 }, 5*time.Second, time.Millisecond,
		"Base returned every answer")
	base.CloseIdleConnections()
	// Their count is cheap to poll; goleak.Find, which names any left,
	// backs off up to twice as long as the last of them takes to end.
	for end := time.Now().Add(5 * time.Second); runtime.NumGoroutine() > goroutines && time.Now().Before(end); {
		time.Sleep(time.Millisecond)
	}
	require.NoError(t, goleak.Find(before), "goroutines the requests left")
	ledger.mu.Lock()
	defer ledger.mu.Unlock()
	for _, n := range ledger.closes {
		if n != 1 {
			t.Errorf("a response body was closed %d times", n)
		}
	}
	posts.Range(func(id, n any) bool {
		assert.LessOrEqual(t, n.(*atomic.Int32).Load(), int32(1), "POST %s processed more than once", id)
		return true
	})
}
