package retryhttp_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/b4dedce7/retryhttp"
	"github.com/b4dedce7/retryhttp/retrytest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newBase returns a fresh http.Transport for one test, whose idle
// connections are closed when the test ends so that goleak sees no
// connection goroutines left behind.
func newBase(t testing.TB) *http.Transport {
	base := &http.Transport{}
	t.Cleanup(base.CloseIdleConnections)
	return base
}

// newClient returns a client whose Transport retries with p over a fresh
// base transport, with a fake clock unless p has a clock of its own.
func newClient(t testing.TB, p retryhttp.Policy) (*http.Client, *retrytest.Clock) {
	var clock *retrytest.Clock
	if p.Clock == nil {
		clock = retrytest.NewClock(t)
		p.Clock = clock
	}
	return &http.Client{Transport: &retryhttp.Transport{Base: newBase(t), Policy: p}}, clock
}

// do sends req and reads the whole response body.
func do(t testing.TB, client *http.Client, req *http.Request) (*http.Response, string, error) {
	t.Helper()
	resp, err := client.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	body, readErr := io.ReadAll(resp.Body)
	require.NoError(t, readErr)
	return resp, string(body), nil
}

func newRequest(t testing.TB, method, url string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	require.NoError(t, err)
	return req
}

// Behaviour 1: what is retried.
func TestRetriesOnlyComeBackLaterStatuses(t *testing.T) {
	tests := []struct {
		status    int
		retryable func(*http.Response, error) bool
		wantCount int
	}{
		{http.StatusServiceUnavailable, nil, 2},
		{http.StatusTooManyRequests, nil, 2},
		{http.StatusInternalServerError, nil, 1},
		{http.StatusBadGateway, nil, 1},
		{http.StatusGatewayTimeout, nil, 1},
		{http.StatusNotFound, nil, 1},
		{http.StatusBadGateway, retryhttp.RetryStatuses(502, 504), 2},
		{http.StatusGatewayTimeout, retryhttp.RetryStatuses(502, 504), 2},
		{http.StatusServiceUnavailable, retryhttp.RetryStatuses(502, 504), 1},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d", tt.status), func(t *testing.T) {
			srv := retrytest.NewServer(t, retrytest.Reply(tt.status, "first"), retrytest.OK("second"))
			client, _ := newClient(t, retryhttp.Policy{Retryable: tt.retryable})

			resp, body, err := do(t, client, newRequest(t, "GET", srv.URL, nil))

			require.NoError(t, err)
			assert.Equal(t, tt.wantCount, srv.Count())
			if tt.wantCount == 2 {
				assert.Equal(t, http.StatusOK, resp.StatusCode)
				assert.Equal(t, "second", body)
			} else {
				assert.Equal(t, tt.status, resp.StatusCode)
				assert.Equal(t, "first", body)
			}
		})
	}
}

func TestCustomRetryableRule(t *testing.T) {
	srv := retrytest.NewServer(t, retrytest.Reply(500, "x"), retrytest.Reply(500, "y"), retrytest.OK("z"))
	client, _ := newClient(t, retryhttp.Policy{Retryable: func(resp *http.Response, err error) bool {
		return retryhttp.DefaultRetryable(resp, err) || (resp != nil && resp.StatusCode == 500)
	}})
	resp, body, err := do(t, client, newRequest(t, "GET", srv.URL, nil))
	require.NoError(t, err)
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "z", body)
	assert.Equal(t, 3, srv.Count())
}

// countRetries returns a Policy hook that counts the retries made.
func countRetries(n *atomic.Int32) func(retryhttp.RetryEvent) {
	return func(retryhttp.RetryEvent) { n.Add(1) }
}

func TestRetriesBrokenConnections(t *testing.T) {
	t.Run("refused", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		url := srv.URL
		srv.Close() // nothing listens on its port now

		var retries atomic.Int32
		client, _ := newClient(t, retryhttp.Policy{MaxAttempts: 3, OnRetry: countRetries(&retries)})
		_, err := client.Get(url)

		require.Error(t, err)
		assert.ErrorIs(t, err, syscall.ECONNREFUSED)
		assert.Contains(t, err.Error(), "3 attempts")
		assert.EqualValues(t, 2, retries.Load())
	})
	for _, fault := range []string{"reset", "close"} {
		t.Run(fault, func(t *testing.T) {
			var hits atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if hits.Add(1) == 1 {
					killConnection(t, w, fault == "reset")
					return
				}
				_, _ = io.WriteString(w, "ok")
			}))
			defer srv.Close()
			client, _ := newClient(t, retryhttp.Policy{})

			resp, body, err := do(t, client, newRequest(t, "GET", srv.URL, nil))

			require.NoError(t, err)
			assert.Equal(t, 200, resp.StatusCode)
			assert.Equal(t, "ok", body)
			assert.EqualValues(t, 2, hits.Load())
		})
	}
}

// killConnection hijacks the connection of w and closes it without an
// answer, with a TCP reset if reset is set.
func killConnection(t testing.TB, w http.ResponseWriter, reset bool) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if !assert.NoError(t, err) {
		return
	}
	if reset {
		_ = conn.(*net.TCPConn).SetLinger(0)
	}
	conn.Close()
}

func TestNeverRetries(t *testing.T) {
	t.Run("cancelled context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			cancel()
			<-r.Context().Done()
		}))
		defer srv.Close()
		var retries atomic.Int32
		client, _ := newClient(t, retryhttp.Policy{OnRetry: countRetries(&retries)})

		_, err := client.Do(newRequest(t, "GET", srv.URL, nil).WithContext(ctx))

		assert.ErrorIs(t, err, context.Canceled)
		assert.Zero(t, retries.Load())
	})
	t.Run("context cancelled after a 503", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			cancel()
			w.WriteHeader(503)
		}))
		defer srv.Close()
		var retries atomic.Int32
		client, _ := newClient(t, retryhttp.Policy{OnRetry: countRetries(&retries)})

		resp, err := client.Do(newRequest(t, "GET", srv.URL, nil).WithContext(ctx))
		if err == nil {
			resp.Body.Close()
		}
		assert.Zero(t, retries.Load())
	})
	t.Run("TLS verification failure", func(t *testing.T) {
		srv := httptest.NewTLSServer(http.NotFoundHandler())
		defer srv.Close()
		srv.Config.ErrorLog = quietLog()
		var retries atomic.Int32
		client, _ := newClient(t, retryhttp.Policy{OnRetry: countRetries(&retries)})

		_, err := client.Get(srv.URL) // the test server's certificate is not trusted

		require.Error(t, err)
		assert.Contains(t, err.Error(), "certificate")
		assert.Zero(t, retries.Load())
	})
	t.Run("unsupported scheme", func(t *testing.T) {
		var retries atomic.Int32
		client, _ := newClient(t, retryhttp.Policy{OnRetry: countRetries(&retries)})
		_, err := client.Get("gopher://127.0.0.1/")
		require.Error(t, err)
		assert.Contains(t, err.Error(), "unsupported protocol scheme")
		assert.Zero(t, retries.Load())
	})
	t.Run("malformed request", func(t *testing.T) {
		srv := retrytest.NewServer(t)
		var retries atomic.Int32
		client, _ := newClient(t, retryhttp.Policy{OnRetry: countRetries(&retries)})
		req := newRequest(t, "GET", srv.URL, nil)
		req.Header["Bad Name"] = []string{"x"}
		_, err := client.Do(req)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "invalid header field name")
		assert.Zero(t, retries.Load())
		assert.Zero(t, srv.Count())
	})
}

// Behaviour 2: only what is safe to send again.
func TestRetriesOnlyIdempotentReplayableRequests(t *testing.T) {
	bodyOf := func(s string) func() io.Reader { return func() io.Reader { return strings.NewReader(s) } }
	unreplayable := func() io.Reader { return io.NopCloser(strings.NewReader("once")) } // no GetBody
	tests := []struct {
		name       string
		method     string
		body       func() io.Reader
		header     http.Header
		idempotent func(*http.Request) bool
		wantCount  int
	}{
		{"GET", "GET", nil, nil, nil, 2},
		{"HEAD", "HEAD", nil, nil, nil, 2},
		{"OPTIONS", "OPTIONS", nil, nil, nil, 2},
		{"TRACE", "TRACE", nil, nil, nil, 2},
		{"PUT with body", "PUT", bodyOf("payload"), nil, nil, 2},
		{"DELETE", "DELETE", nil, nil, nil, 2},
		{"POST", "POST", bodyOf("charge"), nil, nil, 1},
		{"PATCH", "PATCH", bodyOf("edit"), nil, nil, 1},
		{"POST without body", "POST", nil, nil, nil, 1},
		{"POST with Idempotency-Key", "POST", bodyOf("charge"), http.Header{"Idempotency-Key": {"k1"}}, nil, 2},
		{"POST with X-Idempotency-Key", "POST", bodyOf("charge"), http.Header{"X-Idempotency-Key": {"k1"}}, nil, 2},
		{"POST with empty Idempotency-Key", "POST", bodyOf("charge"), http.Header{"Idempotency-Key": {""}}, nil, 2},
		{"POST with nil Idempotency-Key", "POST", bodyOf("charge"), http.Header{"Idempotency-Key": nil}, nil, 2},
		{"POST with nil X-Idempotency-Key", "POST", bodyOf("charge"), http.Header{"X-Idempotency-Key": nil}, nil, 2},
		{"POST with a non-canonical key", "POST", bodyOf("charge"), http.Header{"idempotency-key": {"k"}}, nil, 1},
		{"PUT with unreplayable body", "PUT", unreplayable, nil, nil, 1},
		{"POST with key and unreplayable body", "POST", unreplayable, http.Header{"Idempotency-Key": {"k"}}, nil, 1},
		{"POST widened by the Policy", "POST", bodyOf("safe"), nil, func(*http.Request) bool { return true }, 2},
		{"GET narrowed by the Policy", "GET", nil, nil, func(*http.Request) bool { return false }, 1},
		{"widened, but unreplayable", "POST", unreplayable, nil, func(*http.Request) bool { return true }, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := retrytest.NewServer(t, retrytest.Unavailable(0), retrytest.OK("done"))
			client, _ := newClient(t, retryhttp.Policy{Idempotent: tt.idempotent})
			var body io.Reader
			if tt.body != nil {
				body = tt.body()
			}
			req := newRequest(t, tt.method, srv.URL, body)
			for k, v := range tt.header {
				req.Header[k] = v
			}

			resp, _, err := do(t, client, req)

			require.NoError(t, err)
			assert.Equal(t, tt.wantCount, srv.Count())
			if tt.wantCount == 1 {
				assert.Equal(t, 503, resp.StatusCode, "a request not retried gets its response as it is")
			} else {
				assert.Equal(t, 200, resp.StatusCode)
			}
		})
	}
}

func TestReplaysTheSameBody(t *testing.T) {
	payload := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	srv := retrytest.NewServer(t, retrytest.Unavailable(0), retrytest.Drop(), retrytest.OK("stored"))
	client, _ := newClient(t, retryhttp.Policy{})

	resp, body, err := do(t, client, newRequest(t, "PUT", srv.URL+"/obj", bytes.NewReader(payload)))

	require.NoError(t, err)
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "stored", body)
	reqs := srv.Requests()
	require.GreaterOrEqual(t, len(reqs), 3)
	for i, r := range reqs {
		assert.Equal(t, "PUT", r.Method, "attempt %d", i+1)
		assert.True(t, bytes.Equal(payload, r.Body), "attempt %d sent a different body (%d bytes)", i+1, len(r.Body))
	}
}

func TestGetBodyFailureIsReported(t *testing.T) {
	srv := retrytest.NewServer(t, retrytest.Unavailable(0), retrytest.OK("done"))
	client, _ := newClient(t, retryhttp.Policy{})
	req := newRequest(t, "PUT", srv.URL, strings.NewReader("x"))
	errGone := errors.New("the source is gone")
	req.GetBody = func() (io.ReadCloser, error) { return nil, errGone }

	_, err := client.Do(req)

	assert.ErrorIs(t, err, errGone)
	assert.Contains(t, err.Error(), "attempt 2")
	assert.Equal(t, 1, srv.Count())
}

// Behaviour 4: how long to wait.
func TestWaitsAsTheServerSays(t *testing.T) {
	tests := []struct {
		name   string
		answer retrytest.Answer
		want   time.Duration
	}{
		{"delta-seconds", retrytest.Unavailable(20 * time.Second), 20 * time.Second},
		{"IMF-fixdate", retrytest.UnavailableUntil(20 * time.Second), 20 * time.Second},
		{"RFC 850 date", withLayout(retrytest.UnavailableUntil(20*time.Second), retrytest.LayoutRFC850), 20 * time.Second},
		{"asctime date", withLayout(retrytest.UnavailableUntil(20*time.Second), retrytest.LayoutASCTime), 20 * time.Second},
		{"429 with delta-seconds", retrytest.TooManyRequests(3 * time.Second), 3 * time.Second},
		{"zero", retrytest.Reply(503, "").WithHeader("Retry-After", "0"), 0},
		{"a date in the past", retrytest.Reply(503, "").WithHeader("Retry-After", "Sun, 06 Nov 1994 08:49:37 GMT"), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := retrytest.NewClock(t)
			srv := retrytest.NewServer(t, tt.answer, retrytest.OK("done")).UseClock(clock)
			client, _ := newClient(t, retryhttp.Policy{Clock: clock})

			resp, _, err := do(t, client, newRequest(t, "GET", srv.URL, nil))

			require.NoError(t, err)
			assert.Equal(t, 200, resp.StatusCode)
			waits := clock.Waits()
			require.Len(t, waits, 1)
			assert.GreaterOrEqual(t, waits[0], tt.want, "never earlier than the server said")
			assert.Less(t, waits[0], tt.want+max(tt.want/5, time.Second), "at most a fifth more, or 1 s")
		})
	}
}

func withLayout(a retrytest.Answer, layout string) retrytest.Answer {
	a.DateLayout = layout
	return a
}

func TestRetryAfterJitterSpreadsClients(t *testing.T) {
	clock := retrytest.NewClock(t)
	const clients = 200
	srv := retrytest.NewServer(t).Otherwise(retrytest.Unavailable(10 * time.Second))
	for range clients {
		// A client each: one Transport would hold its later requests
		// until the reset the first 503 named.
		client, _ := newClient(t, retryhttp.Policy{Clock: clock, MaxAttempts: 2, Budget: retryhttp.UnlimitedBudget()})
		resp, _, err := do(t, client, newRequest(t, "GET", srv.URL, nil))
		require.NoError(t, err)
		require.Equal(t, 503, resp.StatusCode)
	}
	waits := clock.Waits()
	require.Len(t, waits, clients)
	distinct := map[time.Duration]bool{}
	var lo, hi = waits[0], waits[0]
	for _, w := range waits {
		distinct[w] = true
		lo, hi = min(lo, w), max(hi, w)
	}
	assert.GreaterOrEqual(t, lo, 10*time.Second)
	assert.LessOrEqual(t, hi, 12*time.Second)
	assert.Greater(t, hi-lo, time.Second, "200 clients' waits should spread over most of the 2 s of jitter")
	assert.Greater(t, len(distinct), clients/2)
}

func TestBackoffWithoutRetryAfter(t *testing.T) {
	t.Run("default schedule", func(t *testing.T) {
		srv := retrytest.NewServer(t, retrytest.Unavailable(0), retrytest.Unavailable(0), retrytest.Unavailable(0), retrytest.OK("done"))
		// Three retries: more than a fresh default Budget allows.
		client, clock := newClient(t, retryhttp.Policy{Budget: retryhttp.NewBudget(0, 3)})
		resp, _, err := do(t, client, newRequest(t, "GET", srv.URL, nil))
		require.NoError(t, err)
		assert.Equal(t, 200, resp.StatusCode)
		waits := clock.Waits()
		require.Len(t, waits, 3)
		for i, w := range waits {
			nominal := time.Second << i
			assert.GreaterOrEqual(t, w, nominal/2, "wait %d", i+1)
			assert.LessOrEqual(t, w, nominal*3/2, "wait %d", i+1)
		}
	})
	t.Run("invalid Retry-After falls back to the schedule", func(t *testing.T) {
		srv := retrytest.NewServer(t, retrytest.Reply(503, "").WithHeader("Retry-After", "-1"), retrytest.OK("done"))
		client, clock := newClient(t, retryhttp.Policy{
			Backoff: func() backoff.BackOff { return backoff.NewConstantBackOff(7 * time.Second) },
		})
		_, _, err := do(t, client, newRequest(t, "GET", srv.URL, nil))
		require.NoError(t, err)
		assert.Equal(t, []time.Duration{7 * time.Second}, clock.Waits())
	})
	t.Run("stop ends the retries", func(t *testing.T) {
		srv := retrytest.NewServer(t, retrytest.Unavailable(time.Second), retrytest.OK("done"))
		client, clock := newClient(t, retryhttp.Policy{
			Backoff: func() backoff.BackOff { return &backoff.StopBackOff{} },
		})
		resp, _, err := do(t, client, newRequest(t, "GET", srv.URL, nil))
		require.NoError(t, err)
		assert.Equal(t, 503, resp.StatusCode)
		assert.Equal(t, 1, srv.Count())
		assert.Empty(t, clock.Waits())
	})
	t.Run("a schedule per request", func(t *testing.T) {
		srv := retrytest.NewServer(t).Otherwise(retrytest.Unavailable(0))
		var made atomic.Int32
		client, _ := newClient(t, retryhttp.Policy{
			MaxAttempts: 3,
			Backoff: func() backoff.BackOff {
				made.Add(1)
				return backoff.WithMaxRetries(backoff.NewConstantBackOff(time.Millisecond), 1)
			},
		})
		for range 2 {
			resp, _, err := do(t, client, newRequest(t, "GET", srv.URL, nil))
			require.NoError(t, err)
			assert.Equal(t, 503, resp.StatusCode)
		}
		assert.EqualValues(t, 2, made.Load())
		assert.Equal(t, 4, srv.Count(), "WithMaxRetries(1) allows one retry per request")
	})
}

// Behaviour 5: give up early, without sleeping.
func TestGivesUpEarlyWithTheLastResponse(t *testing.T) {
	tests := []struct {
		name      string
		policy    retryhttp.Policy
		timeout   time.Duration
		script    []retrytest.Answer
		wantCount int
		wantWaits int
	}{
		{"attempts used up", retryhttp.Policy{MaxAttempts: 3},
			0, []retrytest.Answer{retrytest.Unavailable(time.Second), retrytest.Unavailable(time.Second), retrytest.Unavailable(time.Second)}, 3, 2},
		{"one attempt never retries", retryhttp.Policy{MaxAttempts: 1},
			0, []retrytest.Answer{retrytest.Unavailable(time.Second)}, 1, 0},
		{"Retry-After over the cap", retryhttp.Policy{MaxRetryAfter: time.Minute},
			0, []retrytest.Answer{retrytest.Unavailable(3600 * time.Second)}, 1, 0},
		{"Retry-After date over the cap", retryhttp.Policy{},
			0, []retrytest.Answer{retrytest.UnavailableUntil(time.Hour)}, 1, 0},
		{"overflowing Retry-After", retryhttp.Policy{},
			0, []retrytest.Answer{retrytest.Reply(503, "").WithHeader("Retry-After", "10000000000")}, 1, 0},
		{"wait past MaxElapsed", retryhttp.Policy{MaxElapsed: 5 * time.Second},
			0, []retrytest.Answer{retrytest.Unavailable(3 * time.Second), retrytest.Unavailable(3 * time.Second)}, 2, 1},
		{"wait past the context's deadline", retryhttp.Policy{MaxRetryAfter: time.Hour, MaxElapsed: 2 * time.Hour},
			5 * time.Second, []retrytest.Answer{retrytest.Unavailable(3600 * time.Second)}, 1, 0},
		{"budget empty", retryhttp.Policy{Budget: retryhttp.NewBudget(0, 0)},
			0, []retrytest.Answer{retrytest.Unavailable(0)}, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			script := append(tt.script, retrytest.OK("too late"))
			srv := retrytest.NewServer(t, script...).Otherwise(retrytest.OK("unexpected"))
			client, clock := newClient(t, tt.policy)
			req := newRequest(t, "GET", srv.URL, nil)
			if tt.timeout > 0 {
				ctx, cancel := context.WithTimeout(context.Background(), tt.timeout)
				defer cancel()
				req = req.WithContext(ctx)
			}

			started := time.Now()
			resp, err := client.Do(req)
			elapsed := time.Since(started)

			require.NoError(t, err)
			defer resp.Body.Close()
			assert.Equal(t, 503, resp.StatusCode, "the last response comes back as it is")
			assert.NotEmpty(t, resp.Header.Get("Date"), "with its headers")
			body, err := io.ReadAll(resp.Body)
			assert.NoError(t, err, "and its body unread and open")
			assert.Empty(t, body)
			assert.Equal(t, tt.wantCount, srv.Count())
			assert.Len(t, clock.Waits(), tt.wantWaits)
			assert.Less(t, elapsed, 2*time.Second, "gave up without sleeping")
		})
	}
}

func TestGivesUpWithTheLastResponseBody(t *testing.T) {
	srv := retrytest.NewServer(t, retrytest.Reply(503, "busy 1"), retrytest.Reply(503, "busy 2"))
	client, _ := newClient(t, retryhttp.Policy{MaxAttempts: 2})
	resp, body, err := do(t, client, newRequest(t, "GET", srv.URL, nil))
	require.NoError(t, err)
	assert.Equal(t, 503, resp.StatusCode)
	assert.Equal(t, "busy 2", body)
}

func TestGivesUpWithTheLastErrorWrapped(t *testing.T) {
	tests := []struct {
		name    string
		policy  retryhttp.Policy
		wantMsg string
	}{
		{"attempts used up", retryhttp.Policy{MaxAttempts: 2}, "gave up after 2 attempts (attempts used up)"},
		// A refused connection takes no token: the attempts, not the
		// empty budget, end it.
		{"budget empty", retryhttp.Policy{Budget: retryhttp.NewBudget(0, 0), MaxAttempts: 3}, "gave up after 3 attempts (attempts used up)"},
		{"past MaxElapsed", retryhttp.Policy{MaxElapsed: time.Millisecond}, "gave up after 1 attempt (next retry would start past MaxElapsed)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.NotFoundHandler())
			url := srv.URL
			srv.Close()
			client, _ := newClient(t, tt.policy)

			_, err := client.Get(url)

			require.Error(t, err)
			assert.ErrorIs(t, err, syscall.ECONNREFUSED)
			var opErr *net.OpError
			assert.ErrorAs(t, err, &opErr)
			assert.Contains(t, err.Error(), tt.wantMsg)
		})
	}
}

// Behaviour 6: cancellation during a wait.
func TestCancellationDuringAWait(t *testing.T) {
	for _, tt := range []struct {
		name string
		want error
		ctx  func() (ctx context.Context, cancel context.CancelFunc, interrupt func())
	}{
		{"cancelled", context.Canceled, func() (context.Context, context.CancelFunc, func()) {
			ctx, cancel := context.WithCancel(context.Background())
			return ctx, cancel, cancel
		}},
		{"deadline", context.DeadlineExceeded, func() (context.Context, context.CancelFunc, func()) {
			// A deadline the Transport cannot see in advance, as behind a
			// context wrapper that hides it, passes during the wait.
			ctx := newExpiringContext()
			return ctx, ctx.expire, ctx.expire
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := retrytest.NewServer(t, retrytest.Reply(503, "held"), retrytest.OK("too late"))
			base := &closeRecorder{base: newBase(t)}
			ctx, cancel, interrupt := tt.ctx()
			defer cancel()
			client := &http.Client{Transport: &retryhttp.Transport{Base: base, Policy: retryhttp.Policy{
				// A clock of real time whose waits are interrupted as
				// they begin, and a wait far longer than the test.
				Clock:   interruptingClock{interrupt: interrupt},
				Backoff: func() backoff.BackOff { return backoff.NewConstantBackOff(20 * time.Second) },
			}}}

			started := time.Now()
			_, err := client.Do(newRequest(t, "GET", srv.URL, nil).WithContext(ctx))
			elapsed := time.Since(started)

			require.Error(t, err)
			assert.ErrorIs(t, err, tt.want)
			assert.Less(t, elapsed, 10*time.Second, "returned before the wait of 20 s ended")
			assert.Equal(t, 1, srv.Count())
			assert.Equal(t, 1, base.responses())
			assert.Equal(t, 1, base.closed(), "the held response's body is closed")
		})
	}
}

// interruptingClock is the real clock, except that each wait calls
// interrupt as it begins, and then waits, in real time, for its end or its
// context's.
type interruptingClock struct{ interrupt func() }

func (interruptingClock) Now() time.Time { return time.Now() }

func (c interruptingClock) Sleep(ctx context.Context, d time.Duration) error {
	c.interrupt()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// expiringContext is a context with a deadline it does not report, which
// passes when expire is called.
type expiringContext struct {
	context.Context
	done chan struct{}
	once sync.Once
}

func newExpiringContext() *expiringContext {
	return &expiringContext{Context: context.Background(), done: make(chan struct{})}
}

func (c *expiringContext) Deadline() (time.Time, bool) { return time.Time{}, false }
func (c *expiringContext) Done() <-chan struct{}       { return c.done }
func (c *expiringContext) expire()                     { c.once.Do(func() { close(c.done) }) }

func (c *expiringContext) Err() error {
	select {
	case <-c.done:
		return context.DeadlineExceeded
	default:
		return nil
	}
}

// A response that arrives as the caller gives up is handed back as it is,
// with no wait begun and no retry token spent on it.
func TestNoRetryOnceTheContextIsDone(t *testing.T) {
	srv := retrytest.NewServer(t, retrytest.Unavailable(0), retrytest.OK("too late"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	budget := retryhttp.NewBudget(0, 1)
	var retries atomic.Int32
	client := &http.Client{Transport: &retryhttp.Transport{
		Base:   cancelOnAnswer{base: newBase(t), cancel: cancel},
		Policy: retryhttp.Policy{Budget: budget, OnRetry: countRetries(&retries)},
	}}

	resp, err := client.Do(newRequest(t, "GET", srv.URL, nil).WithContext(ctx))

	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, 503, resp.StatusCode)
	assert.Equal(t, 1, srv.Count())
	assert.Zero(t, retries.Load(), "no retry was considered")
	assert.Equal(t, 1.0, budget.Tokens(), "no token was taken")
}

// cancelOnAnswer sends through a real transport and cancels the request's
// context as soon as the answer is in.
type cancelOnAnswer struct {
	base   http.RoundTripper
	cancel context.CancelFunc
}

func (c cancelOnAnswer) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.base.RoundTrip(req)
	c.cancel()
	return resp, err
}

// closeRecorder wraps a real transport and records which response bodies
// were closed.
type closeRecorder struct {
	base   http.RoundTripper
	mu     sync.Mutex
	bodies []*recordedBody
}

type recordedBody struct {
	io.ReadCloser
	closed atomic.Bool
	read   atomic.Int64
}

func (b *recordedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.read.Add(int64(n))
	return n, err
}

func (b *recordedBody) Close() error {
	b.closed.Store(true)
	return b.ReadCloser.Close()
}

func (c *closeRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.base.RoundTrip(req)
	if err == nil {
		body := &recordedBody{ReadCloser: resp.Body}
		resp.Body = body
		c.mu.Lock()
		c.bodies = append(c.bodies, body)
		c.mu.Unlock()
	}
	return resp, err
}

func (c *closeRecorder) responses() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.bodies)
}

func (c *closeRecorder) closed() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, b := range c.bodies {
		if b.closed.Load() {
			n++
		}
	}
	return n
}

// Behaviour 7: connections.
func TestDiscardedBodiesAndConnections(t *testing.T) {
	tests := []struct {
		name      string
		body      func(w http.ResponseWriter, r *http.Request)
		wantConns int
	}{
		{"small body keeps the connection", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(503)
			_, _ = io.WriteString(w, strings.Repeat("busy ", 200))
		}, 1},
		{"huge body is not read", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(503)
			for i := 0; i < 64 && r.Context().Err() == nil; i++ {
				_, _ = w.Write(make([]byte, 64<<10))
			}
		}, 2},
		{"endless slow body is abandoned", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(503)
			for r.Context().Err() == nil {
				_, _ = io.WriteString(w, ".")
				http.NewResponseController(w).Flush()
				time.Sleep(10 * time.Millisecond)
			}
		}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hits, conns atomic.Int32
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if hits.Add(1) == 1 {
					tt.body(w, r)
					return
				}
				_, _ = io.WriteString(w, "ok")
			}))
			srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
				if s == http.StateNew {
					conns.Add(1)
				}
			}
			srv.Start()
			defer srv.Close()
			base := &closeRecorder{base: newBase(t)}
			client := &http.Client{Transport: &retryhttp.Transport{Base: base, Policy: retryhttp.Policy{
				Clock: retrytest.NewClock(t),
			}}}

			started := time.Now()
			resp, body, err := do(t, client, newRequest(t, "GET", srv.URL, nil))
			elapsed := time.Since(started)

			require.NoError(t, err)
			assert.Equal(t, "ok", body)
			assert.Equal(t, 200, resp.StatusCode)
			assert.EqualValues(t, tt.wantConns, conns.Load())
			assert.Less(t, elapsed, time.Second, "a discarded body must not stall the retry")
			require.Equal(t, 2, base.responses())
			// A discarded body is closed by the goroutine that reads it,
			// once its last read returns, which may be after the retry.
			assert.Eventually(t, func() bool { return base.closed() == 2 }, time.Second, time.Millisecond)
			base.mu.Lock()
			assert.LessOrEqual(t, base.bodies[0].read.Load(), int64(32<<10), "at most a bounded part is read")
			base.mu.Unlock()
		})
	}
}

// Behaviour 8: the RoundTripper contract.
func TestDoesNotModifyTheRequest(t *testing.T) {
	srv := retrytest.NewServer(t, retrytest.Unavailable(0), retrytest.Drop(), retrytest.OK("done"))
	client, _ := newClient(t, retryhttp.Policy{})
	req := newRequest(t, "PUT", srv.URL+"/a?b=c", strings.NewReader("payload"))
	req.Header.Set("X-Trace", "1")
	body, getBody, ctx := req.Body, req.GetBody, req.Context()
	url := *req.URL
	header := req.Header.Clone()

	resp, _, err := do(t, client, req)

	require.NoError(t, err)
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, header, req.Header)
	assert.Equal(t, url, *req.URL)
	assert.True(t, body == req.Body, "the same body")
	assert.Equal(t, fmt.Sprintf("%p", getBody), fmt.Sprintf("%p", req.GetBody))
	assert.Equal(t, ctx, req.Context())
	for _, r := range srv.Requests() {
		assert.Equal(t, "1", r.Header.Get("X-Trace"))
		assert.Equal(t, "/a", r.Path)
	}
}

func TestClosesTheRequestBody(t *testing.T) {
	t.Run("when the Policy is invalid", func(t *testing.T) {
		body := &closeTracker{Reader: strings.NewReader("x")}
		rt := &retryhttp.Transport{Base: newBase(t), Policy: retryhttp.Policy{MaxAttempts: -1}}
		req := newRequest(t, "PUT", "http://127.0.0.1:1/", body)
		_, err := rt.RoundTrip(req)
		require.Error(t, err)
		assert.True(t, body.closed.Load())
	})
	t.Run("on every attempt", func(t *testing.T) {
		srv := retrytest.NewServer(t, retrytest.Unavailable(0), retrytest.OK("done"))
		var bodies []*closeTracker
		var mu sync.Mutex
		open := func() *closeTracker {
			mu.Lock()
			defer mu.Unlock()
			b := &closeTracker{Reader: strings.NewReader("x")}
			bodies = append(bodies, b)
			return b
		}
		req := newRequest(t, "PUT", srv.URL, open())
		req.GetBody = func() (io.ReadCloser, error) { return open(), nil }
		client, _ := newClient(t, retryhttp.Policy{})
		_, _, err := do(t, client, req)
		require.NoError(t, err)
		mu.Lock()
		defer mu.Unlock()
		require.Len(t, bodies, 2)
		for i, b := range bodies {
			assert.Eventually(t, b.closed.Load, time.Second, time.Millisecond, "body %d", i)
		}
	})
}

type closeTracker struct {
	io.Reader
	closed atomic.Bool
}

func (c *closeTracker) Close() error { c.closed.Store(true); return nil }

func TestConcurrentUse(t *testing.T) {
	const goroutines, perGoroutine = 20, 10
	srv := retrytest.NewServer(t).
		On("/flaky", retrytest.Unavailable(0), retrytest.Drop(), retrytest.UnavailableUntil(time.Second)).
		Otherwise(retrytest.OK("ok"))
	rt := &retryhttp.Transport{Base: newBase(t), Policy: retryhttp.Policy{
		Clock: retrytest.NewClock(t), Budget: retryhttp.UnlimitedBudget(),
	}}
	client := &http.Client{Transport: rt}
	var wg sync.WaitGroup
	var failures atomic.Int32
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perGoroutine {
				path := "/ok"
				if (g+i)%3 == 0 {
					path = "/flaky"
				}
				resp, err := client.Get(srv.URL + path)
				if err != nil || resp.StatusCode != 200 {
					failures.Add(1)
				}
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		}()
	}
	wg.Wait()
	assert.Zero(t, failures.Load())
	assert.GreaterOrEqual(t, srv.Count(), goroutines*perGoroutine+3)
}

// Behaviour 9: the budget.
func TestBudgetBoundsRetries(t *testing.T) {
	tests := []struct {
		name      string
		ratio     float64
		burst     int
		successes int // requests answered 200 before the server dies
		requests  int // requests to the dead server
	}{
		{"burst only", 0, 5, 10, 40},
		{"ratio and burst", 0.1, 3, 0, 100},
		{"ratio earned by successes", 0.1, 3, 50, 100},
		{"the defaults", 0.1, 10, 200, 200},
		{"nothing", 0, 0, 10, 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := retrytest.NewServer(t).Otherwise(retrytest.Unavailable(0))
			srv.On("/ok", repeat(retrytest.OK("ok"), tt.successes)...)
			budget := retryhttp.NewFixedBudget(tt.ratio, tt.burst)
			client, _ := newClient(t, retryhttp.Policy{Budget: budget, MaxAttempts: 100, Backoff: noWait})
			for range tt.successes {
				resp, _, err := do(t, client, newRequest(t, "GET", srv.URL+"/ok", nil))
				require.NoError(t, err)
				require.Equal(t, 200, resp.StatusCode)
			}
			require.Equal(t, float64(tt.burst), budget.Tokens(), "successes keep a full budget full")
			for range tt.requests {
				resp, _, err := do(t, client, newRequest(t, "GET", srv.URL+"/dead", nil))
				require.NoError(t, err)
				require.Equal(t, 503, resp.StatusCode)
			}
			retries := srv.Count() - tt.successes - tt.requests
			// A dead server answers nothing that earns a deposit: it gets
			// the burst and no more, within burst + ratio × requests.
			assert.Equal(t, tt.burst, retries)
			assert.LessOrEqual(t, float64(retries), float64(tt.burst)+tt.ratio*float64(tt.successes+tt.requests))
			assert.GreaterOrEqual(t, budget.Tokens(), 0.0)
			assert.Less(t, budget.Tokens(), 1.0)
		})
	}
}

func TestBudgetGrowsWithSuccesses(t *testing.T) {
	// A spent budget earns ratio for each response that is not retried (a
	// 200, a 404), and nothing for one that is (a 503).
	srv := retrytest.NewServer(t).Otherwise(retrytest.Unavailable(0))
	srv.On("/ok", repeat(retrytest.OK("ok"), 10)...)
	srv.On("/missing", repeat(retrytest.Reply(404, ""), 10)...)
	budget := retryhttp.NewFixedBudget(0.25, 2)
	client, _ := newClient(t, retryhttp.Policy{Budget: budget, MaxAttempts: 2, Backoff: noWait})
	get := func(path string) {
		resp, _, err := do(t, client, newRequest(t, "GET", srv.URL+path, nil))
		require.NoError(t, err)
		_ = resp
	}
	get("/dead")
	get("/dead")
	require.Equal(t, 0.0, budget.Tokens(), "two retries spent the burst")
	get("/dead")
	assert.Equal(t, 0.0, budget.Tokens(), "a 503 earns nothing")
	for range 2 {
		get("/ok")
	}
	assert.Equal(t, 0.5, budget.Tokens())
	for range 2 {
		get("/missing")
	}
	assert.Equal(t, 1.0, budget.Tokens(), "a 404 is an answer too")
	before := srv.Count()
	get("/dead")
	assert.Equal(t, before+2, srv.Count(), "the token earned paid for a retry")
}

func repeat(a retrytest.Answer, n int) []retrytest.Answer {
	out := make([]retrytest.Answer, n)
	for i := range out {
		out[i] = a
	}
	return out
}

func TestDefaultBudgetIsPerTransport(t *testing.T) {
	srv := retrytest.NewServer(t).Otherwise(retrytest.Unavailable(0))
	policy := retryhttp.Policy{MaxAttempts: 100, Backoff: noWait}
	for range 2 {
		client, _ := newClient(t, policy)
		before := srv.Count()
		resp, _, err := do(t, client, newRequest(t, "GET", srv.URL, nil))
		require.NoError(t, err)
		assert.Equal(t, 503, resp.StatusCode)
		assert.Equal(t, 1+retryhttp.DefaultBudgetBurst, srv.Count()-before,
			"each Transport starts with its own full default budget")
	}
}

func TestSharedBudget(t *testing.T) {
	srv := retrytest.NewServer(t).Otherwise(retrytest.Unavailable(0))
	budget := retryhttp.NewBudget(0, 3)
	a, _ := newClient(t, retryhttp.Policy{Budget: budget, MaxAttempts: 10})
	b, _ := newClient(t, retryhttp.Policy{Budget: budget, MaxAttempts: 10})
	for _, client := range []*http.Client{a, b, a} {
		_, _, err := do(t, client, newRequest(t, "GET", srv.URL, nil))
		require.NoError(t, err)
	}
	assert.Equal(t, 3+3, srv.Count(), "three requests and three retries in all")
	assert.Zero(t, budget.Tokens())
}

func TestUnlimitedBudget(t *testing.T) {
	srv := retrytest.NewServer(t).Otherwise(retrytest.Unavailable(0))
	client, _ := newClient(t, retryhttp.Policy{Budget: retryhttp.UnlimitedBudget(), MaxAttempts: 50, Backoff: noWait})
	_, _, err := do(t, client, newRequest(t, "GET", srv.URL, nil))
	require.NoError(t, err)
	assert.Equal(t, 50, srv.Count())
}

func TestBudgetTokens(t *testing.T) {
	b := retryhttp.NewBudget(0.1, 2)
	assert.Equal(t, 2.0, b.Tokens())
	assert.True(t, math.IsInf(retryhttp.UnlimitedBudget().Tokens(), 1))
	assert.Zero(t, new(retryhttp.Budget).Tokens())
}

// noWait is a backoff schedule without waits, for tests about counts.
func noWait() backoff.BackOff { return &backoff.ZeroBackOff{} }

// Behaviour 10: seeing what happens.
func TestOnRetryReportsEachRetry(t *testing.T) {
	clock := retrytest.NewClock(t)
	srv := retrytest.NewServer(t,
		// Closing the connection after the 503 makes the drop reach the
		// Transport, rather than net/http's own resend on a reused one.
		retrytest.Unavailable(2*time.Second).WithHeader("Connection", "close"),
		retrytest.Drop(),
		retrytest.TooManyRequests(0),
		retrytest.OK("done"),
	).UseClock(clock)
	var events []retryhttp.RetryEvent
	client, _ := newClient(t, retryhttp.Policy{Clock: clock, MaxAttempts: 5, OnRetry: func(ev retryhttp.RetryEvent) {
		events = append(events, ev)
	}})

	resp, _, err := do(t, client, newRequest(t, "GET", srv.URL, nil))

	require.NoError(t, err)
	assert.Equal(t, 200, resp.StatusCode)
	require.Len(t, events, 3)
	assert.ErrorIs(t, events[1].Err, io.EOF)
	assert.Equal(t, 1, events[0].Attempt)
	assert.Equal(t, 503, events[0].Response.StatusCode)
	assert.True(t, events[0].HasRetryAfter)
	assert.Equal(t, 2*time.Second, events[0].RetryAfter)
	assert.GreaterOrEqual(t, events[0].Wait, 2*time.Second)
	assert.Equal(t, srv.URL, events[0].Request.URL.String())
	last := events[len(events)-1]
	assert.Equal(t, 429, last.Response.StatusCode)
	assert.False(t, last.HasRetryAfter)
	for i, ev := range events {
		assert.Equal(t, i+1, ev.Attempt)
		assert.True(t, (ev.Response == nil) != (ev.Err == nil), "a response or an error, not both")
	}
	assert.Len(t, clock.Waits(), len(events))
	for i, ev := range events {
		assert.Equal(t, ev.Wait, clock.Waits()[i])
	}
}

// Behaviour 11: bad configuration.
func TestBadConfigurationIsReported(t *testing.T) {
	tests := []struct {
		name   string
		policy retryhttp.Policy
		want   string
	}{
		{"negative MaxAttempts", retryhttp.Policy{MaxAttempts: -1}, "Policy.MaxAttempts"},
		{"negative MaxElapsed", retryhttp.Policy{MaxElapsed: -time.Second}, "Policy.MaxElapsed"},
		{"negative MaxRetryAfter", retryhttp.Policy{MaxRetryAfter: -time.Second}, "Policy.MaxRetryAfter"},
		{"negative ratio", retryhttp.Policy{Budget: retryhttp.NewBudget(-0.1, 10)}, "Policy.Budget: ratio -0.1"},
		{"NaN ratio", retryhttp.Policy{Budget: retryhttp.NewBudget(nan(), 10)}, "Policy.Budget: ratio NaN"},
		{"negative burst", retryhttp.Policy{Budget: retryhttp.NewBudget(0.1, -1)}, "Policy.Budget: burst -1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := retrytest.NewServer(t)
			client, _ := newClient(t, tt.policy)

			_, err := client.Get(srv.URL)

			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.Equal(t, err.Error()[strings.Index(err.Error(), "retryhttp:"):], tt.policy.Validate().Error())
			assert.Zero(t, srv.Count(), "nothing is sent")
		})
	}
	t.Run("valid", func(t *testing.T) {
		p := retryhttp.Policy{MaxAttempts: 1, Budget: retryhttp.NewBudget(0, 0)}
		assert.NoError(t, p.Validate())
		assert.NoError(t, (&retryhttp.Policy{}).Validate())
	})
}

func nan() float64 { return math.NaN() }

// quietLog keeps a test server's expected TLS handshake errors out of the
// test output.
func quietLog() *log.Logger { return log.New(io.Discard, "", 0) }

func TestZeroTransportUsesDefaultTransport(t *testing.T) {
	if testing.Short() {
		t.Skip("the zero Transport waits on the real clock, up to a second")
	}
	t.Parallel() // mostly waiting: it overlaps the other real-time tests
	srv := retrytest.NewServer(t, retrytest.Unavailable(0), retrytest.OK("done"))
	defer http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	client := &http.Client{Transport: &retryhttp.Transport{}}
	resp, body, err := do(t, client, newRequest(t, "GET", srv.URL, nil))
	require.NoError(t, err)
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "done", body)
	assert.Equal(t, 2, srv.Count())
}

func TestWaitsAsTheRateLimitHeadersSay(t *testing.T) {
	tests := []struct {
		name       string
		answer     func(now time.Time) retrytest.Answer
		want       time.Duration
		wantHeader string
	}{
		{"GitHub: 403, remaining 0, epoch reset", func(now time.Time) retrytest.Answer {
			return retrytest.Reply(403, "").WithHeader("X-RateLimit-Remaining", "0").
				WithHeader("X-RateLimit-Reset", strconv.FormatInt(now.Add(25*time.Second).Unix(), 10))
		}, 25 * time.Second, "X-RateLimit-Reset"},
		{"X: 429 with x-rate-limit-reset", func(now time.Time) retrytest.Answer {
			return retrytest.Reply(429, "").WithHeader("X-Rate-Limit-Reset", strconv.FormatInt(now.Add(15*time.Second).Unix(), 10))
		}, 15 * time.Second, "X-Rate-Limit-Reset"},
		{"Discord: reset-after with decimals", func(time.Time) retrytest.Answer {
			return retrytest.Reply(429, "").WithHeader("X-RateLimit-Reset-After", "12.250")
		}, 12250 * time.Millisecond, "X-RateLimit-Reset-After"},
		{"IETF RateLimit", func(time.Time) retrytest.Answer {
			return retrytest.Reply(429, "").WithHeader("RateLimit", `"default";r=0;t=20`)
		}, 20 * time.Second, "RateLimit"},
		{"older drafts: RateLimit-Reset", func(time.Time) retrytest.Answer {
			return retrytest.Reply(503, "").WithHeader("RateLimit-Reset", "7")
		}, 7 * time.Second, "RateLimit-Reset"},
		{"Retry-After wins over the rest", func(time.Time) retrytest.Answer {
			return retrytest.Reply(429, "").WithHeader("Retry-After", "3").WithHeader("X-RateLimit-Reset-After", "20")
		}, 3 * time.Second, "Retry-After"},
		{"an invalid Retry-After falls back to the rate-limit headers", func(time.Time) retrytest.Answer {
			return retrytest.Reply(429, "").WithHeader("Retry-After", "soon").WithHeader("X-RateLimit-Reset-After", "4")
		}, 4 * time.Second, "X-RateLimit-Reset-After"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := retrytest.NewClock(t)
			srv := retrytest.NewServer(t, tt.answer(clock.Now()), retrytest.OK("done")).UseClock(clock)
			var events []retryhttp.RetryEvent
			client, _ := newClient(t, retryhttp.Policy{Clock: clock, OnRetry: func(ev retryhttp.RetryEvent) { events = append(events, ev) }})

			resp, _, err := do(t, client, newRequest(t, "GET", srv.URL, nil))

			require.NoError(t, err)
			assert.Equal(t, 200, resp.StatusCode)
			require.Len(t, events, 1)
			assert.Equal(t, tt.wantHeader, events[0].RetryAfterHeader)
			assert.True(t, events[0].HasRetryAfter)
			assert.Equal(t, tt.want, events[0].RetryAfter)
			require.Len(t, clock.Waits(), 1)
			assert.GreaterOrEqual(t, clock.Waits()[0], tt.want, "never earlier than the server said")
			assert.Less(t, clock.Waits()[0], tt.want+max(tt.want/5, time.Second))
		})
	}
}

func TestRateLimitWaitsAreCapped(t *testing.T) {
	clock := retrytest.NewClock(t)
	srv := retrytest.NewServer(t).Otherwise(retrytest.Reply(429, "").WithHeader("X-RateLimit-Reset-After", "3600"))
	var hook giveUps
	client, _ := newClient(t, retryhttp.Policy{Clock: clock, OnGiveUp: hook.record})

	resp, _, err := do(t, client, newRequest(t, "GET", srv.URL, nil))

	require.NoError(t, err)
	assert.Equal(t, 429, resp.StatusCode)
	require.Len(t, hook.all(), 1)
	ev := hook.all()[0]
	assert.Same(t, retryhttp.ErrRetryAfterTooLong, ev.Reason)
	assert.Equal(t, time.Hour, ev.RetryAfter)
	assert.Equal(t, "X-RateLimit-Reset-After", ev.RetryAfterHeader)
}

func TestOnly403RateLimitRefusalsAreRetried(t *testing.T) {
	tests := []struct {
		name   string
		header http.Header
		want   bool
	}{
		{"plain 403", nil, false},
		{"403 with remaining 1", http.Header{"X-Ratelimit-Remaining": {"1"}}, false},
		{"403 with a reset but quota left", http.Header{"X-Ratelimit-Reset-After": {"1"}}, false},
		{"GitHub primary limit", http.Header{"X-Ratelimit-Remaining": {"0"}}, true},
		{"X-Rate-Limit-Remaining: 0", http.Header{"X-Rate-Limit-Remaining": {"0"}}, true},
		{"GitHub secondary limit", http.Header{"Retry-After": {"1"}}, true},
		{"IETF r=0", http.Header{"Ratelimit": {`"default";r=0;t=1`}}, true},
		{"IETF quota left", http.Header{"Ratelimit": {`"default";r=3;t=1`}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := &http.Response{StatusCode: 403, Header: tt.header}
			if resp.Header == nil {
				resp.Header = http.Header{}
			}
			assert.Equal(t, tt.want, retryhttp.DefaultRetryable(resp, nil))
			assert.Equal(t, tt.want, retryhttp.RetryStatuses(503, 403)(resp, nil), "RetryStatuses keeps the rule for 403")
			assert.False(t, retryhttp.RetryStatuses(503)(resp, nil), "a rule without 403 never retries it")

			answer := retrytest.Reply(403, "no")
			for k, v := range tt.header {
				answer = answer.WithHeader(k, v[0])
			}
			srv := retrytest.NewServer(t, answer, retrytest.OK("done"))
			client, _ := newClient(t, retryhttp.Policy{})
			got, _, err := do(t, client, newRequest(t, "GET", srv.URL, nil))
			require.NoError(t, err)
			if tt.want {
				assert.Equal(t, 200, got.StatusCode)
				assert.Equal(t, 2, srv.Count())
			} else {
				assert.Equal(t, 403, got.StatusCode)
				assert.Equal(t, 1, srv.Count())
			}
		})
	}
}

// A discarded response whose body stalls is closed when the drain gives up on
// it, so its connection is set free: with MaxConnsPerHost the retry would
// otherwise wait for that very connection for as long as the server holds the
// body, and without it a goroutine and a connection would leak per retry.
func TestStalledDiscardedBodyIsClosed(t *testing.T) {
	if testing.Short() {
		t.Skip("each case waits out the drain's real timer: net/http's body and connection are what is tested")
	}
	t.Parallel() // mostly waiting on real timers: it overlaps the other parallel tests
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
