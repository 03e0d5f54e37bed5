package retryhttp_test

// Tests of the http.RoundTripper contract at its edges: idle connections,
// the deprecated Cancel channel, discarded bodies that misbehave, and the
// caller's own request body failing.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
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

// idleCounter is a Base that counts CloseIdleConnections calls.
type idleCounter struct {
	http.RoundTripper
	closes atomic.Int32
}

func (c *idleCounter) CloseIdleConnections() { c.closes.Add(1) }

func TestCloseIdleConnectionsReachesTheBase(t *testing.T) {
	t.Run("forwarded from http.Client", func(t *testing.T) {
		base := &idleCounter{RoundTripper: newBase(t)}
		client := &http.Client{Transport: &retryhttp.Transport{Base: base}}
		client.CloseIdleConnections()
		assert.EqualValues(t, 1, base.closes.Load())
	})
	t.Run("a Base without the method is fine", func(t *testing.T) {
		tr := &retryhttp.Transport{Base: roundTripFunc(func(*http.Request) (*http.Response, error) { return nil, errors.New("unused") })}
		assert.NotPanics(t, tr.CloseIdleConnections)
	})
	t.Run("never called during retries", func(t *testing.T) {
		srv := retrytest.NewServer(t, retrytest.Unavailable(0), retrytest.Drop(), retrytest.Unavailable(0), retrytest.OK("ok"))
		base := &idleCounter{RoundTripper: newBase(t)}
		client := &http.Client{Transport: &retryhttp.Transport{Base: base, Policy: retryhttp.Policy{Clock: retrytest.NewClock(t)}}}
		resp, _, err := do(t, client, newRequest(t, "GET", srv.URL, nil))
		require.NoError(t, err)
		assert.Equal(t, 200, resp.StatusCode)
		assert.Zero(t, base.closes.Load())
	})
	t.Run("nil Base means http.DefaultTransport", func(t *testing.T) {
		var closed atomic.Int32
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
		srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
			if s == http.StateClosed {
				closed.Add(1)
			}
		}
		srv.Start()
		defer srv.Close()
		client := &http.Client{Transport: &retryhttp.Transport{}}
		resp, _, err := do(t, client, newRequest(t, "GET", srv.URL, nil))
		require.NoError(t, err)
		require.Equal(t, 200, resp.StatusCode)
		require.Zero(t, closed.Load(), "the connection stays idle")

		client.CloseIdleConnections()

		assert.Eventually(t, func() bool { return closed.Load() == 1 }, 2*time.Second, 5*time.Millisecond)
	})
}

func TestRequestCancelEndsAWait(t *testing.T) {
	srv := retrytest.NewServer(t).Otherwise(retrytest.Unavailable(10 * time.Second))
	var hook giveUps
	client := &http.Client{Transport: &retryhttp.Transport{Base: newBase(t), Policy: retryhttp.Policy{OnGiveUp: hook.record}}}
	req := newRequest(t, "GET", srv.URL, nil)
	cancel := make(chan struct{})
	//lint:ignore SA1019 the deprecated field is what is tested.
	req.Cancel = cancel
	time.AfterFunc(100*time.Millisecond, func() { close(cancel) })

	started := time.Now()
	_, err := client.Do(req)

	assert.Less(t, time.Since(started), 5*time.Second, "the 30 s wait was cut short")
	require.Error(t, err)
	var giveUp *retryhttp.GiveUpError
	require.ErrorAs(t, err, &giveUp)
	assert.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, 1, srv.Count())
	assert.Len(t, hook.all(), 1)
}

// watchedBody is a response body that reports a Close during a Read, and
// whose Read blocks until release is closed once its bytes are spent.
type watchedBody struct {
	reading    atomic.Bool
	concurrent atomic.Bool
	closed     atomic.Bool
	bytes      int
	release    chan struct{}
}

func (b *watchedBody) Read(p []byte) (int, error) {
	b.reading.Store(true)
	defer b.reading.Store(false)
	if b.bytes > 0 {
		n := min(len(p), b.bytes)
		b.bytes -= n
		return n, nil
	}
	<-b.release // a Close does not interrupt this Read
	return 0, io.EOF
}

func (b *watchedBody) Close() error {
	if b.reading.Load() {
		b.concurrent.Store(true)
	}
	b.closed.Store(true)
	return nil
}

func TestDiscardNeverClosesDuringARead(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	var mu sync.Mutex
	var bodies []*watchedBody
	base := roundTripFunc(func(req *http.Request) (*http.Response, error) {
		body := &watchedBody{bytes: 100, release: release}
		mu.Lock()
		bodies = append(bodies, body)
		mu.Unlock()
		return &http.Response{StatusCode: 503, Header: http.Header{}, Body: body, Request: req}, nil
	})
	client := &http.Client{Transport: &retryhttp.Transport{Base: base, Policy: retryhttp.Policy{
		Backoff: func() backoff.BackOff { return backoff.NewConstantBackOff(10 * time.Millisecond) },
	}}}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()

	started := time.Now()
	resp, err := client.Do(newRequest(t, "GET", "http://retry.test/", nil).WithContext(ctx))
	elapsed := time.Since(started)

	if err == nil {
		resp.Body.Close()
	}
	assert.Less(t, elapsed, 600*time.Millisecond, "a stuck body must not hold RoundTrip past the caller's deadline")
	mu.Lock()
	defer mu.Unlock()
	require.GreaterOrEqual(t, len(bodies), 2, "at least one retry was made past the stuck body")
	for i, b := range bodies {
		assert.False(t, b.concurrent.Load(), "body %d saw Close during a Read", i)
	}
}

// failingBody is a request body that breaks after a few bytes, like a file
// that was truncated while it was sent.
type failingBody struct {
	sent int
}

func (b *failingBody) Read(p []byte) (int, error) {
	if b.sent >= 5 {
		return 0, io.ErrUnexpectedEOF
	}
	n := copy(p, "12345"[b.sent:])
	b.sent += n
	return n, nil
}

func (b *failingBody) Close() error { return nil }

func TestCallersBodyErrorsAreNeverRetried(t *testing.T) {
	t.Run("the first attempt's body fails", func(t *testing.T) {
		var hits atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			_, _ = io.Copy(io.Discard, r.Body)
		}))
		defer srv.Close()
		var hook giveUps
		var getBodies atomic.Int32
		client, _ := newClient(t, retryhttp.Policy{OnGiveUp: hook.record})
		req := newRequest(t, "PUT", srv.URL, nil)
		req.Body = &failingBody{}
		req.ContentLength = 10
		req.GetBody = func() (io.ReadCloser, error) { getBodies.Add(1); return &failingBody{}, nil }

		_, err := client.Do(req)

		require.Error(t, err)
		assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
		var giveUp *retryhttp.GiveUpError
		assert.False(t, errors.As(err, &giveUp), "the caller's error is returned as it is")
		assert.Zero(t, getBodies.Load(), "no retry was prepared")
		assert.LessOrEqual(t, hits.Load(), int32(1))
		assert.Empty(t, hook.all())
	})
	t.Run("a retry's body fails", func(t *testing.T) {
		srv := retrytest.NewServer(t, retrytest.Unavailable(0)).Otherwise(retrytest.OK("ok"))
		client, _ := newClient(t, retryhttp.Policy{})
		req := newRequest(t, "PUT", srv.URL, strings.NewReader("1234567890"))
		req.GetBody = func() (io.ReadCloser, error) { return &failingBody{}, nil }

		resp, err := client.Do(req)

		require.Error(t, err, "%v", resp)
		assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
		assert.LessOrEqual(t, srv.Count(), 2, "the broken body was not sent again")
	})
	t.Run("GetBody fails: the token is given back", func(t *testing.T) {
		srv := retrytest.NewServer(t).Otherwise(retrytest.Unavailable(0))
		budget := retryhttp.NewBudget(0, 3)
		client, _ := newClient(t, retryhttp.Policy{Budget: budget})
		req := newRequest(t, "PUT", srv.URL, strings.NewReader("payload"))
		reopen := errors.New("file gone")
		req.GetBody = func() (io.ReadCloser, error) { return nil, reopen }

		_, err := client.Do(req)

		require.Error(t, err)
		assert.ErrorIs(t, err, reopen)
		assert.Contains(t, err.Error(), "reopening the request body for attempt 2")
		assert.Equal(t, 1, srv.Count())
		assert.Equal(t, 3.0, budget.Tokens(), "the token of the retry never sent is back")
	})
}

func TestMaxAttemptsOneBuildsNoSchedule(t *testing.T) {
	srv := retrytest.NewServer(t, retrytest.Unavailable(time.Second))
	var calls atomic.Int32
	var hook giveUps
	client, _ := newClient(t, retryhttp.Policy{
		MaxAttempts: 1,
		Backoff:     func() backoff.BackOff { calls.Add(1); return nil },
		OnGiveUp:    hook.record,
	})

	resp, _, err := do(t, client, newRequest(t, "GET", srv.URL, nil))

	require.NoError(t, err, "a nil Backoff that is never called cannot turn a 503 into an error")
	assert.Equal(t, 503, resp.StatusCode)
	assert.Zero(t, calls.Load())
	require.Len(t, hook.all(), 1)
	assert.Same(t, retryhttp.ErrAttemptsUsedUp, hook.all()[0].Reason)
}

func TestNotResendableBuildsNoSchedule(t *testing.T) {
	srv := retrytest.NewServer(t, retrytest.Unavailable(time.Second))
	var calls atomic.Int32
	client, _ := newClient(t, retryhttp.Policy{Backoff: func() backoff.BackOff { calls.Add(1); return nil }})
	resp, _, err := do(t, client, newRequest(t, "POST", srv.URL, strings.NewReader("x")))
	require.NoError(t, err)
	assert.Equal(t, 503, resp.StatusCode)
	assert.Zero(t, calls.Load())
}

// brokenBody is a request body that sends a few bytes and then fails with
// err, as a file on a disk that timed out (os.ErrDeadlineExceeded, whose
// Timeout() is true) or was truncated (io.ErrUnexpectedEOF) does.
type brokenBody struct {
	err  error
	sent bool
}

func (b *brokenBody) Read(p []byte) (int, error) {
	if b.sent {
		return 0, b.err
	}
	b.sent = true
	return copy(p, "12345"), nil
}

func (b *brokenBody) Close() error { return nil }

// An error of the caller's body ends the request at once with that very
// error, for every request, resendable or not, with or without
// AttemptTimeout: it is never an attempt timeout, never reaches Retryable
// and never fires OnGiveUp.
func TestCallersBodyErrorIsReturnedAsItIs(t *testing.T) {
	requests := []struct {
		name    string
		method  string
		getBody bool
		header  http.Header
	}{
		{"PUT with GetBody", "PUT", true, nil},
		{"PUT without GetBody", "PUT", false, nil},
		{"POST with GetBody", "POST", true, nil},
		{"POST with a key", "POST", true, http.Header{"Idempotency-Key": {"k"}}},
		{"POST without GetBody", "POST", false, nil},
	}
	for _, bodyErr := range []error{os.ErrDeadlineExceeded, io.ErrUnexpectedEOF} {
		for _, rq := range requests {
			for _, timeout := range []time.Duration{0, 5 * time.Second} {
				t.Run(fmt.Sprintf("%v/%s/AttemptTimeout %v", bodyErr, rq.name, timeout), func(t *testing.T) {
					t.Parallel()
					var hits atomic.Int32
					srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						hits.Add(1)
						_, _ = io.Copy(io.Discard, r.Body)
						w.WriteHeader(503)
					}))
					defer srv.Close()
					var hook giveUps
					var asked []error
					var mu sync.Mutex
					client, _ := newClient(t, retryhttp.Policy{
						AttemptTimeout: timeout,
						OnGiveUp:       hook.record,
						Retryable: func(resp *http.Response, err error) bool {
							mu.Lock()
							asked = append(asked, err)
							mu.Unlock()
							return retryhttp.DefaultRetryable(resp, err)
						},
					})
					req := newRequest(t, rq.method, srv.URL, nil)
					req.Body = &brokenBody{err: bodyErr}
					req.ContentLength = -1
					if rq.getBody {
						req.GetBody = func() (io.ReadCloser, error) { return &brokenBody{err: bodyErr}, nil }
					}
					req.Header = rq.header.Clone()

					resp, err := client.Do(req)

					require.Error(t, err, "%v", resp)
					assert.ErrorIs(t, err, bodyErr, "the body's own error")
					assert.NotErrorIs(t, err, retryhttp.ErrAttemptTimeout)
					var giveUp *retryhttp.GiveUpError
					assert.False(t, errors.As(err, &giveUp), "not a give-up: %v", err)
					mu.Lock()
					for _, e := range asked {
						assert.NotErrorIs(t, e, bodyErr, "Retryable was asked about the body's error")
					}
					mu.Unlock()
					assert.Empty(t, hook.all(), "OnGiveUp")
					assert.LessOrEqual(t, hits.Load(), int32(1))
				})
			}
		}
	}
}

func TestNilURLIsAnErrorNotAPanic(t *testing.T) {
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

// net/http resends a request by itself on a kept-alive connection that the
// server closed as the request went out, with a body from the request's
// GetBody: an error of that body is the caller's too, and ends the request
// at once, unasked of Retryable, without OnRetry or OnGiveUp.
func TestCallersBodyErrorInNetHTTPsOwnResend(t *testing.T) {
	srv := newRawServer(t, func(n int, conn *net.TCPConn, w *bufio.Writer, _ *http.Request) {
		if n == 2 {
			conn.Close() // the PUT was read: close without an answer
			return
		}
		_, _ = w.WriteString(okResponse)
	})
	var asked, retries, giveUps atomic.Int32
	client, _ := newClient(t, retryhttp.Policy{
		Retryable: func(resp *http.Response, err error) bool {
			asked.Add(1)
			return retryhttp.DefaultRetryable(resp, err)
		},
		OnRetry:  func(retryhttp.RetryEvent) { retries.Add(1) },
		OnGiveUp: func(retryhttp.GiveUpEvent) { giveUps.Add(1) },
	})
	warm, _, err := do(t, client, newRequest(t, "GET", srv.url(), nil))
	require.NoError(t, err)
	require.Equal(t, 200, warm.StatusCode)
	asked.Store(0)

	req := newRequest(t, "PUT", srv.url(), strings.NewReader("1234567890"))
	req.Header.Set("Idempotency-Key", "k") // so that net/http resends it by itself
	// brokenBody fails after 5 of these 10 bytes.
	var getBodies atomic.Int32
	req.GetBody = func() (io.ReadCloser, error) {
		getBodies.Add(1)
		return &brokenBody{err: io.ErrUnexpectedEOF}, nil
	}

	_, err = client.Do(req)

	require.Error(t, err)
	require.Positive(t, getBodies.Load(), "net/http resent the request by itself")
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
	var giveUp *retryhttp.GiveUpError
	assert.False(t, errors.As(err, &giveUp), "the caller's error is returned as it is")
	assert.Zero(t, asked.Load(), "Retryable was not asked")
	assert.Zero(t, retries.Load(), "no retry")
	assert.Zero(t, giveUps.Load(), "no give-up")
	assert.Equal(t, int32(1), getBodies.Load(), "only net/http's resend read a fresh body")
}
