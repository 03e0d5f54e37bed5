package retryhttp_test

import (
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
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

// inOrder forwards attempt n to the server only once the server has seen
// n−1 requests, so that a script's answers go to the attempts in their
// order even on a fake clock, where a hedge is sent at once in real time
// and could overtake the attempt it hedges.
type inOrder struct {
	base http.RoundTripper
	seen func() int
}

func (o inOrder) RoundTrip(req *http.Request) (*http.Response, error) {
	for o.seen() < retryhttp.Attempt(req.Context())-1 && req.Context().Err() == nil {
		time.Sleep(100 * time.Microsecond)
	}
	return o.base.RoundTrip(req)
}

// hedgeEvents collects the HedgeEvents of a Policy.
type hedgeEvents = recorder[retryhttp.HedgeEvent]

// noHedgeWait is how long, in real time, a test that expects no hedge waits
// for one once the attempt is at the server. On a fake clock a hedge goes
// out a few milliseconds of real time after the attempt it hedges was
// written, whatever its delay (see Hedge.Delay), so a hedge sent by mistake
// shows well within it; no fake clock can stand for that wait, since
// nothing happens in it when all is well.
const noHedgeWait = 50 * time.Millisecond

// inFlight is a request sent in the background, for a test that moves a
// fake clock while it is in flight.
type inFlight struct{ done chan sentRequest }

type sentRequest struct {
	resp *http.Response
	body string
	err  error
}

// goDo sends req through client in the background and reads the whole
// response body, as do does. The request carries the test's context, so
// that one a failed test leaves held on a fake clock ends with the test.
func goDo(t *testing.T, client *http.Client, req *http.Request) *inFlight {
	f := &inFlight{done: make(chan sentRequest, 1)}
	req = req.WithContext(t.Context())
	go func() {
		resp, err := client.Do(req)
		if err != nil {
			f.done <- sentRequest{err: err}
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		f.done <- sentRequest{resp: resp, body: string(body), err: err}
	}()
	return f
}

// wait returns what do would have: the response, its body, and the error.
func (f *inFlight) wait(t *testing.T) (*http.Response, string, error) {
	t.Helper()
	select {
	case r := <-f.done:
		return r.resp, r.body, r.err
	case <-time.After(5 * time.Second):
		t.Fatal("the request did not end")
		return nil, "", nil
	}
}

// doWhenArrived sends req through client and, once srv has received n
// requests and no more, moves clock forward by d, and returns what do would
// have. The answers it releases are held on the clock (Answer.WithSlow)
// longer than the hedge delays the Transport plays on it, so that they come
// only once every copy the test expects has reached the server, however
// long that takes in real time.
//
// While the answers are held, it also waits extraCopyWait of real time for
// a copy beyond n: a Transport that hedges past Hedge.Max or MaxAttempts
// sends it writtenGrace (5 ms) after the copy before it, so a bound that is
// off by one fails here instead of passing because the race ended first. A
// correct Transport sends nothing in that wait, so it cannot flake.
func doWhenArrived(t *testing.T, client *http.Client, req *http.Request, srv *retrytest.Server, clock *retrytest.Clock, n int, d time.Duration) (*http.Response, string, error) {
	t.Helper()
	f := goDo(t, client, req)
	require.Eventually(t, func() bool { return srv.Count() >= n }, 5*time.Second, time.Millisecond, "%d requests at the server", n)
	assert.Never(t, func() bool { return srv.Count() > n }, extraCopyWait, time.Millisecond,
		"no copy beyond the %d expected while every answer is held", n)
	clock.Advance(d)
	return f.wait(t)
}

// extraCopyWait is how long doWhenArrived waits, in real time, for a copy
// the test does not expect. It bounds how slow a wrong hedge may be and
// still be caught, not how fast a right one must be.
const extraCopyWait = 50 * time.Millisecond

// hedgingClient returns a client that hedges with p over a fresh base that
// delivers attempts to srv in order, on a fake clock unless p has one, and
// the events it reports.
func hedgingClient(t *testing.T, srv *retrytest.Server, p retryhttp.Policy) (*http.Client, *retrytest.Clock, *hedgeEvents) {
	var clock *retrytest.Clock
	if p.Clock == nil {
		clock = retrytest.NewClock(t)
		p.Clock = clock
	}
	events := &hedgeEvents{}
	p.OnHedge = events.record
	base := inOrder{base: newBase(t), seen: srv.Count}
	return &http.Client{Transport: &retryhttp.Transport{Base: base, Policy: p}}, clock, events
}

func TestHedgeFirstAnswerWins(t *testing.T) {
	tests := []struct {
		name        string
		script      []retrytest.Answer
		release     time.Duration // moves the clock once both copies are at the server
		wantBody    string
		wantAttempt int
	}{
		{
			name:     "the hedge answers first",
			script:   []retrytest.Answer{retrytest.OK("first").WithSlow(time.Hour), retrytest.OK("hedge")},
			wantBody: "hedge", wantAttempt: 2,
		},
		{
			name: "the first attempt answers first",
			// Held past the hedge delay, until the test moves the clock
			// once the hedge has reached the server, however busy the
			// machine.
			script:   []retrytest.Answer{retrytest.OK("first").WithSlow(time.Minute), retrytest.OK("hedge").WithSlow(time.Hour)},
			release:  time.Minute,
			wantBody: "first", wantAttempt: 1,
		},
		{
			// A 404 is an answer: not retried, so it wins as a 200 would.
			name:     "a final status other than 200 wins too",
			script:   []retrytest.Answer{retrytest.OK("first").WithSlow(time.Hour), retrytest.Reply(http.StatusNotFound, "gone")},
			wantBody: "gone", wantAttempt: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := retrytest.NewServer(t, tt.script...)
			client, clock, events := hedgingClient(t, srv, retryhttp.Policy{Hedge: &retryhttp.Hedge{Delay: 100 * time.Millisecond}})
			srv.UseClock(clock)

			req := newRequest(t, http.MethodGet, srv.URL, nil)
			var (
				resp *http.Response
				body string
				err  error
			)
			if tt.release > 0 {
				resp, body, err = doWhenArrived(t, client, req, srv, clock, 2, tt.release)
			} else {
				resp, body, err = do(t, client, req)
			}
			require.NoError(t, err)
			assert.Equal(t, tt.wantBody, body)
			assert.Equal(t, tt.wantAttempt, retryhttp.Attempt(resp.Request.Context()), "the attempt the answer came from")
			assert.Equal(t, tt.wantAttempt == 2, retryhttp.Hedged(resp.Request.Context()))
			assert.Equal(t, 2, srv.Count())
			if ev := events.all(); assert.Len(t, ev, 1) {
				assert.Equal(t, 2, ev[0].Attempt)
				assert.Equal(t, 100*time.Millisecond, ev[0].Delay)
				assert.False(t, ev[0].Adaptive)
			}
			assert.Equal(t, []time.Duration{100 * time.Millisecond}, clock.Waits(), "the hedge delay, on the fake clock")
		})
	}
}

func TestHedgeLosersAreCancelledAndClosed(t *testing.T) {
	var n atomic.Int32
	loserGone := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			<-r.Context().Done() // the first attempt never answers: it must be cancelled
			close(loserGone)
			return
		}
		_, _ = io.WriteString(w, "hedge")
	}))
	t.Cleanup(srv.Close)
	rec := &closeRecorder{base: inOrder{base: newBase(t), seen: func() int { return int(n.Load()) }}}
	client := &http.Client{Transport: &retryhttp.Transport{Base: rec, Policy: retryhttp.Policy{
		Clock: retrytest.NewClock(t), Hedge: &retryhttp.Hedge{Delay: time.Second},
	}}}

	_, body, err := do(t, client, newRequest(t, http.MethodGet, srv.URL, nil))
	require.NoError(t, err)
	assert.Equal(t, "hedge", body)
	select {
	case <-loserGone:
	case <-time.After(5 * time.Second):
		t.Fatal("the losing attempt was not cancelled")
	}
	assert.Equal(t, 1, rec.responses(), "the loser never produced a response")
	assert.Equal(t, 1, rec.closed())
}

func TestHedgeLoserAnsweringLateIsClosedUnread(t *testing.T) {
	var n atomic.Int32
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			<-release // answers only after the hedge has won
			_, _ = io.WriteString(w, strings.Repeat("late", 1000))
			return
		}
		_, _ = io.WriteString(w, "hedge")
	}))
	t.Cleanup(srv.Close)
	// The loser's attempt context is cancelled when the hedge wins, so a
	// Base that ignores its context is what lets its answer arrive late.
	late := &ignoringContext{base: newBase(t)}
	rec := &closeRecorder{base: inOrder{base: late, seen: func() int { return int(n.Load()) }}}
	client := &http.Client{Transport: &retryhttp.Transport{Base: rec, Policy: retryhttp.Policy{
		Clock: retrytest.NewClock(t), Hedge: &retryhttp.Hedge{Delay: time.Second},
	}}}

	_, body, err := do(t, client, newRequest(t, http.MethodGet, srv.URL, nil))
	require.NoError(t, err)
	assert.Equal(t, "hedge", body)
	close(release)
	assert.Eventually(t, func() bool { return rec.responses() == 2 && rec.closed() == 2 }, 5*time.Second, time.Millisecond,
		"the late loser's body is closed")
	for _, b := range rec.bodies {
		if b.read.Load() > int64(len("hedge")) {
			t.Errorf("a loser's body was read: %d bytes", b.read.Load())
		}
	}
}

// ignoringContext sends each request without its context, as a Base that
// does not honour cancellation would.
type ignoringContext struct{ base http.RoundTripper }

func (i *ignoringContext) RoundTrip(req *http.Request) (*http.Response, error) {
	return i.base.RoundTrip(req.WithContext(context.WithoutCancel(req.Context())))
}

func TestHedgeWinnerBodyStaysReadable(t *testing.T) {
	for _, attemptTimeout := range []time.Duration{0, 5 * time.Second} {
		t.Run("AttemptTimeout="+attemptTimeout.String(), func(t *testing.T) {
			var n atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if n.Add(1) == 1 {
					<-r.Context().Done()
					return
				}
				_, _ = io.WriteString(w, "head ")
				w.(http.Flusher).Flush()
				time.Sleep(20 * time.Millisecond) // the rest comes after RoundTrip has returned
				_, _ = io.WriteString(w, "tail")
			}))
			t.Cleanup(srv.Close)
			client := &http.Client{Transport: &retryhttp.Transport{
				Base: inOrder{base: newBase(t), seen: func() int { return int(n.Load()) }},
				Policy: retryhttp.Policy{
					Clock: retrytest.NewClock(t), AttemptTimeout: attemptTimeout, Hedge: &retryhttp.Hedge{Delay: time.Second},
				},
			}}
			_, body, err := do(t, client, newRequest(t, http.MethodGet, srv.URL, nil))
			require.NoError(t, err)
			assert.Equal(t, "head tail", body)
		})
	}
}

func TestHedgeOnlyRequestsThatMayBeResent(t *testing.T) {
	tests := []struct {
		name   string
		req    func(t *testing.T, url string) *http.Request
		hedged bool
	}{
		{"GET", func(t *testing.T, url string) *http.Request { return newRequest(t, http.MethodGet, url, nil) }, true},
		{"PUT with a replayable body", func(t *testing.T, url string) *http.Request {
			return newRequest(t, http.MethodPut, url, strings.NewReader("data"))
		}, true},
		{"POST without an Idempotency-Key", func(t *testing.T, url string) *http.Request {
			return newRequest(t, http.MethodPost, url, strings.NewReader("data"))
		}, false},
		{"POST with an Idempotency-Key", func(t *testing.T, url string) *http.Request {
			req := newRequest(t, http.MethodPost, url, strings.NewReader("data"))
			req.Header.Set("Idempotency-Key", "k1")
			return req
		}, true},
		{"PUT whose body cannot be replayed", func(t *testing.T, url string) *http.Request {
			req := newRequest(t, http.MethodPut, url, io.NopCloser(strings.NewReader("data")))
			require.Nil(t, req.GetBody)
			return req
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel() // those that send no hedge wait for one in real time
			// The first answer is held on the fake clock, past the hedge
			// delay, until the test moves it: once the hedge, if allowed,
			// has reached the server, or once none has come in
			// noHedgeWait. The hedge's answer is held longer still.
			srv := retrytest.NewServer(t, retrytest.OK("first").WithSlow(time.Minute)).Otherwise(retrytest.OK("hedge").WithSlow(time.Hour))
			client, clock, events := hedgingClient(t, srv, retryhttp.Policy{Hedge: &retryhttp.Hedge{Delay: time.Millisecond}})
			srv.UseClock(clock)
			want := 1
			if tt.hedged {
				want = 2
			}
			f := goDo(t, client, tt.req(t, srv.URL))
			require.Eventually(t, func() bool { return srv.Count() >= want }, 5*time.Second, time.Millisecond)
			if !tt.hedged {
				assert.Never(t, func() bool { return srv.Count() > 1 || len(events.all()) > 0 }, noHedgeWait, time.Millisecond,
					"no hedge while the first attempt is in flight")
			}
			clock.Advance(time.Minute)
			_, body, err := f.wait(t)
			require.NoError(t, err)
			assert.Equal(t, "first", body)
			assert.Equal(t, want, srv.Count())
			assert.Len(t, events.all(), want-1)
			for _, r := range srv.Requests() {
				if tt.req(t, srv.URL).Body != nil {
					assert.Equal(t, "data", string(r.Body), "every copy carries the whole body")
				}
			}
		})
	}
}

func TestHedgeNeedsABudgetToken(t *testing.T) {
	srv := retrytest.NewServer(t, retrytest.OK("first").WithDelay(50*time.Millisecond)).Otherwise(retrytest.OK("hedge"))
	client, _, events := hedgingClient(t, srv, retryhttp.Policy{
		Budget: retryhttp.NewBudget(0, 0), Hedge: &retryhttp.Hedge{Delay: time.Millisecond, Max: 3},
	})
	_, body, err := do(t, client, newRequest(t, http.MethodGet, srv.URL, nil))
	require.NoError(t, err)
	assert.Equal(t, "first", body)
	assert.Equal(t, 1, srv.Count(), "no hedge without a token")
	assert.Empty(t, events.all())
}

func TestHedgeSpendsTheRetryBudget(t *testing.T) {
	srv := retrytest.NewServer(t, retrytest.OK("first").WithSlow(time.Hour)).Otherwise(retrytest.OK("hedge"))
	one := retryhttp.NewBudget(0, 1) // holds one token, earns none
	require.NoError(t, (&retryhttp.Policy{Budget: one}).Validate())
	client, _, events := hedgingClient(t, srv, retryhttp.Policy{Budget: one, Hedge: &retryhttp.Hedge{Delay: time.Millisecond}})
	_, body, err := do(t, client, newRequest(t, http.MethodGet, srv.URL, nil))
	require.NoError(t, err)
	assert.Equal(t, "hedge", body)
	assert.Len(t, events.all(), 1)
	assert.Zero(t, one.Tokens(), "the hedge took the budget's one token")
}

func TestHedgeCountsAsAnAttempt(t *testing.T) {
	// Held on the fake clock past the hedge delay of 1 ms, until the test
	// moves it by slowFor once both copies are at the server.
	const slowFor = time.Second
	slow503 := retrytest.Unavailable(0).WithSlow(slowFor)
	t.Run("a race of 503s is retried within MaxAttempts", func(t *testing.T) {
		srv := retrytest.NewServer(t, slow503, slow503, retrytest.OK("third"))
		var retries []retryhttp.RetryEvent
		client, clock, events := hedgingClient(t, srv, retryhttp.Policy{
			MaxAttempts: 3, Budget: retryhttp.UnlimitedBudget(), Hedge: &retryhttp.Hedge{Delay: time.Millisecond},
			OnRetry: func(ev retryhttp.RetryEvent) { retries = append(retries, ev) },
		})
		srv.UseClock(clock)
		resp, body, err := doWhenArrived(t, client, newRequest(t, http.MethodGet, srv.URL, nil), srv, clock, 2, slowFor)
		require.NoError(t, err)
		assert.Equal(t, "third", body)
		assert.Equal(t, 3, srv.Count())
		assert.Equal(t, 3, retryhttp.Attempt(resp.Request.Context()), "the retry after a hedge is attempt 3")
		assert.Len(t, events.all(), 1, "Max 1: the retry is not hedged again")
		if assert.Len(t, retries, 1) {
			assert.Equal(t, 2, retries[0].Attempt, "the race used attempts 1 and 2")
			assert.Equal(t, http.StatusServiceUnavailable, retries[0].Response.StatusCode)
		}
	})
	t.Run("MaxAttempts bounds hedges and retries together", func(t *testing.T) {
		srv := retrytest.NewServer(t, slow503, slow503).Otherwise(retrytest.OK("never"))
		var giveUps []retryhttp.GiveUpEvent
		client, clock, _ := hedgingClient(t, srv, retryhttp.Policy{
			MaxAttempts: 2, Budget: retryhttp.UnlimitedBudget(), Hedge: &retryhttp.Hedge{Delay: time.Millisecond, Max: 5},
			OnGiveUp: func(ev retryhttp.GiveUpEvent) { giveUps = append(giveUps, ev) },
		})
		srv.UseClock(clock)
		resp, _, err := doWhenArrived(t, client, newRequest(t, http.MethodGet, srv.URL, nil), srv, clock, 2, slowFor)
		require.NoError(t, err)
		assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
		assert.Equal(t, 2, srv.Count())
		if assert.Len(t, giveUps, 1) {
			assert.Equal(t, 2, giveUps[0].Attempts)
			assert.ErrorIs(t, giveUps[0].Reason, retryhttp.ErrAttemptsUsedUp)
		}
	})
	t.Run("MaxAttempts 1 sends no hedge", func(t *testing.T) {
		srv := retrytest.NewServer(t, retrytest.OK("first").WithDelay(30*time.Millisecond)).Otherwise(retrytest.OK("hedge"))
		client, _, events := hedgingClient(t, srv, retryhttp.Policy{MaxAttempts: 1, Hedge: &retryhttp.Hedge{Delay: time.Millisecond}})
		_, body, err := do(t, client, newRequest(t, http.MethodGet, srv.URL, nil))
		require.NoError(t, err)
		assert.Equal(t, "first", body)
		assert.Equal(t, 1, srv.Count())
		assert.Empty(t, events.all())
	})
	t.Run("Max hedges per request", func(t *testing.T) {
		srv := retrytest.NewServer(t,
			retrytest.OK("1").WithSlow(time.Hour), retrytest.OK("2").WithSlow(time.Hour), retrytest.OK("3").WithSlow(time.Hour),
			retrytest.OK("4"))
		client, clock, events := hedgingClient(t, srv, retryhttp.Policy{Budget: retryhttp.UnlimitedBudget(), Hedge: &retryhttp.Hedge{Delay: time.Second, Max: 3}})
		resp, body, err := do(t, client, newRequest(t, http.MethodGet, srv.URL, nil))
		require.NoError(t, err)
		assert.Equal(t, "4", body)
		assert.Equal(t, 4, retryhttp.Attempt(resp.Request.Context()))
		assert.Len(t, events.all(), 3)
		assert.Equal(t, []time.Duration{time.Second, time.Second, time.Second}, clock.Waits(), "a delay before each hedge")
	})
}

func TestHedgeNeverAfterTheContextIsDone(t *testing.T) {
	srv := retrytest.NewServer(t).Otherwise(retrytest.OK("never").WithDelay(10 * time.Second))
	clock := &gateClock{release: make(chan struct{}), sleeping: make(chan struct{}, 1)}
	client, _, events := hedgingClient(t, srv, retryhttp.Policy{Clock: clock, Hedge: &retryhttp.Hedge{Delay: time.Second}})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	<-clock.sleeping // the hedge delay has begun
	require.Eventually(t, func() bool { return srv.Count() == 1 }, 5*time.Second, time.Millisecond)
	cancel()
	close(clock.release) // a clock that ignores the context ends the delay anyway
	err := <-errc
	assert.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, 1, srv.Count())
	assert.Empty(t, events.all())
}

// gateClock is a Clock whose Sleep ignores its context and returns only
// when release is closed.
type gateClock struct {
	release  chan struct{}
	sleeping chan struct{}
}

func (c *gateClock) Now() time.Time { return time.Unix(1e9, 0) }
func (c *gateClock) Sleep(ctx context.Context, d time.Duration) error {
	select {
	case c.sleeping <- struct{}{}:
	default:
	}
	<-c.release
	return nil
}

func TestHedgeAdaptiveDelay(t *testing.T) {
	// The server answers at once, but the first attempt of a request
	// marked X-Hang hangs until cancelled.
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		if r.Header.Get("X-Hang") != "" && r.Header.Get("X-Attempt") == "1" {
			<-r.Context().Done()
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(srv.Close)
	events := &hedgeEvents{}
	client := &http.Client{Transport: &retryhttp.Transport{
		Base: attemptHeader{newBase(t)},
		Policy: retryhttp.Policy{
			Budget: retryhttp.UnlimitedBudget(), Hedge: &retryhttp.Hedge{}, OnHedge: events.record,
		},
	}}
	for i := range 20 {
		_, _, err := do(t, client, newRequest(t, http.MethodGet, srv.URL, nil))
		require.NoError(t, err)
		require.Equal(t, i+1, int(n.Load()), "no hedge during the warm-up")
	}
	require.Empty(t, events.all())
	for range 10 {
		_, _, err := do(t, client, newRequest(t, http.MethodGet, srv.URL, nil))
		require.NoError(t, err)
	}
	before := len(events.all()) // about 5% of fast answers come after their p95
	hang := newRequest(t, http.MethodGet, srv.URL, nil)
	hang.Header.Set("X-Hang", "1")
	resp, body, err := do(t, client, hang)
	require.NoError(t, err)
	assert.Equal(t, "ok", body)
	assert.True(t, retryhttp.Hedged(resp.Request.Context()), "the hang was cut by a hedge")
	if ev := events.all(); assert.Len(t, ev, before+1) {
		last := ev[len(ev)-1]
		assert.True(t, last.Adaptive)
		assert.Positive(t, last.Delay)
		assert.Less(t, last.Delay, time.Second, "the p95 of fast answers")
	}
}

// attemptHeader tells the server each attempt's number in X-Attempt.
type attemptHeader struct{ base http.RoundTripper }

func (a attemptHeader) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set("X-Attempt", strconv.Itoa(retryhttp.Attempt(req.Context())))
	return a.base.RoundTrip(req)
}

func TestHedgeAdaptiveWarmUpSendsNoHedge(t *testing.T) {
	srv := retrytest.NewServer(t, retrytest.OK("first").WithDelay(50*time.Millisecond)).Otherwise(retrytest.OK("hedge"))
	client, _, events := hedgingClient(t, srv, retryhttp.Policy{Budget: retryhttp.UnlimitedBudget(), Hedge: &retryhttp.Hedge{}})
	_, body, err := do(t, client, newRequest(t, http.MethodGet, srv.URL, nil))
	require.NoError(t, err)
	assert.Equal(t, "first", body)
	assert.Equal(t, 1, srv.Count())
	assert.Empty(t, events.all())
}

func TestHedgeBodyErrorEndsTheRequest(t *testing.T) {
	srv := retrytest.NewServer(t).Otherwise(retrytest.OK("unexpected"))
	broken := errors.New("disk on fire")
	req := newRequest(t, http.MethodPut, srv.URL, &failingReader{err: broken})
	req.ContentLength = 100
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(&failingReader{err: broken}), nil }
	client, _, _ := hedgingClient(t, srv, retryhttp.Policy{Budget: retryhttp.UnlimitedBudget(), Hedge: &retryhttp.Hedge{Delay: time.Millisecond}})
	_, err := client.Do(req)
	require.Error(t, err)
	assert.ErrorIs(t, err, broken)
}

// failingReader returns a few bytes, then err.
type failingReader struct {
	err  error
	done bool
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.done {
		return 0, f.err
	}
	f.done = true
	return copy(p, "part"), nil
}

func TestHedgeValidate(t *testing.T) {
	for _, h := range []retryhttp.Hedge{{Delay: -time.Second}, {Max: -1}} {
		err := (&retryhttp.Policy{Hedge: &h}).Validate()
		require.Error(t, err)
		assert.Contains(t, err.Error(), "Policy.Hedge.")
		assert.Contains(t, err.Error(), "negative")
	}
	assert.NoError(t, (&retryhttp.Policy{Hedge: &retryhttp.Hedge{}}).Validate())
}

// BenchmarkOverheadHedge measures what hedging adds to a request whose
// first attempt answers at once: the attempt runs on a goroutine of its
// own with a context of its own while the delay's timer waits, and, with
// the adaptive delay, its time to headers is recorded.
func BenchmarkOverheadHedge(b *testing.B) {
	req, err := http.NewRequest(http.MethodGet, "http://127.0.0.1/", nil)
	if err != nil {
		b.Fatal(err)
	}
	runImpls(b, []impl{
		{"impl=retryhttp", &retryhttp.Transport{Base: cannedTransport{}}},
		{"impl=hedge-fixed", &retryhttp.Transport{Base: cannedTransport{}, Policy: retryhttp.Policy{Hedge: &retryhttp.Hedge{Delay: time.Second}}}},
		{"impl=hedge-adaptive", &retryhttp.Transport{Base: cannedTransport{}, Policy: retryhttp.Policy{Hedge: &retryhttp.Hedge{}}}},
	}, func(b *testing.B, rt http.RoundTripper) {
		for b.Loop() {
			resp, err := rt.RoundTrip(req)
			if err != nil {
				b.Fatal(err)
			}
			resp.Body.Close()
		}
	})
}

// headerScribbler changes every request's header before sending it, as a
// Base that breaks the RoundTripper contract would.
type headerScribbler struct{ base http.RoundTripper }

func (h headerScribbler) RoundTrip(req *http.Request) (*http.Response, error) {
	req.Header.Set("X-Scribbled", strconv.Itoa(retryhttp.Attempt(req.Context())))
	return h.base.RoundTrip(req)
}

func TestHedgeKeepsTheRequestContract(t *testing.T) {
	srv := retrytest.NewServer(t,
		retrytest.OK("first").WithSlow(time.Hour), retrytest.Unavailable(0),
		retrytest.OK("hedge"), retrytest.OK("late").WithSlow(time.Hour))
	var bodies []*closeTracker
	var mu sync.Mutex
	open := func() *closeTracker {
		mu.Lock()
		defer mu.Unlock()
		b := &closeTracker{Reader: strings.NewReader("payload")}
		bodies = append(bodies, b)
		return b
	}
	req := newRequest(t, http.MethodPut, srv.URL+"/a?b=c", open())
	req.GetBody = func() (io.ReadCloser, error) { return open(), nil }
	req.Header.Set("X-Trace", "1")
	body, ctx, url, header := req.Body, req.Context(), *req.URL, req.Header.Clone()

	client := &http.Client{Transport: &retryhttp.Transport{
		Base: headerScribbler{inOrder{base: newBase(t), seen: srv.Count}},
		Policy: retryhttp.Policy{
			Clock: retrytest.NewClock(t), Budget: retryhttp.UnlimitedBudget(), Hedge: &retryhttp.Hedge{Delay: time.Millisecond, Max: 2},
		},
	}}
	resp, got, err := do(t, client, req)
	require.NoError(t, err)
	assert.Equal(t, "hedge", got)
	assert.Equal(t, 3, retryhttp.Attempt(resp.Request.Context()), "the second hedge won")
	assert.Equal(t, header, req.Header, "the caller's header is untouched")
	assert.Equal(t, url, *req.URL)
	assert.True(t, body == req.Body)
	assert.Equal(t, ctx, req.Context())
	for _, r := range srv.Requests() {
		assert.Equal(t, "payload", string(r.Body))
		assert.Equal(t, "1", r.Header.Get("X-Trace"))
	}
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, bodies, 3, "the caller's body and one from GetBody for each hedge")
	for i, b := range bodies {
		assert.Eventually(t, b.closed.Load, 5*time.Second, time.Millisecond, "body %d closed", i)
	}
}

// TestHedgeOutcomeCountsEveryAttempt checks that Outcome reports the
// attempts made, hedges included, whichever attempt won: Attempt of the
// winner tells which one answered, not how many were sent.
func TestHedgeOutcomeCountsEveryAttempt(t *testing.T) {
	tests := []struct {
		name       string
		script     []retrytest.Answer
		max        int
		wantBody   string
		wantSent   int
		wantWinner int
	}{
		{
			name: "the first attempt wins after a hedge was sent",
			// The winner's answer is held on the fake clock past the hedge
			// delays, until the test moves it a minute once every copy has
			// reached the server, however busy the machine; the others are
			// held an hour.
			script:   []retrytest.Answer{retrytest.OK("first").WithSlow(time.Minute), retrytest.OK("hedge").WithSlow(time.Hour)},
			max:      1,
			wantBody: "first", wantSent: 2, wantWinner: 1,
		},
		{
			name: "the first hedge wins after a second was sent",
			script: []retrytest.Answer{
				retrytest.OK("first").WithSlow(time.Hour), retrytest.OK("hedge").WithSlow(time.Minute),
				retrytest.OK("late").WithSlow(time.Hour),
			},
			max:      2,
			wantBody: "hedge", wantSent: 3, wantWinner: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel() // each waits extraCopyWait of real time
			srv := retrytest.NewServer(t, tt.script...)
			client, clock, events := hedgingClient(t, srv, retryhttp.Policy{
				Budget: retryhttp.UnlimitedBudget(), Hedge: &retryhttp.Hedge{Delay: time.Millisecond, Max: tt.max},
			})
			srv.UseClock(clock)
			resp, body, err := doWhenArrived(t, client, newRequest(t, http.MethodGet, srv.URL, nil), srv, clock, tt.wantSent, time.Minute)
			require.NoError(t, err)
			require.Equal(t, tt.wantBody, body)
			require.Len(t, events.all(), tt.wantSent-1)
			assert.Equal(t, tt.wantWinner, retryhttp.Attempt(resp.Request.Context()), "the attempt that answered")
			attempts, reason := retryhttp.Outcome(resp)
			assert.Equal(t, tt.wantSent, attempts, "every attempt sent, hedges included")
			assert.NoError(t, reason)
		})
	}
}

// TestHedgeKeepsToTheQuotaHold checks that a hedge does not pass a quota
// hold: after a 429 with Retry-After and no announced quota, the window
// that opens at the reset lets one request through, so a slow request is
// not hedged while it is in flight.
func TestHedgeKeepsToTheQuotaHold(t *testing.T) {
	srv := retrytest.NewServer(t,
		retrytest.TooManyRequests(time.Second),
		retrytest.OK("first").WithDelay(50*time.Millisecond),
		retrytest.OK("hedge"))
	client, clock, events := hedgingClient(t, srv, retryhttp.Policy{
		Budget: retryhttp.UnlimitedBudget(), Hedge: &retryhttp.Hedge{Delay: time.Millisecond},
	})
	srv.UseClock(clock)
	// A POST is not hedged: its 429 only tells the quota is spent.
	resp, _, err := do(t, client, newRequest(t, http.MethodPost, srv.URL, strings.NewReader("x")))
	require.NoError(t, err)
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)

	_, body, err := do(t, client, newRequest(t, http.MethodGet, srv.URL, nil))
	require.NoError(t, err)
	assert.Equal(t, "first", body)
	assert.Equal(t, 2, srv.Count(), "the window after the reset lets one request through")
	assert.Empty(t, events.all())
}

// TestHedgeWithoutBounds checks that Max and MaxAttempts as large as an int
// holds are valid, as Validate says: a race holds no room for attempts it
// may never send.
func TestHedgeWithoutBounds(t *testing.T) {
	srv := retrytest.NewServer(t).Otherwise(retrytest.OK("ok"))
	client, _, _ := hedgingClient(t, srv, retryhttp.Policy{
		MaxAttempts: math.MaxInt, Budget: retryhttp.UnlimitedBudget(),
		Hedge: &retryhttp.Hedge{Delay: time.Hour, Max: math.MaxInt},
	})
	require.NoError(t, (&retryhttp.Policy{MaxAttempts: math.MaxInt, Hedge: &retryhttp.Hedge{Max: math.MaxInt}}).Validate())
	_, body, err := do(t, client, newRequest(t, http.MethodGet, srv.URL, nil))
	require.NoError(t, err)
	assert.Equal(t, "ok", body)
}

// TestHedgeOnTheFakeClockKeepsTheScriptsOrder checks that on the fake clock,
// where the hedge delay passes at once in real time, the hedge reaches the
// server after the attempt it hedges, so that a script's answers go to the
// attempts in their order without a Base that orders them.
//
// The order rests on a few milliseconds of real time (see Hedge.Delay), for
// the server to read the attempt before the hedge: on a machine busy enough
// a hedge now and then still overtakes it. So the test asks for the order
// in most races, not all: without the wait, hedges sent at once overtook
// the attempt they hedge in about half of them.
func TestHedgeOnTheFakeClockKeepsTheScriptsOrder(t *testing.T) {
	const races, wantInOrder = 40, 32
	inOrder := 0
	for range races {
		srv := retrytest.NewServer(t, retrytest.OK("first").WithSlow(time.Hour), retrytest.OK("hedge"))
		clock := retrytest.NewClock(t)
		srv.UseClock(clock)
		client := &http.Client{Transport: &retryhttp.Transport{Base: newBase(t), Policy: retryhttp.Policy{
			Clock: clock, Hedge: &retryhttp.Hedge{Delay: 100 * time.Millisecond},
		}}}
		resp, body, err := do(t, client, newRequest(t, http.MethodGet, srv.URL, nil))
		require.NoError(t, err)
		require.Equal(t, "hedge", body, "the slow answer never wins")
		if retryhttp.Hedged(resp.Request.Context()) {
			inOrder++ // the hedge took the script's second answer
		}
	}
	assert.GreaterOrEqual(t, inOrder, wantInOrder, "races in which the hedge reached the server after the attempt it hedges")
}

// raceServer is a loopback server that answers its k-th request with the
// k-th of its answers (the last one once they run out), and records when
// each request arrived on its clock. Its first request, the first attempt
// of a race, is answered only once first is closed, so that a test decides
// whether it answers before or after the hedge's answer was taken in.
type raceServer struct {
	*httptest.Server
	clock *retrytest.Clock
	n     atomic.Int32
	mu    sync.Mutex
	times []time.Time
}

func newRaceServer(t *testing.T, clock *retrytest.Clock, first <-chan struct{}, answers ...retrytest.Answer) *raceServer {
	s := &raceServer{clock: clock}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k := int(s.n.Add(1))
		s.mu.Lock()
		s.times = append(s.times, clock.Now())
		s.mu.Unlock()
		if k == 1 {
			select {
			case <-first:
			case <-r.Context().Done():
				return
			}
		}
		a := answers[min(k, len(answers))-1]
		for key, v := range a.Header {
			w.Header()[key] = v
		}
		if a.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(a.RetryAfter/time.Second)))
		}
		w.WriteHeader(a.Status)
		_, _ = io.WriteString(w, a.Body)
	}))
	t.Cleanup(s.Close)
	return s
}

// count reports how many requests the server has received.
func (s *raceServer) count() int { return int(s.n.Load()) }

// arrivals returns when each request arrived, on the clock.
func (s *raceServer) arrivals() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.times...)
}

// whenHedgeJudged returns a Policy.Retryable that is DefaultRetryable, and
// closes the channel it returns once it has been asked about a hedge's
// answer: the race has then taken that answer in.
func whenHedgeJudged() (func(*http.Response, error) bool, <-chan struct{}) {
	judged := make(chan struct{})
	var once sync.Once
	return func(resp *http.Response, err error) bool {
		if resp != nil && resp.Request != nil && retryhttp.Hedged(resp.Request.Context()) {
			defer once.Do(func() { close(judged) })
		}
		return retryhttp.DefaultRetryable(resp, err)
	}, judged
}

// TestHedgeLoserQuotaRefusalHoldsTheNextRequest checks that a race tells the
// quota holds what every copy was answered, not only the winner: a losing
// copy's 429 with Retry-After: 10, whether it came in before the winner or
// after the race was over, holds the next request to its destination until
// the reset, rather than let it go into the spent quota.
func TestHedgeLoserQuotaRefusalHoldsTheNextRequest(t *testing.T) {
	tests := []struct {
		name string
		// late: the first attempt answers after the race is over, and
		// loses; otherwise the hedge is refused first, and the first
		// attempt wins.
		late        bool
		answers     []retrytest.Answer
		refusal     int // which request was refused, 1-based
		wantWinner  int
		wantAnswers int // answers the Base got before the next request
	}{
		{
			name:    "refused before the winner answered",
			answers: []retrytest.Answer{retrytest.OK("first"), retrytest.TooManyRequests(10 * time.Second), retrytest.OK("next")},
			refusal: 2, wantWinner: 1,
		},
		{
			name:    "answering after the race was over",
			late:    true,
			answers: []retrytest.Answer{retrytest.TooManyRequests(10 * time.Second), retrytest.OK("hedge"), retrytest.OK("next")},
			refusal: 1, wantWinner: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := retrytest.NewClock(t)
			retryable, judged := whenHedgeJudged()
			first := judged
			release := make(chan struct{})
			if tt.late {
				first = release
			}
			srv := newRaceServer(t, clock, first, tt.answers...)
			holds := &recorder[retryhttp.HoldEvent]{}
			// A Base that ignores the attempt's context, so that a loser is
			// answered even after the race cancelled it.
			rec := &closeRecorder{base: inOrder{base: &ignoringContext{base: newBase(t)}, seen: srv.count}}
			client := &http.Client{Transport: &retryhttp.Transport{Base: rec, Policy: retryhttp.Policy{
				Clock: clock, Budget: retryhttp.UnlimitedBudget(), Retryable: retryable,
				Hedge: &retryhttp.Hedge{Delay: 100 * time.Millisecond}, OnHold: holds.record,
			}}}

			resp, _, err := do(t, client, newRequest(t, http.MethodGet, srv.URL, nil))
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, resp.StatusCode)
			require.Equal(t, tt.wantWinner, retryhttp.Attempt(resp.Request.Context()), "the attempt that won")
			close(release)
			require.Eventually(t, func() bool { return rec.responses() == 2 && rec.closed() == 2 }, 5*time.Second, time.Millisecond,
				"the loser was answered, and its body closed")

			_, body, err := do(t, client, newRequest(t, http.MethodGet, srv.URL, nil))
			require.NoError(t, err)
			assert.Equal(t, "next", body)
			at := srv.arrivals()
			require.Len(t, at, 3)
			assert.GreaterOrEqual(t, at[2].Sub(at[tt.refusal-1]), 10*time.Second,
				"the next request waits for the reset the loser was told of")
			if ev := holds.all(); assert.Len(t, ev, 1, "the next request was held") {
				assert.Equal(t, retryhttp.HoldReset, ev[0].Reason)
				assert.Equal(t, "Retry-After", ev[0].Header)
				assert.GreaterOrEqual(t, ev[0].Held, 10*time.Second)
				assert.NoError(t, ev[0].Err)
			}
		})
	}
}

// TestHedgeLoserAnswerCountsOnceForTheThrottle checks that the Throttle
// counts every answer of a race once: the winner's as an accept, a loser's
// refusal as a request not accepted, whether it came in before the winner
// or after the race was over.
func TestHedgeLoserAnswerCountsOnceForTheThrottle(t *testing.T) {
	for _, late := range []bool{false, true} {
		t.Run("late="+strconv.FormatBool(late), func(t *testing.T) {
			clock := retrytest.NewClock(t)
			retryable, judged := whenHedgeJudged()
			first := judged
			release := make(chan struct{})
			answers := []retrytest.Answer{retrytest.OK("first"), retrytest.Unavailable(0)}
			if late {
				first = release
				answers = []retrytest.Answer{retrytest.Unavailable(0), retrytest.OK("hedge")}
			}
			srv := newRaceServer(t, clock, first, answers...)
			th := retryhttp.NewThrottle(1, time.Minute)
			rec := &closeRecorder{base: inOrder{base: &ignoringContext{base: newBase(t)}, seen: srv.count}}
			client := &http.Client{Transport: &retryhttp.Transport{Base: rec, Policy: retryhttp.Policy{
				Clock: clock, Budget: retryhttp.UnlimitedBudget(), Retryable: retryable, Throttle: th,
				Hedge: &retryhttp.Hedge{Delay: 100 * time.Millisecond},
			}}}

			resp, _, err := do(t, client, newRequest(t, http.MethodGet, srv.URL, nil))
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, resp.StatusCode)
			close(release)
			require.Eventually(t, func() bool { return rec.responses() == 2 && rec.closed() == 2 }, 5*time.Second, time.Millisecond,
				"the loser was answered, and its body closed")
			// Two requests, one accept, K = 1: (2 − 1) / (2 + 1).
			assert.InDelta(t, 1.0/3, th.Probability(srv.URL, clock.Now()), 1e-9)
		})
	}
}

// TestHedgeRaceKeepsTheLongestNamedWait checks that when every copy of a
// race is refused, the retry goes no earlier than the latest time any of
// the answers named: a plain 503, or a shorter Retry-After, that comes in
// after a 403 with Retry-After: 5 does not cut that wait short, and a
// request that gives up returns the answer that named it.
func TestHedgeRaceKeepsTheLongestNamedWait(t *testing.T) {
	forbidden := func(retryAfter time.Duration) retrytest.Answer {
		return retrytest.Answer{Status: http.StatusForbidden, RetryAfter: retryAfter, Body: "slow down"}
	}
	tests := []struct {
		name string
		// the first attempt's answer, which comes in after the hedge's
		// 403 with Retry-After: 5
		first retrytest.Answer
	}{
		{"a plain 503 after it", retrytest.Unavailable(0)},
		{"a shorter named wait after it", forbidden(2 * time.Second)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Run("the retry waits for it", func(t *testing.T) {
				clock := retrytest.NewClock(t)
				retryable, judged := whenHedgeJudged()
				srv := newRaceServer(t, clock, judged, tt.first, forbidden(5*time.Second), retrytest.OK("done"))
				var retries recorder[retryhttp.RetryEvent]
				client := &http.Client{Transport: &retryhttp.Transport{
					Base: inOrder{base: newBase(t), seen: srv.count},
					Policy: retryhttp.Policy{
						Clock: clock, Budget: retryhttp.UnlimitedBudget(), Retryable: retryable,
						Hedge: &retryhttp.Hedge{Delay: 100 * time.Millisecond}, OnRetry: retries.record,
					},
				}}
				_, body, err := do(t, client, newRequest(t, http.MethodGet, srv.URL, nil))
				require.NoError(t, err)
				assert.Equal(t, "done", body)
				at := srv.arrivals()
				require.Len(t, at, 3)
				assert.GreaterOrEqual(t, at[2].Sub(at[1]), 5*time.Second, "the retry comes no earlier than the 403 said")
				if ev := retries.all(); assert.Len(t, ev, 1) {
					assert.Equal(t, 5*time.Second, ev[0].RetryAfter)
					assert.True(t, ev[0].HasRetryAfter)
					assert.Equal(t, http.StatusForbidden, ev[0].Response.StatusCode)
				}
			})
			t.Run("a give-up returns the answer that named it", func(t *testing.T) {
				clock := retrytest.NewClock(t)
				retryable, judged := whenHedgeJudged()
				srv := newRaceServer(t, clock, judged, tt.first, forbidden(5*time.Second))
				var giveUps recorder[retryhttp.GiveUpEvent]
				client := &http.Client{Transport: &retryhttp.Transport{
					Base: inOrder{base: newBase(t), seen: srv.count},
					Policy: retryhttp.Policy{
						Clock: clock, MaxAttempts: 2, Budget: retryhttp.UnlimitedBudget(), Retryable: retryable,
						Hedge: &retryhttp.Hedge{Delay: 100 * time.Millisecond}, OnGiveUp: giveUps.record,
					},
				}}
				resp, body, err := do(t, client, newRequest(t, http.MethodGet, srv.URL, nil))
				require.NoError(t, err)
				assert.Equal(t, http.StatusForbidden, resp.StatusCode)
				assert.Equal(t, "5", resp.Header.Get("Retry-After"))
				assert.Equal(t, "slow down", body)
				assert.Equal(t, 2, srv.count())
				if ev := giveUps.all(); assert.Len(t, ev, 1) {
					assert.ErrorIs(t, ev[0].Reason, retryhttp.ErrAttemptsUsedUp)
					assert.Equal(t, 5*time.Second, ev[0].RetryAfter)
				}
			})
		})
	}
}
