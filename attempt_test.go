package retryhttp_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
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

// hangingServer holds its first `hangs` requests until they are cancelled
// (or the test ends) and answers the rest "ok".
func hangingServer(t *testing.T, hangs int32) (*httptest.Server, *atomic.Int32) {
	var hits atomic.Int32
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) <= hangs {
			select {
			case <-r.Context().Done():
			case <-stop:
			}
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(func() { close(stop); srv.Close() })
	return srv, &hits
}

func TestAttemptTimeout(t *testing.T) {
	t.Parallel() // mostly waiting on real timers: it overlaps the other real-time tests
	t.Run("a hung attempt is abandoned and retried", func(t *testing.T) {
		if testing.Short() {
			t.Skip("waits a real AttemptTimeout of 1 s, long enough for the retry on a busy machine")
		}
		srv, hits := hangingServer(t, 1)
		var retried []error
		// A second is long enough for the retry to be answered within it on
		// a busy machine too; the server holds the first attempt until the
		// test ends.
		client, _ := newClient(t, retryhttp.Policy{
			AttemptTimeout: time.Second,
			OnRetry:        func(ev retryhttp.RetryEvent) { retried = append(retried, ev.Err) },
		})

		started := time.Now()
		resp, body, err := do(t, client, newRequest(t, "GET", srv.URL, nil))

		require.NoError(t, err)
		assert.Equal(t, 200, resp.StatusCode)
		assert.Equal(t, "ok", body)
		assert.EqualValues(t, 2, hits.Load())
		assert.Less(t, time.Since(started), 30*time.Second, "abandoned, not held until the server lets go")
		require.Len(t, retried, 1)
		assert.ErrorIs(t, retried[0], retryhttp.ErrAttemptTimeout)
		assert.NotErrorIs(t, retried[0], context.DeadlineExceeded)
		assert.Contains(t, retried[0].Error(), "1s", "the error says how long it waited")
	})
	t.Run("the body is not bound by the timeout", func(t *testing.T) {
		if testing.Short() {
			t.Skip("reads a body sent over 300 ms of real time")
		}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(200)
			for range 6 {
				_, _ = io.WriteString(w, "chunk ")
				http.NewResponseController(w).Flush()
				time.Sleep(50 * time.Millisecond)
			}
		}))
		defer srv.Close()
		client, _ := newClient(t, retryhttp.Policy{AttemptTimeout: 100 * time.Millisecond})

		resp, body, err := do(t, client, newRequest(t, "GET", srv.URL, nil))

		require.NoError(t, err)
		assert.Equal(t, 200, resp.StatusCode)
		assert.Equal(t, strings.Repeat("chunk ", 6), body, "read whole, 300 ms after the headers")
	})
	t.Run("a POST is not retried after a timeout", func(t *testing.T) {
		if testing.Short() {
			t.Skip("the attempt times out on the real timer: 300 ms of real time")
		}
		srv, hits := hangingServer(t, 1)
		var hook giveUps
		// 300 ms, so that the attempt reaches the server before it times
		// out on a busy machine too.
		client, _ := newClient(t, retryhttp.Policy{AttemptTimeout: 300 * time.Millisecond, OnGiveUp: hook.record})

		_, err := client.Do(newRequest(t, "POST", srv.URL, strings.NewReader("charge")))

		require.Error(t, err)
		var giveUp *retryhttp.GiveUpError
		require.ErrorAs(t, err, &giveUp)
		assert.Same(t, retryhttp.ErrNotIdempotent, giveUp.Reason)
		assert.ErrorIs(t, giveUp.Reason, retryhttp.ErrNotResendable)
		assert.ErrorIs(t, giveUp.Err, retryhttp.ErrAttemptTimeout)
		assert.EqualValues(t, 1, hits.Load())
		assert.Len(t, hook.all(), 1)
	})
	t.Run("a give-up on timeouts", func(t *testing.T) {
		if testing.Short() {
			t.Skip("three attempts time out on the real timer: 900 ms of real time")
		}
		srv, hits := hangingServer(t, 100)
		// 300 ms, so that each attempt reaches the server before it times
		// out on a busy machine too: 50 ms let one of three through there.
		client, _ := newClient(t, retryhttp.Policy{AttemptTimeout: 300 * time.Millisecond, MaxAttempts: 3})

		_, err := client.Get(srv.URL)

		var giveUp *retryhttp.GiveUpError
		require.ErrorAs(t, err, &giveUp)
		assert.Equal(t, 3, giveUp.Attempts)
		assert.Same(t, retryhttp.ErrAttemptsUsedUp, giveUp.Reason)
		assert.ErrorIs(t, giveUp.Err, retryhttp.ErrAttemptTimeout)
		assert.ErrorIs(t, err, retryhttp.ErrAttemptTimeout)
		assert.NotErrorIs(t, err, context.DeadlineExceeded, "callers can tell an attempt's timeout from their own deadline")
		assert.EqualValues(t, 3, hits.Load())
	})
	t.Run("the caller's deadline still bounds the whole call", func(t *testing.T) {
		srv, _ := hangingServer(t, 100)
		client, _ := newClient(t, retryhttp.Policy{AttemptTimeout: 20 * time.Second})
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()

		started := time.Now()
		_, err := client.Do(newRequest(t, "GET", srv.URL, nil).WithContext(ctx))

		require.Error(t, err)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.NotErrorIs(t, err, retryhttp.ErrAttemptTimeout)
		assert.Less(t, time.Since(started), 10*time.Second, "ended well before the attempt's timeout")
	})
	t.Run("http.Client.Timeout still bounds the whole call", func(t *testing.T) {
		srv, _ := hangingServer(t, 100)
		client, _ := newClient(t, retryhttp.Policy{AttemptTimeout: 20 * time.Second})
		client.Timeout = 100 * time.Millisecond

		started := time.Now()
		_, err := client.Get(srv.URL)

		require.Error(t, err)
		assert.NotErrorIs(t, err, retryhttp.ErrAttemptTimeout)
		assert.Less(t, time.Since(started), 10*time.Second, "ended well before the attempt's timeout")
	})
	t.Run("a response body closed early releases the attempt", func(t *testing.T) {
		srv := retrytest.NewServer(t).Otherwise(retrytest.OK(strings.Repeat("x", 1<<20)))
		var mu sync.Mutex
		var attemptCtx context.Context
		base := roundTripFunc(func(req *http.Request) (*http.Response, error) {
			mu.Lock()
			attemptCtx = req.Context()
			mu.Unlock()
			return newBase(t).RoundTrip(req)
		})
		client := &http.Client{Transport: &retryhttp.Transport{Base: base, Policy: retryhttp.Policy{AttemptTimeout: time.Second}}}
		for range 20 {
			resp, err := client.Get(srv.URL)
			require.NoError(t, err)
			_, _ = io.CopyN(io.Discard, resp.Body, 10)
			mu.Lock()
			ctx := attemptCtx
			mu.Unlock()
			assert.NoError(t, ctx.Err(), "the attempt lives while its body is read")
			require.NoError(t, resp.Body.Close())
			assert.Error(t, ctx.Err(), "closing the body released the attempt")
		}
	})
}

func TestNetHTTPsOwnTimeoutsAreRetried(t *testing.T) {
	t.Run("ResponseHeaderTimeout", func(t *testing.T) {
		if testing.Short() {
			t.Skip("waits net/http's own timer of 1 s, in real time")
		}
		t.Parallel()
		srv, hits := hangingServer(t, 1)
		// Long enough for the retry's headers to come within it on a busy
		// machine too.
		base := &http.Transport{ResponseHeaderTimeout: time.Second}
		t.Cleanup(base.CloseIdleConnections)
		client := &http.Client{Transport: &retryhttp.Transport{Base: base, Policy: retryhttp.Policy{Clock: retrytest.NewClock(t)}}}

		resp, body, err := do(t, client, newRequest(t, "GET", srv.URL, nil))

		require.NoError(t, err)
		assert.Equal(t, 200, resp.StatusCode)
		assert.Equal(t, "ok", body)
		assert.EqualValues(t, 2, hits.Load())
	})
	t.Run("net.Dialer Timeout", func(t *testing.T) {
		srv := retrytest.NewServer(t, retrytest.OK("ok"))
		var dials atomic.Int32
		base := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			d := &net.Dialer{}
			if dials.Add(1) == 1 {
				d.Timeout = time.Nanosecond // expires before the dial can finish
			}
			return d.DialContext(ctx, network, addr)
		}}
		t.Cleanup(base.CloseIdleConnections)
		var retried []error
		client := &http.Client{Transport: &retryhttp.Transport{Base: base, Policy: retryhttp.Policy{
			Clock:   retrytest.NewClock(t),
			OnRetry: func(ev retryhttp.RetryEvent) { retried = append(retried, ev.Err) },
		}}}

		resp, _, err := do(t, client, newRequest(t, "GET", srv.URL, nil))

		require.NoError(t, err)
		assert.Equal(t, 200, resp.StatusCode)
		require.Len(t, retried, 1)
		assert.ErrorIs(t, retried[0], retryhttp.ErrAttemptTimeout)
		assert.Contains(t, retried[0].Error(), "i/o timeout")
	})
	t.Run("TLSHandshakeTimeout", func(t *testing.T) {
		if testing.Short() {
			t.Skip("waits net/http's own timer of 1 s, in real time")
		}
		t.Parallel()
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, "ok")
		}))
		silent := &silentFirstListener{Listener: srv.Listener, release: make(chan struct{})}
		srv.Listener = silent
		srv.StartTLS()
		t.Cleanup(func() { close(silent.release); srv.Close() })
		base := srv.Client().Transport.(*http.Transport).Clone()
		// Long enough for the retry's handshake to end within it on a busy
		// machine, under -race, too.
		base.TLSHandshakeTimeout = time.Second
		base.TLSClientConfig = &tls.Config{RootCAs: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}
		t.Cleanup(base.CloseIdleConnections)
		var retried []error
		client := &http.Client{Transport: &retryhttp.Transport{Base: base, Policy: retryhttp.Policy{
			Clock:   retrytest.NewClock(t),
			OnRetry: func(ev retryhttp.RetryEvent) { retried = append(retried, ev.Err) },
		}}}

		resp, body, err := do(t, client, newRequest(t, "GET", srv.URL, nil))

		require.NoError(t, err)
		assert.Equal(t, 200, resp.StatusCode)
		assert.Equal(t, "ok", body)
		require.Len(t, retried, 1)
		assert.ErrorIs(t, retried[0], retryhttp.ErrAttemptTimeout)
		assert.Contains(t, retried[0].Error(), "TLS handshake timeout")
	})
}

// silentFirstListener holds its first connection without a word until
// release is closed, so that a TLS handshake on it times out.
type silentFirstListener struct {
	net.Listener
	once    sync.Once
	release chan struct{}
}

func (l *silentFirstListener) Accept() (net.Conn, error) {
	for {
		conn, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		first := false
		l.once.Do(func() { first = true })
		if !first {
			return conn, nil
		}
		go func() {
			<-l.release
			conn.Close()
		}()
	}
}

func TestAttemptTimeoutIsValidated(t *testing.T) {
	p := retryhttp.Policy{AttemptTimeout: -time.Second}
	err := p.Validate()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Policy.AttemptTimeout")
	assert.False(t, errors.Is(err, retryhttp.ErrAttemptTimeout))
}

func TestAttemptTimeoutKeepsBodiesAsTheyAre(t *testing.T) {
	srv := retrytest.NewServer(t).Otherwise(retrytest.OK("ok"))
	client, _ := newClient(t, retryhttp.Policy{AttemptTimeout: time.Second})
	resp, err := client.Head(srv.URL)
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, http.NoBody, resp.Body, "a response without a body keeps http.NoBody")
}

// A 101 Switching Protocols body from net/http is an io.ReadWriteCloser with
// CloseWrite, which httputil.ReverseProxy uses to pass a half-close through an
// upgraded connection. The body the Transport returns keeps both, with and
// without AttemptTimeout.
func TestUpgradeBodyKeepsCloseWrite(t *testing.T) {
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
