package retryhttp_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/b4dedce7/retryhttp"
	"github.com/b4dedce7/retryhttp/retrytest"
)

// quotaServer plays an API with a quota of limit requests per window,
// whose window resets `reset` after the quota runs out, as GitHub's
// (style "github": X-RateLimit-Reset as a Unix time in whole seconds, 403)
// or Discord's (style "discord": X-RateLimit-Reset-After in milliseconds,
// 429 with Retry-After) do. Every answer carries the limit and the quota
// remaining. It counts, per window, the requests that arrived and those it
// refused.
type quotaServer struct {
	limit int
	reset time.Duration
	style string
	delay time.Duration // before each answer, after the quota is counted

	// clock is the time the server reads and sends; the real clock if nil.
	clock retryhttp.Clock

	mu       sync.Mutex
	used     int
	resetAt  time.Time // zero while quota remains
	windows  []quotaWindow
	refusals int
	ok       int
}

type quotaWindow struct{ arrived, refused int }

func newQuotaServer(t *testing.T, limit int, reset time.Duration, style string) (*quotaServer, *httptest.Server) {
	q := &quotaServer{limit: limit, reset: reset, style: style, windows: []quotaWindow{{}}}
	srv := httptest.NewServer(q)
	t.Cleanup(srv.Close)
	return q, srv
}

func (q *quotaServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	q.mu.Lock()
	now := q.now()
	if !q.resetAt.IsZero() && !now.Before(q.resetAt) {
		q.used, q.resetAt = 0, time.Time{}
		q.windows = append(q.windows, quotaWindow{})
	}
	win := &q.windows[len(q.windows)-1]
	win.arrived++
	refused := q.used >= q.limit
	if !refused {
		q.used++
		q.ok++
		if q.used == q.limit {
			q.resetAt = now.Add(q.reset)
		}
	} else {
		win.refused++
		q.refusals++
	}
	remaining, resetAt := q.limit-q.used, q.resetAt
	q.mu.Unlock()
	q.sleep(r.Context(), q.delay)
	if resetAt.IsZero() {
		resetAt = now.Add(q.reset) // an estimate while quota remains, as GitHub's hourly window is
	}
	h := w.Header()
	h.Set("Date", now.UTC().Format(http.TimeFormat))
	if q.style == "terse" || q.style == "quiet" {
		// Successes say nothing of the quota, and refusals are
		// retrytest's GitHub answer: as it is, announcing 5000 ("terse"),
		// or with the limit set right ("quiet").
		if refused {
			a := retrytest.RateLimited(resetAt.Sub(now), retrytest.GitHub)
			if q.style == "quiet" {
				a = a.WithHeader("X-RateLimit-Limit", strconv.Itoa(q.limit))
			}
			for k, v := range a.Header {
				h[k] = v
			}
			for k, v := range a.HeaderFunc(now) {
				h[k] = v
			}
			w.WriteHeader(a.Status)
			_, _ = io.WriteString(w, a.Body)
			return
		}
		_, _ = io.WriteString(w, "ok")
		return
	}
	h.Set("X-RateLimit-Limit", strconv.Itoa(q.limit))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(remaining))
	status := http.StatusForbidden
	switch q.style {
	case "github":
		sec := resetAt.Unix()
		if resetAt.Nanosecond() > 0 {
			sec++
		}
		h.Set("X-RateLimit-Reset", strconv.FormatInt(sec, 10))
		h.Set("X-RateLimit-Used", strconv.Itoa(q.limit-remaining))
	case "discord":
		after := resetAt.Sub(now)
		h.Set("X-RateLimit-Reset-After", fmt.Sprintf("%.3f", math.Ceil(after.Seconds()*1000)/1000))
		status = http.StatusTooManyRequests
	}
	if refused {
		w.WriteHeader(status)
		_, _ = io.WriteString(w, `{"message":"API rate limit exceeded"}`)
		return
	}
	_, _ = io.WriteString(w, "ok")
}

// sleep waits d on the server's clock, or until ctx is done.
func (q *quotaServer) sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	if q.clock != nil {
		_ = q.clock.Sleep(ctx, d)
		return
	}
	time.Sleep(d)
}

// now reads the server's clock.
func (q *quotaServer) now() time.Time {
	if q.clock != nil {
		return q.clock.Now()
	}
	return time.Now()
}

func (q *quotaServer) stats() (windows []quotaWindow, ok, refusals int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]quotaWindow(nil), q.windows...), q.ok, q.refusals
}

// runConcurrent sends n GETs at once through client and returns their
// statuses and errors.
func runConcurrent(t *testing.T, client *http.Client, url string, n int) (statuses []int, errs []error) {
	statuses, errs = make([]int, n), make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := client.Get(url)
			if err != nil {
				errs[i] = err
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			statuses[i] = resp.StatusCode
		}()
	}
	wg.Wait()
	return statuses, errs
}

// checkQuotaTarget checks the target: every request ends 200, the
// first window's refusals are those in flight when it ran out, and every
// later window sees no more requests than the quota and no refusal.
func checkQuotaTarget(t *testing.T, q *quotaServer, statuses []int, errs []error) {
	t.Helper()
	for i := range statuses {
		require.NoError(t, errs[i], "request %d", i)
		assert.Equal(t, http.StatusOK, statuses[i], "request %d", i)
	}
	windows, ok, refusals := q.stats()
	t.Logf("windows (arrived, refused): %v; successes %d, refusals %d", windows, ok, refusals)
	assert.Equal(t, len(statuses), ok)
	for i, w := range windows[1:] {
		assert.LessOrEqual(t, w.arrived, q.limit, "window %d let through more than the quota", i+1)
		assert.Zero(t, w.refused, "window %d: sent into a spent quota", i+1)
	}
}

// The target: 30 concurrent GETs through one Transport with the
// default Policy, against a GitHub-like API with a quota of 5 and a reset
// 3 s after it runs out. The five resets play in virtual time.
func TestQuotaHoldGitHubTarget(t *testing.T) {
	q, srv := newQuotaServer(t, 5, 3*time.Second, "github")
	clock := newCrowdClock(t)
	client := crowdClient(t, clock, retryhttp.Policy{})
	q.clock = clock
	clock.join(30)
	start := clock.Now()
	statuses, errs := runConcurrent(t, client, srv.URL, 30)
	t.Logf("finished in %v of virtual time", clock.Now().Sub(start))
	checkQuotaTarget(t, q, statuses, errs)
}

// The same target against a short window, with Discord's fractional
// X-RateLimit-Reset-After and a 429.
func TestQuotaHoldShortWindow(t *testing.T) {
	q, srv := newQuotaServer(t, 5, 300*time.Millisecond, "discord")
	var mu sync.Mutex
	var holds []retryhttp.HoldEvent
	// A reset under ScheduledRetryMin makes a blind retry, charged to the
	// Budget; what is tested here is the hold's pacing.
	clock := newCrowdClock(t)
	client := crowdClient(t, clock, retryhttp.Policy{
		Budget: retryhttp.UnlimitedBudget(),
		OnHold: func(ev retryhttp.HoldEvent) {
			mu.Lock()
			holds = append(holds, ev)
			mu.Unlock()
		},
	})
	q.clock = clock
	clock.join(30)
	statuses, errs := runConcurrent(t, client, srv.URL, 30)
	checkQuotaTarget(t, q, statuses, errs)
	mu.Lock()
	defer mu.Unlock()
	require.NotEmpty(t, holds, "no request was held")
	for _, ev := range holds {
		assert.NoError(t, ev.Err)
		assert.Positive(t, ev.Held)
		assert.NotEmpty(t, ev.Header)
		assert.Contains(t, []retryhttp.HoldReason{retryhttp.HoldReset, retryhttp.HoldQuota}, ev.Reason)
	}
}

// A server whose successes carry no rate-limit fields and whose refusals
// (retrytest's GitHub answer as it is) announce a quota larger than the
// real one: the hold learns the real one from the window it let through,
// and later resets let no more through, and one probe to find the quota
// spent again.
func TestQuotaHoldLearnsAQuotaAnnouncedWrong(t *testing.T) {
	q, srv := newQuotaServer(t, 5, time.Second, "terse")
	clock := newCrowdClock(t)
	client := crowdClient(t, clock, retryhttp.Policy{})
	q.clock = clock
	clock.join(30)
	statuses, errs := runConcurrent(t, client, srv.URL, 30)
	for i := range statuses {
		require.NoError(t, errs[i], "request %d", i)
		assert.Equal(t, http.StatusOK, statuses[i], "request %d", i)
	}
	windows, _, _ := q.stats()
	t.Logf("windows (arrived, refused): %v", windows)
	for i, w := range windows[2:] {
		// Successes that say nothing leave one way to find the quota
		// spent: one probe, refused.
		assert.LessOrEqual(t, w.arrived, q.limit+1, "window %d let through more than it learnt", i+2)
		assert.LessOrEqual(t, w.refused, 1, "window %d", i+2)
	}
}

// Successes that say nothing of the quota, and refusals that announce it
// right: a window that served its quota is taken as spent, and held as long
// as the last reset was, with no refusal to find out.
func TestQuotaHoldTakesAServedQuotaAsSpent(t *testing.T) {
	q, srv := newQuotaServer(t, 5, time.Second, "quiet")
	clock := newCrowdClock(t)
	client := crowdClient(t, clock, retryhttp.Policy{})
	q.clock = clock
	clock.join(30)
	statuses, errs := runConcurrent(t, client, srv.URL, 30)
	checkQuotaTarget(t, q, statuses, errs)
}

// Answers that take a while: requests let through at a reset are still in
// flight when the next held ones wake, and must not be more than the quota.
// The server answers 0.3 s late on the same virtual clock, and the held
// requests that wait for those answers count as blocked, so that five
// 0.5 s resets play in virtual time.
func TestQuotaHoldLetsThroughNoMoreThanTheQuotaAtAReset(t *testing.T) {
	q, srv := newQuotaServer(t, 5, 500*time.Millisecond, "discord")
	q.delay = 300 * time.Millisecond
	clock := newCrowdClock(t)
	q.clock = clock
	// A reset under ScheduledRetryMin makes a blind retry, charged to the
	// Budget; what is tested here is the hold's pacing.
	rt := &retryhttp.Transport{Base: newBase(t), Policy: retryhttp.Policy{Budget: retryhttp.UnlimitedBudget(), Clock: clock}}
	client := &http.Client{Transport: crowdTransport{rt: rt, clock: clock}}
	clock.watchBlocked(t, func() int { return retryhttp.AwaitingAnswers(rt) })
	clock.join(30)
	start := clock.Now()
	statuses, errs := runConcurrent(t, client, srv.URL, 30)
	t.Logf("finished in %v of virtual time", clock.Now().Sub(start))
	checkQuotaTarget(t, q, statuses, errs)
	windows, _, _ := q.stats()
	assert.GreaterOrEqual(t, len(windows), 6, "the 30 requests took five resets at least")
}

// spentThenOK returns a Server on clock whose first answer says, as
// GitHub does, that the quota is spent for reset, and whose later answers
// are 200.
func spentThenOK(t *testing.T, clock *retrytest.Clock, reset time.Duration) *retrytest.Server {
	return retrytest.NewServer(t, retrytest.RateLimited(reset, retrytest.GitHub)).
		Otherwise(retrytest.OK("ok")).UseClock(clock)
}

// spend sends a GET of url with NoRetry, so that its 403 tells the
// Transport of the spent quota and comes back as it is. The 403 names the
// resource it draws on, as GitHub's do ("core"): the quota then holds the
// requests of the route it was answered to, a GET of url's path.
func spend(t *testing.T, client *http.Client, url string) {
	t.Helper()
	spendWith(t, client, http.MethodGet, url)
}

// spendWith is spend with a request of the given method.
func spendWith(t *testing.T, client *http.Client, method, url string) {
	t.Helper()
	req := mustRequest(t, method, url)
	resp, err := client.Do(req.WithContext(retryhttp.NoRetry(req.Context())))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
}

func TestQuotaHoldWaitsUntilTheReset(t *testing.T) {
	var events []retryhttp.HoldEvent
	client, clock := newClient(t, retryhttp.Policy{OnHold: func(ev retryhttp.HoldEvent) { events = append(events, ev) }})
	srv := spentThenOK(t, clock, 20*time.Second)
	spend(t, client, srv.URL)
	require.Empty(t, clock.Waits())

	resp, body, err := do(t, client, mustRequest(t, http.MethodGet, srv.URL))
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "ok", body)
	waits := clock.Waits()
	require.Len(t, waits, 1, "one hold, no retry")
	// The reset, read against Date, may be up to a second later; the
	// jitter adds up to max(wait/5, 1 s).
	assert.GreaterOrEqual(t, waits[0], 20*time.Second)
	assert.Less(t, waits[0], 21*time.Second+5*time.Second)
	reqs := srv.Requests()
	require.Len(t, reqs, 2)
	assert.GreaterOrEqual(t, reqs[1].Time.Sub(reqs[0].Time), 20*time.Second, "sent before the reset")

	require.Len(t, events, 1)
	assert.Equal(t, 1, events[0].Attempt)
	assert.Equal(t, retryhttp.HoldReset, events[0].Reason)
	assert.Equal(t, "X-RateLimit-Reset", events[0].Header)
	assert.InDelta(t, waits[0], events[0].Held, float64(100*time.Millisecond), "Held")
	assert.NoError(t, events[0].Err)
}

func mustRequest(t *testing.T, method, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	require.NoError(t, err)
	return req
}

func TestQuotaHoldNeverWaitsPastItsLimits(t *testing.T) {
	tests := []struct {
		name   string
		policy retryhttp.Policy
		ctx    func() (context.Context, context.CancelFunc)
		reason error
	}{
		{"MaxRetryAfter", retryhttp.Policy{MaxRetryAfter: 10 * time.Second}, nil, retryhttp.ErrRetryAfterTooLong},
		{"MaxElapsed", retryhttp.Policy{MaxElapsed: 15 * time.Second}, nil, retryhttp.ErrMaxElapsed},
		{"deadline", retryhttp.Policy{}, func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 10*time.Second)
		}, retryhttp.ErrDeadline},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var events []retryhttp.HoldEvent
			tt.policy.OnHold = func(ev retryhttp.HoldEvent) { events = append(events, ev) }
			tt.policy.MaxAttempts = 1
			client, clock := newClient(t, tt.policy)
			srv := spentThenOK(t, clock, 20*time.Second)
			spend(t, client, srv.URL)

			req := mustRequest(t, http.MethodGet, srv.URL)
			if tt.ctx != nil {
				ctx, cancel := tt.ctx()
				defer cancel()
				req = req.WithContext(ctx)
			}
			resp, _, err := do(t, client, req)
			require.NoError(t, err)
			assert.Equal(t, http.StatusOK, resp.StatusCode, "sent as usual: the server's answer")
			assert.Empty(t, clock.Waits(), "a hold that does not fit is not waited for")
			assert.Empty(t, events, "no hold, no event")
		})
	}
}

func TestQuotaHoldsAPostAndNeverRetriesIt(t *testing.T) {
	clock := retrytest.NewClock(t)
	srv := retrytest.NewServer(t,
		retrytest.RateLimited(20*time.Second, retrytest.GitHub),
		retrytest.RateLimited(20*time.Second, retrytest.GitHub),
	).UseClock(clock)
	var gaveUp []retryhttp.GiveUpEvent
	client, _ := newClient(t, retryhttp.Policy{Clock: clock, OnGiveUp: func(ev retryhttp.GiveUpEvent) { gaveUp = append(gaveUp, ev) }})
	spendWith(t, client, http.MethodPost, srv.URL)

	resp, err := client.Post(srv.URL, "text/plain", strings.NewReader("body"))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusForbidden, resp.StatusCode, "the server's answer, as it came")
	reqs := srv.Requests()
	require.Len(t, reqs, 2, "held once, sent once, never retried")
	assert.Equal(t, "body", string(reqs[1].Body))
	assert.GreaterOrEqual(t, reqs[1].Time.Sub(reqs[0].Time), 20*time.Second, "held until the reset")
	require.Len(t, gaveUp, 2)
	assert.ErrorIs(t, gaveUp[1].Reason, retryhttp.ErrNotResendable)
}

func TestQuotaHoldsOfDestinationsAreIndependent(t *testing.T) {
	client, clock := newClient(t, retryhttp.Policy{})
	spent := spentThenOK(t, clock, 20*time.Second)
	other := retrytest.NewServer(t).Otherwise(retrytest.OK("other")).UseClock(clock)
	spend(t, client, spent.URL)

	resp, body, err := do(t, client, mustRequest(t, http.MethodGet, other.URL))
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "other", body)
	assert.Empty(t, clock.Waits(), "another destination is not held")

	// The same host on another port is another destination; the same one
	// spelt with a capital letter is not.
	upper := strings.Replace(spent.URL, "http://", "HTTP://", 1)
	_, _, err = do(t, client, mustRequest(t, http.MethodGet, upper))
	require.NoError(t, err)
	assert.Len(t, clock.Waits(), 1, "the spent destination is held, however spelt")
}

// A new request cancelled while held never had an outcome, retryable or
// not: OnHold reports the cancellation, RoundTrip returns it, and OnGiveUp,
// which is about outcomes given up on, is not called.
func TestQuotaHoldCancelledByTheCaller(t *testing.T) {
	var events []retryhttp.HoldEvent
	var gaveUp []retryhttp.GiveUpEvent
	clock := retrytest.NewClock(t)
	srv := spentThenOK(t, clock, 20*time.Second)
	client := &http.Client{Transport: &retryhttp.Transport{Base: newBase(t), Policy: retryhttp.Policy{
		Clock:    blockingClock{clock},
		OnHold:   func(ev retryhttp.HoldEvent) { events = append(events, ev) },
		OnGiveUp: func(ev retryhttp.GiveUpEvent) { gaveUp = append(gaveUp, ev) },
	}}}
	spend(t, client, srv.URL)
	gaveUp = nil

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	req := mustRequest(t, http.MethodGet, srv.URL).WithContext(ctx)
	_, err := client.Do(req)
	require.Error(t, err)
	assert.ErrorIs(t, err, context.Canceled)
	var gu *retryhttp.GiveUpError
	require.ErrorAs(t, err, &gu)
	assert.Zero(t, gu.Attempts)
	assert.Len(t, srv.Requests(), 1, "nothing sent")
	require.Len(t, events, 1)
	assert.ErrorIs(t, events[0].Err, context.Canceled)
	assert.Empty(t, gaveUp, "no attempt was sent, so no outcome was given up on")
}

// A retry cancelled while held follows an outcome that Retryable judged
// worth retrying: that outcome is given up on, and OnGiveUp says so once.
func TestQuotaHoldCancellingARetryGivesUpItsRetryableOutcome(t *testing.T) {
	var events []retryhttp.HoldEvent
	var gaveUp []retryhttp.GiveUpEvent
	fake := retrytest.NewClock(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The GET's first attempt gets a 503, and while it waits for its retry
	// another GET, sent once, learns that the quota is spent for 20 s: the
	// retry is held.
	srv := retrytest.NewServer(t, retrytest.Reply(503, "busy"), retrytest.RateLimited(20*time.Second, retrytest.GitHub)).
		Otherwise(retrytest.OK("ok")).UseClock(fake)
	var client *http.Client
	client = &http.Client{Transport: &retryhttp.Transport{Base: newBase(t), Policy: retryhttp.Policy{
		Clock:   cancelOnHoldClock{Clock: fake, cancel: cancel},
		Backoff: constant(time.Millisecond),
		OnRetry: func(retryhttp.RetryEvent) { spend(t, client, srv.URL+"/?spend") },
		OnHold:  func(ev retryhttp.HoldEvent) { events = append(events, ev) },
		OnGiveUp: func(ev retryhttp.GiveUpEvent) {
			if ev.Request.URL.RawQuery != "spend" { // not the spending GET's 403, given up on with its one attempt
				gaveUp = append(gaveUp, ev)
			}
		},
	}}}

	_, err := client.Do(mustRequest(t, http.MethodGet, srv.URL).WithContext(ctx))

	require.ErrorIs(t, err, context.Canceled)
	var gu *retryhttp.GiveUpError
	require.ErrorAs(t, err, &gu)
	assert.Equal(t, 1, gu.Attempts)
	assert.Len(t, srv.Requests(), 2, "the GET's first attempt and the spending GET; the retry was not sent")
	require.Len(t, events, 1)
	assert.Equal(t, 2, events[0].Attempt, "the retry was held")
	assert.ErrorIs(t, events[0].Err, context.Canceled)
	require.Len(t, gaveUp, 1, "the 503 was retryable, and given up on")
	assert.Equal(t, 1, gaveUp[0].Attempts)
	assert.ErrorIs(t, gaveUp[0].Reason, context.Canceled)
}

// cancelOnHoldClock reads and moves a fake clock, but when asked for a wait
// as long as a quota hold's it cancels the request instead, and waits for
// that: the hold is cut short by the caller, whatever the machine's load.
type cancelOnHoldClock struct {
	*retrytest.Clock
	cancel context.CancelFunc
}

func (c cancelOnHoldClock) Sleep(ctx context.Context, d time.Duration) error {
	if d < 10*time.Second {
		return c.Clock.Sleep(ctx, d)
	}
	c.cancel()
	<-ctx.Done()
	return ctx.Err()
}

// blockingClock reads the time of a fake clock but waits in real time
// until its context ends, to cut a hold short.
type blockingClock struct{ *retrytest.Clock }

func (c blockingClock) Sleep(ctx context.Context, d time.Duration) error {
	<-ctx.Done()
	return ctx.Err()
}

func (blockingClock) Virtual() bool { return false }

var _ = errors.Is

// rateLimitedTransport answers 200 with the rate-limit fields GitHub sends
// on every response while quota remains.
type rateLimitedTransport struct{ header http.Header }

func (t rateLimitedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: http.StatusOK, Header: t.header, Body: http.NoBody, Request: req}, nil
}

// BenchmarkOverheadRateLimitFields is BenchmarkOverhead for a success that
// carries GitHub's rate-limit fields with quota left: the Transport looks a
// few of them up for news of a spent quota, without an allocation or a lock.
func BenchmarkOverheadRateLimitFields(b *testing.B) {
	req, err := http.NewRequest(http.MethodGet, "http://127.0.0.1/", nil)
	if err != nil {
		b.Fatal(err)
	}
	h := http.Header{}
	for k, v := range map[string]string{
		"Content-Type": "application/json", "Date": "Fri, 04 Dec 2026 16:00:00 GMT",
		"X-Ratelimit-Limit": "5000", "X-Ratelimit-Remaining": "4999", "X-Ratelimit-Used": "1",
		"X-Ratelimit-Reset": "1796400000", "X-Ratelimit-Resource": "core",
	} {
		h.Set(k, v)
	}
	base := rateLimitedTransport{header: h}
	runImpls(b, []impl{
		{"impl=bare", base},
		{"impl=retryhttp", &retryhttp.Transport{Base: base}},
	}, func(b *testing.B, rt http.RoundTripper) {
		for b.Loop() {
			if _, err := rt.RoundTrip(req); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// A hold too long to wait for (a 503 asking for an hour) lets requests
// through; once one of them is served, the server has plainly reset early,
// and the hold must not go on ending the retries of other failures for
// the hour.
func TestQuotaHoldRefutedByASuccessNoLongerBlocksRetries(t *testing.T) {
	clock := retrytest.NewClock(t)
	srv := retrytest.NewServer(t,
		retrytest.Unavailable(time.Hour),
		retrytest.OK("served"),
		retrytest.Reply(http.StatusServiceUnavailable, "blip"),
		retrytest.OK("retried"),
	).UseClock(clock)
	// An unlimited Budget: one success earns the default Budget too little
	// for the blind retry this test is about.
	client, _ := newClient(t, retryhttp.Policy{Clock: clock, Budget: retryhttp.UnlimitedBudget()})
	resp, _, err := do(t, client, mustRequest(t, http.MethodGet, srv.URL))
	require.NoError(t, err)
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "an hour is past MaxRetryAfter: given up")

	_, body, err := do(t, client, mustRequest(t, http.MethodGet, srv.URL))
	require.NoError(t, err)
	require.Equal(t, "served", body, "the hold does not fit: sent as usual")

	resp, body, err = do(t, client, mustRequest(t, http.MethodGet, srv.URL))
	require.NoError(t, err, "the 503 without Retry-After is retried, not ended by a refuted hold")
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "retried", body)
	assert.Len(t, srv.Requests(), 4)
}

// A hedge is a request too: while a hold counts what it lets through, no
// hedge may go around it into the quota the server announced.
func TestQuotaHoldIsNotBypassedByAHedge(t *testing.T) {
	clock := retrytest.NewClock(t)
	srv := retrytest.NewServer(t,
		retrytest.RateLimited(5*time.Second, retrytest.GitHub).WithHeader("X-RateLimit-Limit", "1"),
	).Otherwise(retrytest.OK("ok").WithSlow(time.Second)).UseClock(clock)
	var hedges int
	client, _ := newClient(t, retryhttp.Policy{
		Clock:   clock,
		Hedge:   &retryhttp.Hedge{Delay: 10 * time.Millisecond},
		OnHedge: func(retryhttp.HedgeEvent) { hedges++ },
	})
	spend(t, client, srv.URL)

	// The request waits for the reset, is let through, and its answer is
	// held on the clock for a second, while the hedge delay of 10 ms runs
	// out: the hedge is decided on before the answer comes.
	f := goDo(t, client, mustRequest(t, http.MethodGet, srv.URL))
	require.Eventually(t, func() bool { return srv.Count() >= 2 && len(clock.Waits()) >= 2 }, 5*time.Second, time.Millisecond,
		"the request at the server, and its hedge delay played")
	require.Equal(t, 10*time.Millisecond, clock.Waits()[1], "the hedge delay, after the wait for the reset")
	clock.Advance(time.Second)
	resp, body, err := f.wait(t)
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "ok", body)
	assert.Zero(t, hedges, "a hedge sent into a quota of 1 already let through")
	assert.Len(t, srv.Requests(), 2, "the spending GET, then the one request the reset allows")
}

// MaxRetryAfter is one of the limits a hold's wait, jitter included, must
// fit: a reset just within it is waited for with no more jitter than fits.
func TestQuotaHoldJitterNeverPassesMaxRetryAfter(t *testing.T) {
	const maxRetryAfter = 22 * time.Second
	for i := range 20 {
		client, clock := newClient(t, retryhttp.Policy{MaxRetryAfter: maxRetryAfter})
		srv := spentThenOK(t, clock, 20*time.Second)
		spend(t, client, srv.URL)
		resp, _, err := do(t, client, mustRequest(t, http.MethodGet, srv.URL))
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		waits := clock.Waits()
		require.Len(t, waits, 1, "held, run %d", i)
		assert.GreaterOrEqual(t, waits[0], 20*time.Second, "run %d", i)
		assert.LessOrEqual(t, waits[0], maxRetryAfter, "run %d: held past MaxRetryAfter", i)
	}
}

// A hold past its expiry may still have let a request through: that
// request's answer, saying the quota is spent, must reach a hold that new
// requests find, not one forgotten while it was in flight.
func TestQuotaHoldNotForgottenWhileARequestItLetThroughIsInFlight(t *testing.T) {
	clock := retrytest.NewClock(t)
	srv := retrytest.NewServer(t,
		retrytest.RateLimited(time.Second, retrytest.GitHub),
		retrytest.RateLimited(20*time.Second, retrytest.GitHub).WithSlow(300*time.Millisecond),
		retrytest.OK("fast"),
	).Otherwise(retrytest.OK("ok")).UseClock(clock)
	client, _ := newClient(t, retryhttp.Policy{Clock: clock, MaxAttempts: 1})
	spend(t, client, srv.URL)
	clock.Advance(10 * time.Second) // the hold has expired, but is not forgotten yet

	slow := make(chan int)
	go func() {
		resp, err := client.Get(srv.URL)
		if err != nil {
			slow <- 0
			return
		}
		resp.Body.Close()
		slow <- resp.StatusCode
	}()
	require.Eventually(t, func() bool { return srv.Count() == 2 }, time.Second, time.Millisecond)
	_, body, err := do(t, client, mustRequest(t, http.MethodGet, srv.URL))
	require.NoError(t, err)
	require.Equal(t, "fast", body)
	clock.Advance(300 * time.Millisecond) // the slow answer comes
	require.Equal(t, http.StatusForbidden, <-slow, "the slow request's answer: the quota is spent")
	require.Empty(t, clock.Waits())

	_, body, err = do(t, client, mustRequest(t, http.MethodGet, srv.URL))
	require.NoError(t, err)
	assert.Equal(t, "ok", body)
	waits := clock.Waits()
	require.Len(t, waits, 1, "not sent into the spent quota: held until its reset")
	assert.GreaterOrEqual(t, waits[0], 19*time.Second)
}

// A refusal that names a short wait (Retry-After: 120) and a far reset
// (X-RateLimit-Reset an hour off) delays its retry twice: its own wait,
// then the hold's. Each fits every limit alone; their sum must fit too, or
// the hold is not waited for and the retry goes out after its own wait.
func TestHoldAndRetryWaitTogetherFitTheDeadline(t *testing.T) {
	tests := []struct {
		name     string
		policy   retryhttp.Policy
		deadline time.Duration // of the request's context; 0: none
		limit    time.Duration // that the retry must start within
	}{
		{"deadline", retryhttp.Policy{MaxRetryAfter: 2 * time.Hour, MaxElapsed: 3 * time.Hour}, time.Hour, time.Hour},
		{"MaxRetryAfter", retryhttp.Policy{MaxRetryAfter: time.Hour, MaxElapsed: 3 * time.Hour}, 0, time.Hour},
		{"MaxElapsed", retryhttp.Policy{MaxRetryAfter: 2 * time.Hour, MaxElapsed: time.Hour}, 0, time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, clock := newClient(t, tt.policy)
			srv := retrytest.NewServer(t,
				retrytest.RateLimited(61*time.Minute, retrytest.GitHub).WithHeader("Retry-After", "120"),
			).Otherwise(retrytest.OK("ok")).UseClock(clock)
			req := mustRequest(t, http.MethodGet, srv.URL)
			if tt.deadline > 0 {
				ctx, cancel := context.WithTimeout(context.Background(), tt.deadline)
				defer cancel()
				req = req.WithContext(ctx)
			}
			resp, body, err := do(t, client, req)
			require.NoError(t, err)
			assert.Equal(t, http.StatusOK, resp.StatusCode)
			assert.Equal(t, "ok", body)
			reqs := srv.Requests()
			require.Len(t, reqs, 2)
			gap := reqs[1].Time.Sub(reqs[0].Time)
			assert.GreaterOrEqual(t, gap, 120*time.Second, "sent before its Retry-After")
			assert.Less(t, gap, tt.limit, "the retry's wait and the hold's together passed the limit; waits %v", clock.Waits())
		})
	}
}

// A window in which the client sent one request, then met a refusal, says
// nothing of the quota but the client's own low demand: the server
// announced 100. Later requests, 5 s apart, are far below that quota and
// are not held, as they were when the hold took "1" for the quota and
// spent it again after every success.
func TestQuotaHoldDoesNotTakeLowDemandForTheQuota(t *testing.T) {
	for _, tt := range []struct{ name, key, value string }{
		{"X-RateLimit-Limit", "X-RateLimit-Limit", "100"},
		{"RateLimit-Policy", "RateLimit-Policy", `"default";q=100;w=60`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			var events []retryhttp.HoldEvent
			client, clock := newClient(t, retryhttp.Policy{MaxAttempts: 1, OnHold: func(ev retryhttp.HoldEvent) {
				mu.Lock()
				defer mu.Unlock()
				events = append(events, ev)
			}})
			refusal := retrytest.TooManyRequests(10*time.Second).WithHeader(tt.key, tt.value)
			srv := retrytest.NewServer(t, refusal, retrytest.OK("ok"), refusal).
				Otherwise(retrytest.OK("ok")).UseClock(clock)
			get := func() int {
				t.Helper()
				resp, _, err := do(t, client, mustRequest(t, http.MethodGet, srv.URL))
				require.NoError(t, err)
				return resp.StatusCode
			}

			require.Equal(t, http.StatusTooManyRequests, get(), "the quota is spent")
			clock.Advance(11 * time.Second)
			require.Equal(t, http.StatusOK, get(), "one request in the fresh window")
			require.Equal(t, http.StatusTooManyRequests, get(), "then a refusal")
			clock.Advance(11 * time.Second)
			require.Empty(t, clock.Waits(), "nothing held so far")

			for i := range 6 {
				require.Equal(t, http.StatusOK, get(), "request %d", i)
				clock.Advance(5 * time.Second)
			}
			assert.Empty(t, clock.Waits(), "requests 5 s apart were held, far below the quota of 100")
			mu.Lock()
			defer mu.Unlock()
			assert.Empty(t, events)
		})
	}
}

// TestOnlyQuotaRefusalsHoldNewRequests: a 503 that names only its wait is a
// server shedding load, not a quota: the next request to it is sent at once,
// not held, so that held work does not pile up to be let out together. A
// 429 or a 403 with Retry-After (GitHub's secondary limit) is a quota
// refusal: the next request is held until the reset it named.
func TestOnlyQuotaRefusalsHoldNewRequests(t *testing.T) {
	for _, tt := range []struct {
		name    string
		refusal retrytest.Answer
		held    bool
	}{
		{"503 with only Retry-After", retrytest.Reply(503, "").WithHeader("Retry-After", "5"), false},
		{"429 with only Retry-After", retrytest.Reply(429, "").WithHeader("Retry-After", "5"), true},
		{"403 with Retry-After", retrytest.Reply(403, "").WithHeader("Retry-After", "5"), true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := retrytest.NewServer(t).On("/refused", tt.refusal).On("/next", retrytest.OK("next"))
			var holds []retryhttp.HoldEvent
			client, clock := newClient(t, retryhttp.Policy{
				OnHold: func(ev retryhttp.HoldEvent) { holds = append(holds, ev) },
			})
			first := newRequest(t, "GET", srv.URL+"/refused", nil)
			first = first.WithContext(retryhttp.NoRetry(first.Context()))
			resp, _, err := do(t, client, first)
			require.NoError(t, err)
			require.Equal(t, tt.refusal.Status, resp.StatusCode)

			resp, body, err := do(t, client, newRequest(t, "GET", srv.URL+"/next", nil))

			require.NoError(t, err)
			assert.Equal(t, 200, resp.StatusCode)
			assert.Equal(t, "next", body)
			if tt.held {
				require.Len(t, holds, 1)
				assert.GreaterOrEqual(t, holds[0].Held, 5*time.Second, "held until the reset")
				assert.GreaterOrEqual(t, clock.Waited(), 5*time.Second)
			} else {
				assert.Empty(t, holds, "no request held")
				assert.Zero(t, clock.Waited(), "sent at once")
			}
		})
	}
}
