package retryhttp_test

import (
	"bufio"
	"bytes"
	"context"
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

// rawServer is a loopback HTTP/1.1 server written on bare TCP, so that a
// test controls every byte and every reset. Each request is handed to
// serve with its number (from 1), its body already read and recorded.
type rawServer struct {
	ln     net.Listener
	serve  func(n int, conn *net.TCPConn, w *bufio.Writer, req *http.Request)
	mu     sync.Mutex
	bodies []recordedRequest
	wg     sync.WaitGroup
	conns  map[net.Conn]bool
	closed bool
}

type recordedRequest struct {
	method string
	body   []byte
}

func newRawServer(t *testing.T, serve func(n int, conn *net.TCPConn, w *bufio.Writer, req *http.Request)) *rawServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &rawServer{ln: ln, serve: serve, conns: map[net.Conn]bool{}}
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(s.close)
	return s
}

func (s *rawServer) url() string { return "http://" + s.ln.Addr().String() }

func (s *rawServer) accept() {
	defer s.wg.Done()
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			conn.Close()
			return
		}
		s.conns[conn] = true
		s.wg.Add(1)
		s.mu.Unlock()
		go s.handle(conn.(*net.TCPConn))
	}
}

func (s *rawServer) handle(conn *net.TCPConn) {
	defer s.wg.Done()
	defer func() {
		conn.Close()
		s.mu.Lock()
		delete(s.conns, conn)
		s.mu.Unlock()
	}()
	r := bufio.NewReader(conn)
	w := bufio.NewWriter(conn)
	for {
		req, err := http.ReadRequest(r)
		if err != nil {
			return
		}
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return
		}
		s.mu.Lock()
		s.bodies = append(s.bodies, recordedRequest{req.Method, body})
		n := len(s.bodies)
		s.mu.Unlock()
		s.serve(n, conn, w, req)
		if w.Flush() != nil || req.Close {
			return
		}
	}
}

func (s *rawServer) requests() []recordedRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]recordedRequest(nil), s.bodies...)
}

func (s *rawServer) close() {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.ln.Close()
	s.wg.Wait()
}

// resetConn flushes what w holds and resets the connection.
func resetConn(conn *net.TCPConn, w *bufio.Writer) {
	_ = w.Flush()
	_ = conn.SetLinger(0)
	conn.Close()
}

const okResponse = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

// faultOnFirst serves fault to the first request and 200 "ok" to the rest.
func faultOnFirst(fault func(conn *net.TCPConn, w *bufio.Writer)) func(int, *net.TCPConn, *bufio.Writer, *http.Request) {
	return func(n int, conn *net.TCPConn, w *bufio.Writer, _ *http.Request) {
		if n == 1 {
			fault(conn, w)
			return
		}
		_, _ = w.WriteString(okResponse)
	}
}

// A request of each kind the invariants speak about.
var faultRequests = []struct {
	name     string
	method   string
	body     string
	header   http.Header
	mayRetry bool
}{
	{"GET", "GET", "", nil, true},
	{"PUT with body", "PUT", strings.Repeat("put-body ", 1000), nil, true},
	{"POST without key", "POST", "charge", nil, false},
	{"POST with key", "POST", "charge", http.Header{"Idempotency-Key": {"k-42"}}, true},
}

func TestFaultInjection(t *testing.T) {
	faults := []struct {
		name  string
		serve func(int, *net.TCPConn, *bufio.Writer, *http.Request)
		// wantOK says whether a request that may be retried ends in 200.
		wantOK bool
	}{
		{"reset before the response", faultOnFirst(func(conn *net.TCPConn, w *bufio.Writer) {
			resetConn(conn, w)
		}), true},
		{"reset after the headers", faultOnFirst(func(conn *net.TCPConn, w *bufio.Writer) {
			_, _ = w.WriteString("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 1000\r\n\r\n")
			resetConn(conn, w)
		}), true},
		{"reset in the middle of the body", faultOnFirst(func(conn *net.TCPConn, w *bufio.Writer) {
			_, _ = w.WriteString("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 1000\r\n\r\n" + strings.Repeat("x", 500))
			resetConn(conn, w)
		}), true},
		{"close in the middle of a 200 body", faultOnFirst(func(conn *net.TCPConn, w *bufio.Writer) {
			_, _ = w.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + strings.Repeat("x", 500))
			_ = w.Flush()
			conn.Close()
		}), false}, // the headers arrived: the body's error is the caller's to see
		{"headers sent slowly", faultOnFirst(func(conn *net.TCPConn, w *bufio.Writer) {
			for _, b := range []byte("HTTP/1.1 503 Service Unavailable\r\nRetry-After: 0\r\nContent-Length: 0\r\n\r\n") {
				if w.WriteByte(b) != nil || w.Flush() != nil {
					return
				}
				time.Sleep(2 * time.Millisecond)
			}
		}), true},
		{"503 body trickled forever", faultOnFirst(func(conn *net.TCPConn, w *bufio.Writer) {
			_, _ = w.WriteString("HTTP/1.1 503 Service Unavailable\r\nRetry-After: 0\r\nTransfer-Encoding: chunked\r\n\r\n")
			for range 1000 { // bounded: about 10 s, far past the test's deadline
				if _, err := w.WriteString("1\r\n.\r\n"); err != nil || w.Flush() != nil {
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
		}), true},
		{"huge 503 body", faultOnFirst(func(conn *net.TCPConn, w *bufio.Writer) {
			_, _ = w.WriteString("HTTP/1.1 503 Service Unavailable\r\nRetry-After: 0\r\nContent-Length: 1073741824\r\n\r\n")
			chunk := make([]byte, 64<<10)
			for range 16384 { // 1 GiB at most; the client closes long before
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		}), true},
		{"several Retry-After headers", faultOnFirst(func(conn *net.TCPConn, w *bufio.Writer) {
			_, _ = w.WriteString("HTTP/1.1 503 Service Unavailable\r\nRetry-After: 3600\r\nRetry-After: 0\r\nContent-Length: 0\r\n\r\n")
		}), true},
		{"empty Retry-After", faultOnFirst(func(conn *net.TCPConn, w *bufio.Writer) {
			_, _ = w.WriteString("HTTP/1.1 503 Service Unavailable\r\nRetry-After: \r\nContent-Length: 0\r\n\r\n")
		}), true},
		{"invalid Retry-After", faultOnFirst(func(conn *net.TCPConn, w *bufio.Writer) {
			_, _ = w.WriteString("HTTP/1.1 503 Service Unavailable\r\nRetry-After: -5, Fri, 99 Xyz 2026\r\nContent-Length: 0\r\n\r\n")
		}), true},
		{"keep-alive connection closed after every answer", func(n int, conn *net.TCPConn, w *bufio.Writer, _ *http.Request) {
			if n == 1 {
				_, _ = w.WriteString("HTTP/1.1 503 Service Unavailable\r\nRetry-After: 0\r\nContent-Length: 4\r\n\r\nbusy")
			} else {
				_, _ = w.WriteString(okResponse)
			}
			_ = w.Flush()
			conn.Close() // without saying "Connection: close"
		}, true},
	}
	for _, fault := range faults {
		for _, rq := range faultRequests {
			t.Run(fault.name+"/"+rq.name, func(t *testing.T) {
				t.Parallel()
				srv := newRawServer(t, fault.serve)
				base, resp, err := sendWithInvariants(t, srv.url(), rq.method, rq.body, rq.header)

				reqs := srv.requests()
				if !rq.mayRetry {
					assert.LessOrEqual(t, len(reqs), 1, "a request that may not be repeated reached the server at most once")
				}
				for i, r := range reqs {
					assert.Equal(t, rq.method, r.method)
					assert.Equal(t, rq.body, string(r.body), "attempt %d sent the body unchanged", i+1)
				}
				if fault.wantOK && rq.mayRetry {
					require.NoError(t, err)
					assert.Equal(t, 200, resp.StatusCode)
					assert.Equal(t, "ok", readAll(t, resp))
				} else if resp != nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				assert.Equal(t, base.responses(), base.closed(), "every response body was closed")
			})
		}
	}
}

// sendWithInvariants sends one request through a Transport with a 3 s
// deadline and checks that it returned within the deadline and a margin. It
// closes nothing: the caller reads and closes the response.
func sendWithInvariants(t *testing.T, url, method, body string, header http.Header) (*closeRecorder, *http.Response, error) {
	t.Helper()
	const deadline, margin = 3 * time.Second, 500 * time.Millisecond
	base := &closeRecorder{base: newBase(t)}
	rt := &retryhttp.Transport{Base: base, Policy: retryhttp.Policy{
		Backoff: noWait, Budget: retryhttp.UnlimitedBudget(),
	}}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	t.Cleanup(cancel)
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	require.NoError(t, err)
	for k, v := range header {
		req.Header[k] = v
	}
	started := time.Now()
	resp, err := rt.RoundTrip(req)
	assert.Less(t, time.Since(started), deadline+margin, "returned within the deadline")
	return base, resp, err
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

func TestSlowHeadersPastTheDeadline(t *testing.T) {
	srv := newRawServer(t, func(n int, conn *net.TCPConn, w *bufio.Writer, _ *http.Request) {
		for _, b := range []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") {
			if w.WriteByte(b) != nil || w.Flush() != nil {
				return
			}
			time.Sleep(100 * time.Millisecond) // about 4 s in all
		}
	})
	base := &closeRecorder{base: newBase(t)}
	client := &http.Client{Transport: &retryhttp.Transport{Base: base}}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()

	started := time.Now()
	_, err := client.Do(newRequest(t, "GET", srv.url(), nil).WithContext(ctx))

	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(started), 800*time.Millisecond)
	assert.Len(t, srv.requests(), 1)
}

func TestHTTP2Faults(t *testing.T) {
	tests := []struct {
		name  string
		fault func(w http.ResponseWriter, r *http.Request, srv *httptest.Server)
	}{
		{"stream reset", func(w http.ResponseWriter, r *http.Request, _ *httptest.Server) {
			panic(http.ErrAbortHandler) // the HTTP/2 server answers RST_STREAM
		}},
		{"GOAWAY after a 503", func(w http.ResponseWriter, r *http.Request, _ *httptest.Server) {
			// net/http's HTTP/2 server turns Connection: close into GOAWAY.
			w.Header().Set("Connection", "close")
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(503)
		}},
		{"connection closed mid-request", func(w http.ResponseWriter, r *http.Request, srv *httptest.Server) {
			w.WriteHeader(200)
			http.NewResponseController(w).Flush()
			srv.CloseClientConnections()
			<-r.Context().Done()
		}},
	}
	for _, tt := range tests {
		for _, rq := range faultRequests {
			t.Run(tt.name+"/"+rq.name, func(t *testing.T) {
				var hits atomic.Int32
				var mu sync.Mutex
				var bodies []string
				var srv *httptest.Server
				srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					b, _ := io.ReadAll(r.Body)
					mu.Lock()
					bodies = append(bodies, string(b))
					mu.Unlock()
					assert.Equal(t, 2, r.ProtoMajor, "served over HTTP/2")
					if hits.Add(1) == 1 {
						tt.fault(w, r, srv)
						return
					}
					_, _ = io.WriteString(w, "ok")
				}))
				srv.EnableHTTP2 = true
				srv.Config.ErrorLog = quietLog()
				srv.StartTLS()
				defer srv.Close()
				base := &closeRecorder{base: srv.Client().Transport}
				defer srv.Client().CloseIdleConnections()
				rt := &retryhttp.Transport{Base: base, Policy: retryhttp.Policy{Backoff: noWait}}
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				defer cancel()
				var rd io.Reader
				if rq.body != "" {
					rd = strings.NewReader(rq.body)
				}
				req, err := http.NewRequestWithContext(ctx, rq.method, srv.URL, rd)
				require.NoError(t, err)
				for k, v := range rq.header {
					req.Header[k] = v
				}

				resp, err := rt.RoundTrip(req)

				mu.Lock()
				got := append([]string(nil), bodies...)
				mu.Unlock()
				for i, b := range got {
					assert.Equal(t, rq.body, b, "attempt %d sent the body unchanged", i+1)
				}
				if !rq.mayRetry {
					assert.Len(t, got, 1, "a request that may not be repeated reached the server once")
					if resp != nil {
						resp.Body.Close()
					}
				} else if tt.name != "connection closed mid-request" {
					require.NoError(t, err)
					assert.Equal(t, 200, resp.StatusCode)
					assert.Equal(t, "ok", readAll(t, resp))
					assert.Len(t, got, 2)
				} else if resp != nil {
					// The headers came through before the connection died;
					// the broken body is the caller's to see.
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				assert.Equal(t, base.responses(), base.closed(), "every response body was closed")
			})
		}
	}
}

// A server that restarts: it refuses connections for a while, then answers.
func TestServerRestart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close() // down: connections are refused

	clock := retrytest.NewClock(t)
	var restarted sync.Once
	var srv *http.Server
	client := &http.Client{Transport: &retryhttp.Transport{Base: newBase(t), Policy: retryhttp.Policy{
		Clock: clock, Backoff: noWait, MaxAttempts: 5,
		OnRetry: func(ev retryhttp.RetryEvent) {
			if ev.Attempt == 2 { // back up before the third attempt
				restarted.Do(func() {
					ln, err := net.Listen("tcp", addr)
					require.NoError(t, err)
					srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						_, _ = io.WriteString(w, "up again")
					})}
					go func() { _ = srv.Serve(ln) }()
				})
			}
		},
	}}}
	resp, body, err := do(t, client, newRequest(t, "GET", "http://"+addr, nil))
	require.NoError(t, err)
	require.NotNil(t, srv)
	defer srv.Close()
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "up again", body)
	assert.Len(t, clock.Waits(), 2)
}

// Soak: many requests from many goroutines through one Transport against a
// server that mixes every outcome.
func TestSoak(t *testing.T) {
	requests, goroutines := 10_000, 200
	if testing.Short() {
		requests, goroutines = 1_000, 50
	}
	const ratio, burst, maxAttempts = 0.1, 10, 4

	// Each request's path selects its script; the outcome it should end
	// with follows from the script and the attempts allowed.
	scripts := [][]retrytest.Answer{
		{retrytest.OK("a")},
		{retrytest.Unavailable(2 * time.Second), retrytest.OK("b")},
		{retrytest.UnavailableUntil(3 * time.Second), retrytest.OK("c")},
		{retrytest.TooManyRequests(time.Second), retrytest.Drop(), retrytest.OK("d")},
		{retrytest.Drop(), retrytest.OK("e")},
		{retrytest.Reply(500, "f")},
		{retrytest.OK("g")},
		{retrytest.OK("h")},
	}
	wantBody := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	clock := retrytest.NewClock(t)
	srv := retrytest.NewServer(t).UseClock(clock)
	for i := range requests {
		srv.On(fmt.Sprintf("/%d", i), scripts[i%len(scripts)]...)
	}
	budget := retryhttp.NewBudget(ratio, burst)
	base := newBase(t)
	base.DisableKeepAlives = true // so that net/http never resends by itself and every attempt is the Transport's
	base.MaxConnsPerHost = 64
	rt := &retryhttp.Transport{Base: base, Policy: retryhttp.Policy{
		Clock: clock, MaxAttempts: maxAttempts, Budget: budget,
		MaxElapsed: 1000 * time.Hour, MaxRetryAfter: time.Minute,
	}}
	client := &http.Client{Transport: rt}

	// Watch the budget while the soak runs.
	stop := make(chan struct{})
	var watch sync.WaitGroup
	var minTokens, maxTokens atomic.Value
	minTokens.Store(float64(burst))
	maxTokens.Store(float64(0))
	watch.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			tok := budget.Tokens()
			if tok < minTokens.Load().(float64) {
				minTokens.Store(tok)
			}
			if tok > maxTokens.Load().(float64) {
				maxTokens.Store(tok)
			}
			time.Sleep(100 * time.Microsecond)
		}
	})

	var next atomic.Int64
	var wrong atomic.Int32
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= requests {
					return
				}
				if !soakOutcomeOK(client, srv.URL, i, wantBody[i%len(scripts)]) {
					wrong.Add(1)
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	watch.Wait()

	assert.Zero(t, wrong.Load(), "requests that ended with an outcome their script does not allow")
	assert.GreaterOrEqual(t, minTokens.Load().(float64), 0.0)
	assert.LessOrEqual(t, maxTokens.Load().(float64), float64(burst))
	retries := srv.Count() - requests
	bound := burst + ratio*float64(requests)
	assert.LessOrEqual(t, float64(retries), bound, "retries within the budget")
	// Half the requests fail at first and want a retry, far more than the
	// budget holds, so the budget, not the scripts, sets the count.
	assert.GreaterOrEqual(t, float64(retries), 0.9*bound, "the budget was spent")
	t.Logf("%d requests from %d goroutines: the server saw %d attempts (%d retries, bound %.0f)",
		requests, goroutines, srv.Count(), retries, bound)
}

// soakOutcomeOK sends request i and reports whether its outcome is one its
// script allows: the final body after retries, or, when the budget ran out,
// an answer the script gave on the way.
func soakOutcomeOK(client *http.Client, url string, i int, final string) bool {
	resp, err := client.Get(fmt.Sprintf("%s/%d", url, i))
	if err != nil {
		// Only a dropped connection, which the scripts ending in "d" and
		// "e" have, may end a request in an error.
		return (final == "d" || final == "e") && strings.Contains(err.Error(), "EOF")
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return false
	}
	switch resp.StatusCode {
	case 200:
		return string(body) == final
	case 500:
		return final == "f"
	case 503, 429:
		return final != "a" && final != "e" && final != "f" && final != "g" && final != "h"
	}
	return false
}

func TestRequestBodyIsNotBuffered(t *testing.T) {
	// A body that can be read once, with GetBody to replay it: the Transport
	// must stream it, never read it itself.
	srv := retrytest.NewServer(t, retrytest.Unavailable(0), retrytest.OK("done"))
	client, _ := newClient(t, retryhttp.Policy{})
	payload := bytes.Repeat([]byte{'z'}, 1<<20)
	var opened atomic.Int32
	req := newRequest(t, "PUT", srv.URL, bytes.NewReader(payload))
	req.GetBody = func() (io.ReadCloser, error) {
		opened.Add(1)
		return io.NopCloser(bytes.NewReader(payload)), nil
	}
	_, _, err := do(t, client, req)
	require.NoError(t, err)
	assert.EqualValues(t, 1, opened.Load(), "the retry's body came from GetBody")
	for _, r := range srv.Requests() {
		assert.Len(t, r.Body, len(payload))
	}
}
