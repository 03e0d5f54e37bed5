// Package retrytest helps test code that uses retryhttp: a loopback HTTP
// server that plays a script of answers and records what it receives, and a
// fake Clock that lets a test play long Retry-After waits without sleeping.
// Besides plain answers (OK, Reply, Unavailable, TooManyRequests, Drop), it
// has RateLimited, which refuses a request over a rate limit as GitHub,
// Discord, X or the IETF drafts do, with reset times on the Server's clock,
// and Answer.WithSlow, which holds an answer back until the Server's clock
// (fake or real) has moved, to script the slow attempt that a hedged
// request (retryhttp.Hedge) cuts short.
//
//	clock := retrytest.NewClock(t)
//	srv := retrytest.NewServer(t,
//		retrytest.Unavailable(120*time.Second),
//		retrytest.OK("done"),
//	).UseClock(clock)
//	client := &http.Client{Transport: &retryhttp.Transport{
//		Policy: retryhttp.Policy{Clock: clock, MaxRetryAfter: 5 * time.Minute},
//	}}
//	resp, err := client.Get(srv.URL) // returns at once: 503, a virtual wait of 120 s, then 200
//
// The package depends only on the standard library; its helpers return
// plain values to assert on with any assertion library.
package retrytest

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// Layouts for the obsolete HTTP-date forms (RFC 9110 §5.6.7), for
// Answer.DateLayout; http.TimeFormat is the preferred IMF-fixdate.
const (
	LayoutRFC850  = "Monday, 02-Jan-06 15:04:05 GMT"
	LayoutASCTime = time.ANSIC
)

// Answer is one scripted answer of a Server. The zero Answer is a 200 OK
// with an empty body.
type Answer struct {
	// Status is the response's status code; 0 means 200.
	Status int
	// Header holds header fields to send. The Server also sends a Date
	// header from its clock, unless Header or HeaderFunc sets one.
	Header http.Header
	// HeaderFunc, if set, is called as the Answer is served, with the time
	// on the Server's clock when the request arrived, which its Date
	// header shows, and the fields it returns are sent too, except those
	// that Header sets, which win. It lets an Answer send times that
	// depend on when it is served, such as the Unix time of a rate-limit
	// reset. Requests running at once may call it at once.
	HeaderFunc func(now time.Time) http.Header
	// Body is the response body.
	Body string
	// RetryAfter, if positive, sets a Retry-After header: the delay in
	// whole seconds (rounded up), or, with RetryAfterDate, the time that
	// far ahead on the Server's clock as an HTTP-date. Use Header for any
	// other value, such as "0" or a malformed one.
	RetryAfter time.Duration
	// RetryAfterDate sends RetryAfter as an HTTP-date in DateLayout.
	RetryAfterDate bool
	// DateLayout is the time layout of the HTTP-dates the Answer sends,
	// Retry-After and Date alike: http.TimeFormat (IMF-fixdate) when empty,
	// or LayoutRFC850 or LayoutASCTime for the obsolete forms.
	DateLayout string
	// Delay holds the answer back by this much real time, or until the
	// request is cancelled.
	Delay time.Duration
	// Slow holds the answer back until the Server's clock reads this much
	// after the request arrived, or until the request is cancelled: real
	// time without UseClock, and on a fake Clock until the Clock has moved
	// that far, by Advance or by a Transport waiting on it. It scripts the
	// slow attempt of a hedging test: a Transport whose Policy.Clock is the
	// same Clock waits its hedge delay on it, so an answer Slow by more than
	// the delay is still held when the hedge is sent, and, when the hedge
	// wins, is cancelled without ever being answered, all in virtual time.
	Slow time.Duration
	// Drop closes the connection (HTTP/1) or resets the stream (HTTP/2)
	// after reading the request, without answering. Note that net/http's
	// Transport itself resends an idempotent request once when a reused
	// connection is dropped; the Server records both.
	Drop bool
}

// OK returns a 200 OK Answer with body.
func OK(body string) Answer { return Answer{Status: http.StatusOK, Body: body} }

// Reply returns an Answer with the given status code and body.
func Reply(status int, body string) Answer { return Answer{Status: status, Body: body} }

// Unavailable returns a 503 Service Unavailable Answer with Retry-After
// given in seconds (rounded up), or with none if retryAfter is 0.
func Unavailable(retryAfter time.Duration) Answer {
	return Answer{Status: http.StatusServiceUnavailable, RetryAfter: retryAfter}
}

// UnavailableUntil returns a 503 Service Unavailable Answer whose
// Retry-After is the HTTP-date retryAfter from now on the Server's clock.
func UnavailableUntil(retryAfter time.Duration) Answer {
	return Answer{Status: http.StatusServiceUnavailable, RetryAfter: retryAfter, RetryAfterDate: true}
}

// TooManyRequests returns a 429 Too Many Requests Answer with Retry-After
// given in seconds (rounded up), or with none if retryAfter is 0.
func TooManyRequests(retryAfter time.Duration) Answer {
	return Answer{Status: http.StatusTooManyRequests, RetryAfter: retryAfter}
}

// Drop returns an Answer that drops the connection without answering.
func Drop() Answer { return Answer{Drop: true} }

// WithHeader returns a copy of a with the header field key set to value.
func (a Answer) WithHeader(key, value string) Answer {
	a.Header = a.Header.Clone()
	if a.Header == nil {
		a.Header = http.Header{}
	}
	a.Header.Set(key, value)
	return a
}

// WithDelay returns a copy of a that is held back by d of real time.
func (a Answer) WithDelay(d time.Duration) Answer {
	a.Delay = d
	return a
}

// WithSlow returns a copy of a that is held back until the Server's clock
// has moved d past the request's arrival (see Answer.Slow).
func (a Answer) WithSlow(d time.Duration) Answer {
	a.Slow = d
	return a
}

// Request is what a Server recorded of one request it received.
type Request struct {
	Method string
	Path   string
	Header http.Header
	Body   []byte
	// Time is when the request arrived, on the Server's clock.
	Time time.Time
}

// Server is a loopback HTTP server, built on httptest, that answers each
// request with the next Answer of its script and records every request.
//
// A request takes the next Answer of the script for its path, if one was
// given with On, else of the script given to NewServer. When that script
// has run out, the Answer given to Otherwise is sent; without one, running
// out is a mistake in the test: the Server answers 500 and fails the test.
//
// A Server is safe for concurrent use; requests running at once take the
// script's answers in the order they arrive.
type Server struct {
	// URL is the base URL of the server, of the form http://127.0.0.1:port.
	URL string

	t         testing.TB
	srv       *httptest.Server
	mu        sync.Mutex
	script    []Answer
	paths     map[string][]Answer
	otherwise *Answer
	clock     *Clock
	requests  []Request
}

// NewServer starts a Server on loopback that plays script to requests for
// any path. It is closed when t ends. t may be nil outside a test, as in an
// example; the caller then closes the Server, and a script that runs out
// is reported only by the 500 answer.
func NewServer(t testing.TB, script ...Answer) *Server {
	s := &Server{t: t, script: script, paths: map[string][]Answer{}}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL
	if t != nil {
		t.Cleanup(s.srv.Close)
	}
	return s
}

// On gives the requests for path a script of their own, and returns s.
func (s *Server) On(path string, script ...Answer) *Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.paths[path] = script
	return s
}

// Otherwise sets the Answer sent once a script has run out, and returns s.
func (s *Server) Otherwise(a Answer) *Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.otherwise = &a
	return s
}

// UseClock makes the Server read the time from c, for its Date header, its
// HTTP-date Retry-After values and the times it records, and returns s.
// Without it the Server uses the real clock.
func (s *Server) UseClock(c *Clock) *Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clock = c
	return s
}

// Close shuts the Server down, waiting for requests in progress. It is
// called when the test ends; calling it earlier simulates a server that is
// gone (its port then refuses connections).
func (s *Server) Close() { s.srv.Close() }

// Requests returns a copy of the requests received so far, in the order
// they arrived.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// Count returns the number of requests received so far.
func (s *Server) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.requests)
}

func (s *Server) now() time.Time {
	if s.clock != nil {
		return s.clock.Now()
	}
	return time.Now()
}

// take records r and returns the Answer for it, and the time it arrived.
func (s *Server) take(r *http.Request, body []byte) (Answer, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.requests = append(s.requests, Request{
		Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: body, Time: now,
	})
	script, own := s.paths[r.URL.Path]
	if !own {
		script = s.script
	}
	if len(script) > 0 {
		if own {
			s.paths[r.URL.Path] = script[1:]
		} else {
			s.script = script[1:]
		}
		return script[0], now, nil
	}
	if s.otherwise != nil {
		return *s.otherwise, now, nil
	}
	return Answer{}, now, fmt.Errorf("retrytest: request %d (%s %s) came after the script ran out; add answers or set Otherwise",
		len(s.requests), r.Method, r.URL.Path)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, readErr := io.ReadAll(r.Body)
	a, now, err := s.take(r, body)
	if err != nil {
		if s.t != nil {
			s.t.Error(err)
		}
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if readErr != nil {
		// The client went away mid-body; there is nobody to answer.
		return
	}
	if a.Delay > 0 {
		timer := time.NewTimer(a.Delay)
		select {
		case <-timer.C:
		case <-r.Context().Done():
			timer.Stop()
			return
		}
	}
	if a.Slow > 0 && !s.holdUntil(r, now.Add(a.Slow)) {
		return
	}
	if a.Drop {
		panic(http.ErrAbortHandler) // net/http closes the connection or resets the stream
	}
	layout := a.DateLayout
	if layout == "" {
		layout = http.TimeFormat
	}
	h := w.Header()
	for k, v := range a.Header {
		h[k] = append([]string(nil), v...)
	}
	if a.HeaderFunc != nil {
		for k, v := range a.HeaderFunc(now) {
			if _, set := a.Header[k]; !set {
				h[k] = append([]string(nil), v...)
			}
		}
	}
	if _, set := h["Date"]; !set {
		h.Set("Date", now.UTC().Format(layout))
	}
	if a.RetryAfter > 0 {
		if a.RetryAfterDate {
			h.Set("Retry-After", now.UTC().Truncate(time.Second).Add(ceilSeconds(a.RetryAfter)).Format(layout))
		} else {
			h.Set("Retry-After", fmt.Sprint(int64(ceilSeconds(a.RetryAfter)/time.Second)))
		}
	}
	status := a.Status
	if status == 0 {
		status = http.StatusOK
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, a.Body)
}

// holdUntil waits until the Server's clock reads t, and reports false if
// the request was cancelled first.
func (s *Server) holdUntil(r *http.Request, t time.Time) bool {
	s.mu.Lock()
	clock := s.clock
	s.mu.Unlock()
	if clock != nil {
		return clock.waitUntil(r.Context(), t) == nil
	}
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-r.Context().Done():
		return false
	}
}

// ceilSeconds rounds d up to a whole number of seconds.
func ceilSeconds(d time.Duration) time.Duration {
	if d > math.MaxInt64-time.Second {
		return d.Truncate(time.Second)
	}
	return (d + time.Second - 1).Truncate(time.Second)
}
