package retryhttp_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/b4dedce7/retryhttp"
)

// restartingServer serves on a fixed loopback port, and can go away (its
// listener and connections closed, as a process that exits) and come back
// on the same port. It counts how many times it processed each POST, by
// X-Request-Id.
type restartingServer struct {
	addr  string
	mu    sync.Mutex
	srv   *http.Server
	posts map[string]int
}

func newRestartingServer(t *testing.T) *restartingServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &restartingServer{addr: ln.Addr().String(), posts: map[string]int{}}
	s.serve(ln)
	t.Cleanup(s.stop)
	return s
}

func (s *restartingServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	if r.Method == http.MethodPost {
		s.mu.Lock()
		s.posts[r.Header.Get("X-Request-Id")]++
		s.mu.Unlock()
	}
	_, _ = io.WriteString(w, "ok")
}

func (s *restartingServer) serve(ln net.Listener) {
	srv := &http.Server{Handler: s}
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

func (s *restartingServer) stop() {
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	_ = srv.Close()
}

// start listens again on the same address.
func (s *restartingServer) start() error {
	var err error
	for range 50 {
		var ln net.Listener
		if ln, err = net.Listen("tcp", s.addr); err == nil {
			s.serve(ln)
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("listening again on %s: %w", s.addr, err)
}

// TestServerRestartIsRiddenOutWithoutProcessingAPostTwice is issue 23's
// restart as a new user would try it: 5 requests a second, GETs and POSTs
// without an Idempotency-Key in turn, 40 in all, through one Transport with
// the default Policy, to a server whose listener closes for 2 s and reopens
// on the same port. A refused dial sent nothing and cost the server
// nothing: at least 95% must end 200, and no POST may be processed twice.
// It counts outcomes, not times: the schedule only places 10 requests in
// the outage, and the default backoff (1, 2, 4 s ±50%) outlasts it.
func TestServerRestartIsRiddenOutWithoutProcessingAPostTwice(t *testing.T) {
	if testing.Short() {
		t.Skip("plays 8 s of requests against a restarting server on loopback, in real time")
	}
	t.Parallel() // mostly waiting: it overlaps the other real-time tests
	const (
		requests = 40
		interval = 200 * time.Millisecond
		downAt   = 2100 * time.Millisecond // between two requests
		down     = 2 * time.Second
	)
	srv := newRestartingServer(t)
	client := &http.Client{Transport: &retryhttp.Transport{Base: newBase(t)}}

	start := time.Now()
	restarted := make(chan error, 1)
	go func() {
		time.Sleep(time.Until(start.Add(downAt)))
		srv.stop()
		time.Sleep(time.Until(start.Add(downAt + down)))
		restarted <- srv.start()
	}()
	var mu sync.Mutex
	var ok int
	var failures []string
	var wg sync.WaitGroup
	for i := range requests {
		time.Sleep(time.Until(start.Add(time.Duration(i) * interval)))
		post := i%2 == 1
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			method, body := http.MethodGet, io.Reader(nil)
			if post {
				method, body = http.MethodPost, strings.NewReader(`{"order":`+strconv.Itoa(i)+`}`)
			}
			req, err := http.NewRequestWithContext(ctx, method, "http://"+srv.addr+"/", body)
			if !assert.NoError(t, err) {
				return
			}
			req.Header.Set("X-Request-Id", strconv.Itoa(i))
			resp, err := client.Do(req)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failures = append(failures, fmt.Sprintf("%s %d: %v", method, i, err))
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				ok++
			} else {
				failures = append(failures, fmt.Sprintf("%s %d: status %d", method, i, resp.StatusCode))
			}
		})
	}
	wg.Wait()
	require.NoError(t, <-restarted)

	assert.GreaterOrEqual(t, ok, requests*95/100, "requests that ended 200, of %d; the others: %s", requests, strings.Join(failures, "; "))
	srv.mu.Lock()
	defer srv.mu.Unlock()
	for id, n := range srv.posts {
		assert.LessOrEqual(t, n, 1, "POST %s was processed %d times", id, n)
	}
}
