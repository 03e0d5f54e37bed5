package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ---- Restart ----
//
// Issue 23's second case, as a new user would try it: 5 requests a second,
// GETs and POSTs without an Idempotency-Key in turn, 40 in all, to a server
// that restarts: its listener and connections close for restartDown and it
// listens again on the same 127.0.0.1 port. Each contender with its own
// defaults, at once, each against its own server. The server counts how
// many times it processed each POST: none may be processed twice.

const (
	restartRequests = 40
	restartInterval = 200 * time.Millisecond // 5 a second
	restartFrom     = 2100 * time.Millisecond
	restartDown     = 2 * time.Second
)

type restartResult struct {
	lib                  string
	requests, ok         int
	gets, getsOK         int
	posts, postsOK       int
	postsTwice           int    // POSTs the server processed more than once
	attempts             int    // requests the server processed, in all
	firstErr             string // the first error a caller got, if any
	took                 time.Duration
	serverUp, serverDown time.Duration
}

// restartServer is a server on a fixed loopback port that can go away and
// come back on it.
type restartServer struct {
	addr string
	mu   sync.Mutex
	srv  *http.Server
	seen map[string]int // POSTs processed, by X-Request-Id
	all  int
}

func newRestartServer() (*restartServer, error) {
	s := &restartServer{seen: map[string]int{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listening for the restart scenario: %w", err)
	}
	s.addr = ln.Addr().String()
	s.serve(ln)
	return s, nil
}

func (s *restartServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	s.mu.Lock()
	s.all++
	if r.Method == http.MethodPost {
		s.seen[r.Header.Get("X-Request-Id")]++
	}
	s.mu.Unlock()
	_, _ = io.WriteString(w, "ok")
}

func (s *restartServer) serve(ln net.Listener) {
	srv := &http.Server{Handler: s}
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

// stop closes the listener and every connection, as a process that exits.
func (s *restartServer) stop() {
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	_ = srv.Close()
}

// start listens again on the same address.
func (s *restartServer) start() error {
	var err error
	for range 50 { // the port is ours, but give a lingering socket a moment
		var ln net.Listener
		if ln, err = net.Listen("tcp", s.addr); err == nil {
			s.serve(ln)
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("listening again on %s: %w", s.addr, err)
}

// restartScenario runs every contender at once, each against its own
// server.
func restartScenario() []restartResult {
	results := make([]restartResult, len(libraries))
	var wg sync.WaitGroup
	for i, lib := range libraries {
		wg.Go(func() { results[i] = restartOne(lib) })
	}
	wg.Wait()
	return results
}

func restartOne(lib library) restartResult {
	r := restartResult{lib: lib.name, requests: restartRequests, serverDown: restartFrom, serverUp: restartFrom + restartDown}
	srv, err := newRestartServer()
	if err != nil {
		r.firstErr = err.Error()
		return r
	}
	defer srv.stop()
	client, closeIdle := clientFor(lib)
	defer closeIdle()
	start := time.Now()
	restarted := make(chan error, 1)
	go func() {
		time.Sleep(time.Until(start.Add(restartFrom)))
		srv.stop()
		time.Sleep(time.Until(start.Add(restartFrom + restartDown)))
		restarted <- srv.start()
	}()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range restartRequests {
		time.Sleep(time.Until(start.Add(time.Duration(i) * restartInterval)))
		post := i%2 == 1
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			method, body := http.MethodGet, io.Reader(nil)
			if post {
				method, body = http.MethodPost, strings.NewReader(`{"order":`+strconv.Itoa(i)+`}`)
			}
			req, _ := http.NewRequestWithContext(ctx, method, "http://"+srv.addr+"/", body)
			req.Header.Set("X-Request-Id", strconv.Itoa(i))
			status := 0
			resp, err := client.Do(req)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				status = resp.StatusCode
			}
			mu.Lock()
			defer mu.Unlock()
			if post {
				r.posts++
			} else {
				r.gets++
			}
			if status == http.StatusOK {
				r.ok++
				if post {
					r.postsOK++
				} else {
					r.getsOK++
				}
			}
			if err != nil && r.firstErr == "" {
				r.firstErr = err.Error()
			}
		})
	}
	wg.Wait()
	r.took = time.Since(start)
	if err := <-restarted; err != nil && r.firstErr == "" {
		r.firstErr = err.Error()
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	r.attempts = srv.all
	for _, n := range srv.seen {
		if n > 1 {
			r.postsTwice++
		}
	}
	return r
}

func restartMarkdown(rs []restartResult) string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	if len(rs) == 0 {
		return ""
	}
	p("\n## Restart\n\n%d requests, one every %v (GETs and POSTs without an Idempotency-Key, in turn), through one client per contender with its own defaults, to a server whose listener and connections close %v after the start and which listens again on the same 127.0.0.1 port %v later. Contenders ran at once, each against its own server. Processed twice: POSTs the server processed more than once (the target is none).\n\n",
		restartRequests, restartInterval, restartFrom, restartDown)
	p("| contender | 200s | GETs | POSTs | POSTs processed twice | requests the server processed | all answered after | first error |\n|---|---:|---:|---:|---:|---:|---:|---|\n")
	for _, r := range rs {
		first := r.firstErr
		if first == "" {
			first = "–"
		}
		p("| %s | %d of %d | %d of %d | %d of %d | %d | %d | %v | %s |\n", r.lib, r.ok, r.requests, r.getsOK, r.gets, r.postsOK, r.posts,
			r.postsTwice, r.attempts, round(r.took), strings.ReplaceAll(first, "|", "\\|"))
	}
	for _, r := range rs {
		if r.lib == "retryhttp" {
			var lines []string
			checker(&lines)(float64(r.ok) >= 0.95*float64(r.requests) && r.postsTwice == 0,
				"restart: %d of %d requests got a 200, %d POSTs processed twice (target: at least 95%%, none)", r.ok, r.requests, r.postsTwice)
			p("\n- %s\n", lines[0])
		}
	}
	return b.String()
}
