package retryhttp_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
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

// The documented bound of a Budget: at most burst + ratio × requests
// retries, per destination for NewHostBudget. Its buckets live in a map that
// is copied on write, and a full bucket is dropped from it (dropFull after a
// deposit fills it, or findOrAdd's copy) while a concurrent withdraw may
// still hold it: that withdraw takes its token from an orphan, and the next
// retry to the same destination starts again from a fresh full bucket. The
// same load through NewBudget stays within the bound.
func TestReviewHostBudgetBoundHoldsUnderConcurrency(t *testing.T) {
	const (
		ratio    = 0.5 // two deposits fill a drained bucket, which is then dropped
		burst    = 1
		workers  = 16
		requests = 2500 // per worker and round
	)
	// Rounds with a fresh Budget until the bound breaks, for a few seconds
	// at most.
	for round, end := 0, time.Now().Add(4*time.Second); time.Now().Before(end); round++ {
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

// frozenClock never moves and never sleeps.
type frozenClock struct{}

func (frozenClock) Now() time.Time { return time.Unix(1_800_000_000, 0) }
func (frozenClock) Sleep(ctx context.Context, d time.Duration) error {
	return ctx.Err()
}

// A discarded response whose body stalls is never closed: the drain
// goroutine blocks in Read on the caller's context (or, with
// AttemptTimeout, on an attempt context that only Close releases), so the
// connection stays checked out until the server gives up on it. With
// MaxConnsPerHost the retry then waits for that very connection, and the
// request stalls for as long as the server holds the body; without it, a
// goroutine and a connection leak per such retry.
func TestReviewStalledDiscardedBodyIsClosed(t *testing.T) {
	// An attempt with a context of its own (a retry, or any attempt under
	// AttemptTimeout) has its stalled body set free when the drain gives
	// up. A first attempt without AttemptTimeout has none, so that the
	// happy path allocates nothing: that trade-off is documented on discard.
	tests := []struct {
		maxConnsPerHost int
		attemptTimeout  time.Duration
		stallOn         int32
	}{
		{1, 5 * time.Second, 1},
		{0, 5 * time.Second, 1},
		{1, 0, 2},
		{0, 0, 2},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("MaxConnsPerHost=%d,AttemptTimeout=%v,stall on attempt %d", tt.maxConnsPerHost, tt.attemptTimeout, tt.stallOn), func(t *testing.T) {
			var hits atomic.Int32
			stalledGone := make(chan struct{})
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n := hits.Add(1)
				switch {
				case n < tt.stallOn:
					w.WriteHeader(http.StatusServiceUnavailable)
					return
				case n > tt.stallOn:
					_, _ = io.WriteString(w, "ok")
					return
				}
				defer close(stalledGone)
				w.Header().Set("Content-Length", "1000")
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = io.WriteString(w, "x")
				w.(http.Flusher).Flush()
				select { // the body stalls until the client lets go
				case <-r.Context().Done():
				case <-time.After(2 * time.Second):
				}
			}))
			defer srv.Close()
			base := &http.Transport{MaxConnsPerHost: tt.maxConnsPerHost}
			defer base.CloseIdleConnections()
			client, _ := newClient(t, retryhttp.Policy{
				MaxAttempts:    3,
				Budget:         retryhttp.UnlimitedBudget(),
				AttemptTimeout: tt.attemptTimeout,
				Backoff:        func() backoff.BackOff { return &backoff.ZeroBackOff{} },
			})
			client.Transport.(*retryhttp.Transport).Base = base

			start := time.Now()
			resp, body, err := do(t, client, newRequest(t, "GET", srv.URL, nil))
			took := time.Since(start)

			require.NoError(t, err)
			assert.Equal(t, 200, resp.StatusCode)
			assert.Equal(t, "ok", body)
			assert.Less(t, took, time.Second, "the retry waited for the stalled body's connection")
			select {
			case <-stalledGone:
			case <-time.After(time.Second):
				t.Error("the discarded body's connection is still open a second after RoundTrip returned")
			}
			<-stalledGone // let the handler end before the server closes
		})
	}
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

// Policy.OnRetry: "its time counts against the wait". drainAndWait deducts
// the time since the decision only for the package's own realClock; any
// other Clock sleeps the whole wait after OnRetry and the drain, so a retry
// that fitted the deadline when decided and when re-checked is slept past
// it: the caller gets a context error after sleeping, where the retry
// should have been sent (or, had it not fitted, ErrDeadline at once).
func TestReviewOnRetryTimeCountsAgainstTheWaitOfAnyRealTimeClock(t *testing.T) {
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
		Backoff: constant(400 * time.Millisecond),
		OnRetry: func(retryhttp.RetryEvent) { time.Sleep(250 * time.Millisecond) },
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 600*time.Millisecond)
	defer cancel()
	req := newRequest(t, "GET", "http://example.invalid/", nil).WithContext(ctx)

	resp, err := tr.RoundTrip(req)

	require.NoError(t, err, "the retry, due 400 ms after the decision, fits a 600 ms deadline")
	assert.Equal(t, 200, resp.StatusCode)
	assert.EqualValues(t, 2, calls.Load())
}

// http.Transport answers a request with a nil URL with an error ("http: nil
// Request.URL"), and so must a RoundTripper that wraps it. Once a
// NewHostBudget holds a drained bucket (any destination that has retried),
// deposit hashes req.URL before anything checks it, and RoundTrip panics.
func TestReviewNilURLIsAnErrorNotAPanic(t *testing.T) {
	var calls atomic.Int32
	base := roundTripFunc(func(req *http.Request) (*http.Response, error) {
		calls.Add(1)
		if req.URL == nil {
			return nil, errors.New("http: nil Request.URL")
		}
		return &http.Response{StatusCode: 503, Header: http.Header{}, Body: http.NoBody, Request: req}, nil
	})
	tr := &retryhttp.Transport{Base: base, Policy: retryhttp.Policy{
		MaxAttempts: 2,
		Clock:       retrytest.NewClock(t),
	}}
	// Another destination retries once: the default per-host Budget now
	// holds its bucket.
	resp, err := tr.RoundTrip(newRequest(t, "GET", "http://a.example/", nil))
	require.NoError(t, err)
	resp.Body.Close()

	var panicked any
	func() {
		defer func() { panicked = recover() }()
		resp, err = tr.RoundTrip(&http.Request{Method: "GET", Header: http.Header{}})
	}()

	require.Nil(t, panicked, "RoundTrip panicked on a request with a nil URL")
	assert.Nil(t, resp)
	assert.Error(t, err)
}

// A 101 Switching Protocols body from net/http is an io.ReadWriteCloser
// with CloseWrite, which httputil.ReverseProxy uses to pass a half-close
// through an upgraded connection (switchProtocolCopier). releaseOnEnd keeps
// Write but drops CloseWrite, so with AttemptTimeout set a proxy tears the
// tunnel down on the first half-close instead of passing it on.
func TestReviewUpgradeBodyKeepsCloseWrite(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: review\r\n\r\n")
		_ = brw.Flush()
		_, _ = io.Copy(io.Discard, conn) // until the client half-closes or closes
	}))
	defer srv.Close()
	for _, attemptTimeout := range []time.Duration{0, 5 * time.Second} {
		t.Run(fmt.Sprint("AttemptTimeout=", attemptTimeout), func(t *testing.T) {
			client, _ := newClient(t, retryhttp.Policy{AttemptTimeout: attemptTimeout})
			req := newRequest(t, "GET", srv.URL, nil)
			req.Header.Set("Connection", "Upgrade")
			req.Header.Set("Upgrade", "review")

			resp, err := client.Do(req)

			require.NoError(t, err)
			defer resp.Body.Close()
			require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
			_, isRWC := resp.Body.(io.ReadWriteCloser)
			assert.True(t, isRWC)
			_, canCloseWrite := resp.Body.(interface{ CloseWrite() error })
			assert.True(t, canCloseWrite, "the upgraded body lost CloseWrite")
		})
	}
}

// GitHub sends X-RateLimit-Limit/-Remaining/-Reset on every API response,
// the reset being the end of the hourly window however much quota is
// left. A transient 503 that carries them with quota left (Remaining 4999)
// has not asked for any wait, yet the Transport takes the window's reset,
// up to an hour away, as the server's wait: ErrRetryAfterTooLong with the
// defaults, so the 503 is never retried (or, with MaxRetryAfter raised,
// is waited on for up to an hour). The IETF RateLimit field is read as a
// wait only for an exhausted policy (r=0); the X- fields are not held to
// the same rule.
func TestReviewRateLimitResetWithQuotaLeftIsNotAWait(t *testing.T) {
	clock := retrytest.NewClock(t)
	var calls atomic.Int32
	base := roundTripFunc(func(req *http.Request) (*http.Response, error) {
		if calls.Add(1) == 1 {
			h := http.Header{}
			h.Set("X-RateLimit-Limit", "5000")
			h.Set("X-RateLimit-Remaining", "4999")
			h.Set("X-RateLimit-Used", "1")
			h.Set("X-RateLimit-Reset", strconv.FormatInt(clock.Now().Add(50*time.Minute).Unix(), 10))
			return &http.Response{StatusCode: 503, Header: h, Body: http.NoBody, Request: req}, nil
		}
		return &http.Response{StatusCode: 200, Header: http.Header{}, Body: http.NoBody, Request: req}, nil
	})
	var hook giveUps
	tr := &retryhttp.Transport{Base: base, Policy: retryhttp.Policy{Clock: clock, OnGiveUp: hook.record}}

	resp, err := tr.RoundTrip(newRequest(t, "GET", "https://api.github.example/repos/o/r", nil))

	require.NoError(t, err)
	resp.Body.Close()
	for _, ev := range hook.all() {
		t.Logf("gave up: %v (wait %v from %s)", ev.Reason, ev.RetryAfter, ev.RetryAfterHeader)
	}
	assert.Equal(t, 200, resp.StatusCode, "a 503 with quota left was not retried")
	assert.EqualValues(t, 2, calls.Load())
}
