package retrytest_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/b4dedce7/retryhttp"
	"github.com/b4dedce7/retryhttp/retrytest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// client returns a plain client whose idle connections close with the test.
func client(t *testing.T) *http.Client {
	base := &http.Transport{}
	t.Cleanup(base.CloseIdleConnections)
	return &http.Client{Transport: base}
}

func get(t *testing.T, c *http.Client, url string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(body)
}

func TestServerPlaysTheScriptInOrder(t *testing.T) {
	srv := retrytest.NewServer(t,
		retrytest.Unavailable(3*time.Second),
		retrytest.TooManyRequests(90*time.Millisecond),
		retrytest.Reply(418, "teapot").WithHeader("X-Kind", "tea"),
		retrytest.OK("done"),
	).Otherwise(retrytest.Reply(410, "gone"))
	c := client(t)

	tests := []struct {
		status     int
		retryAfter string
		header     string
		body       string
	}{
		{503, "3", "", ""},
		{429, "1", "", ""}, // rounded up to whole seconds
		{418, "", "tea", "teapot"},
		{200, "", "", "done"},
		{410, "", "", "gone"},
		{410, "", "", "gone"},
	}
	for i, tt := range tests {
		resp, body := get(t, c, srv.URL)
		assert.Equal(t, tt.status, resp.StatusCode, "answer %d", i+1)
		assert.Equal(t, tt.retryAfter, resp.Header.Get("Retry-After"), "answer %d", i+1)
		assert.Equal(t, tt.header, resp.Header.Get("X-Kind"), "answer %d", i+1)
		assert.Equal(t, tt.body, body, "answer %d", i+1)
		_, err := http.ParseTime(resp.Header.Get("Date"))
		assert.NoError(t, err, "answer %d has a Date", i+1)
	}
	assert.Equal(t, len(tests), srv.Count())
}

func TestServerScriptsPerPath(t *testing.T) {
	srv := retrytest.NewServer(t, retrytest.OK("any 1"), retrytest.OK("any 2")).
		On("/a", retrytest.Unavailable(0), retrytest.OK("a")).
		Otherwise(retrytest.Reply(404, "none"))
	c := client(t)

	var got []string
	for _, path := range []string{"/a", "/b", "/a", "/c", "/a", "/d"} {
		resp, body := get(t, c, srv.URL+path)
		got = append(got, fmt.Sprintf("%s %d %s", path, resp.StatusCode, body))
	}
	assert.Equal(t, []string{
		"/a 503 ", "/b 200 any 1", "/a 200 a", "/c 200 any 2", "/a 404 none", "/d 404 none",
	}, got)
}

func TestServerRecordsRequests(t *testing.T) {
	clock := retrytest.NewClock(t)
	srv := retrytest.NewServer(t, retrytest.OK(""), retrytest.OK("")).UseClock(clock)
	c := client(t)

	req, err := http.NewRequest("PUT", srv.URL+"/items/7?x=1", strings.NewReader("payload"))
	require.NoError(t, err)
	req.Header.Set("Idempotency-Key", "k-1")
	resp, err := c.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	clock.Advance(5 * time.Second)
	get(t, c, srv.URL+"/next")

	reqs := srv.Requests()
	require.Len(t, reqs, 2)
	assert.Equal(t, "PUT", reqs[0].Method)
	assert.Equal(t, "/items/7", reqs[0].Path)
	assert.Equal(t, "k-1", reqs[0].Header.Get("Idempotency-Key"))
	assert.Equal(t, []byte("payload"), reqs[0].Body)
	assert.Equal(t, "GET", reqs[1].Method)
	assert.Empty(t, reqs[1].Body)
	assert.Equal(t, 5*time.Second, reqs[1].Time.Sub(reqs[0].Time), "times are on the server's clock")

	reqs[0].Method = "changed"
	assert.Equal(t, "PUT", srv.Requests()[0].Method, "Requests returns a copy")
}

func TestServerDatesFollowItsClock(t *testing.T) {
	clock := retrytest.NewClock(t)
	clock.Advance(1000 * time.Hour)
	srv := retrytest.NewServer(t,
		retrytest.UnavailableUntil(90*time.Second),
		withLayout(retrytest.UnavailableUntil(30*time.Second), retrytest.LayoutRFC850),
		withLayout(retrytest.UnavailableUntil(1500*time.Millisecond), retrytest.LayoutASCTime),
	).UseClock(clock)
	c := client(t)

	for _, want := range []time.Duration{90 * time.Second, 30 * time.Second, 2 * time.Second} {
		resp, _ := get(t, c, srv.URL)
		date, err := http.ParseTime(resp.Header.Get("Date"))
		require.NoError(t, err)
		assert.Equal(t, clock.Now().UTC(), date.UTC())
		retryAt, err := http.ParseTime(resp.Header.Get("Retry-After"))
		require.NoError(t, err)
		assert.Equal(t, want, retryAt.Sub(date))
		d, ok := retryhttp.RetryAfter(resp, time.Now())
		assert.True(t, ok)
		assert.Equal(t, want, d, "retryhttp reads the date against the server's Date header")
	}
}

func withLayout(a retrytest.Answer, layout string) retrytest.Answer {
	a.DateLayout = layout
	return a
}

func TestServerDropsConnections(t *testing.T) {
	srv := retrytest.NewServer(t, retrytest.Drop(), retrytest.OK("after"))
	base := &http.Transport{DisableKeepAlives: true}
	defer base.CloseIdleConnections()

	_, err := base.RoundTrip(mustRequest(t, "GET", srv.URL))
	require.Error(t, err)
	assert.ErrorIs(t, err, io.EOF)
	assert.Equal(t, 1, srv.Count(), "a dropped request is recorded")
}

func TestServerDelayHonoursCancellation(t *testing.T) {
	srv := retrytest.NewServer(t, retrytest.OK("slow").WithDelay(time.Hour))
	c := client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	started := time.Now()
	_, err := c.Do(mustRequest(t, "GET", srv.URL).WithContext(ctx))
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(started), 5*time.Second)
}

func TestServerDelay(t *testing.T) {
	srv := retrytest.NewServer(t, retrytest.OK("slow").WithDelay(100*time.Millisecond))
	started := time.Now()
	_, body := get(t, client(t), srv.URL)
	assert.Equal(t, "slow", body)
	assert.GreaterOrEqual(t, time.Since(started), 100*time.Millisecond)
}

// recordingTB catches the failures a Server reports, so that a test can
// check them without failing itself.
type recordingTB struct {
	testing.TB
	mu     sync.Mutex
	errors []string
}

func (r *recordingTB) Error(args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors = append(r.errors, fmt.Sprint(args...))
}

func TestServerScriptRunningOutFailsTheTest(t *testing.T) {
	tb := &recordingTB{TB: t}
	srv := retrytest.NewServer(tb, retrytest.OK("only"))
	c := client(t)

	get(t, c, srv.URL)
	resp, body := get(t, c, srv.URL+"/again")

	assert.Equal(t, 500, resp.StatusCode)
	assert.Contains(t, body, "script ran out")
	tb.mu.Lock()
	defer tb.mu.Unlock()
	require.Len(t, tb.errors, 1)
	assert.Contains(t, tb.errors[0], "request 2 (GET /again) came after the script ran out")
}

func TestServerWithoutTest(t *testing.T) {
	srv := retrytest.NewServer(nil)
	defer srv.Close()
	resp, body := get(t, client(t), srv.URL)
	assert.Equal(t, 500, resp.StatusCode, "running out is still answered")
	assert.Contains(t, body, "script ran out")
}

func TestWithHeaderCopies(t *testing.T) {
	a := retrytest.OK("").WithHeader("A", "1")
	b := a.WithHeader("B", "2")
	assert.Equal(t, http.Header{"A": {"1"}}, a.Header)
	assert.Equal(t, http.Header{"A": {"1"}, "B": {"2"}}, b.Header)
}

func TestClockMovesOnlyWhenWaitedOn(t *testing.T) {
	clock := retrytest.NewClock(t)
	start := clock.Now()
	assert.Equal(t, start, start.Truncate(time.Second), "starts on a whole second")
	assert.WithinDuration(t, time.Now(), start, 2*time.Second)

	require.NoError(t, clock.Sleep(context.Background(), 2*time.Minute))
	require.NoError(t, clock.Sleep(context.Background(), 0))
	require.NoError(t, clock.Sleep(context.Background(), -time.Second))
	clock.Advance(time.Second)

	assert.Equal(t, start.Add(2*time.Minute+time.Second), clock.Now())
	assert.Equal(t, []time.Duration{2 * time.Minute, 0, -time.Second}, clock.Waits())
	assert.Equal(t, 2*time.Minute-time.Second, clock.Waited())
	assert.Panics(t, func() { clock.Advance(-time.Nanosecond) })
}

func TestClockSleepHonoursADoneContext(t *testing.T) {
	clock := retrytest.NewClock(t)
	start := clock.Now()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := clock.Sleep(ctx, time.Minute)
	assert.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, start, clock.Now())
	assert.Empty(t, clock.Waits())
}

func TestClockConcurrentWaitsAddUp(t *testing.T) {
	clock := retrytest.NewClock(t)
	start := clock.Now()
	var wg sync.WaitGroup
	for range 100 {
		wg.Go(func() { assert.NoError(t, clock.Sleep(context.Background(), time.Second)) })
	}
	wg.Wait()
	assert.Equal(t, start.Add(100*time.Second), clock.Now())
	assert.Len(t, clock.Waits(), 100)
}

func TestClockUsedAfterItsTestEnded(t *testing.T) {
	var clock *retrytest.Clock
	t.Run("first", func(t *testing.T) {
		clock = retrytest.NewClock(t)
		assert.NoError(t, clock.Sleep(context.Background(), time.Second))
	})
	t.Run("second", func(t *testing.T) {
		err := clock.Sleep(context.Background(), time.Second)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "the Clock of TestClockUsedAfterItsTestEnded/first was used after that test ended")

		srv := retrytest.NewServer(t, retrytest.Unavailable(time.Second), retrytest.OK("never"))
		rc := &http.Client{Transport: &retryhttp.Transport{
			Base:   client(t).Transport,
			Policy: retryhttp.Policy{Clock: clock},
		}}
		_, err = rc.Get(srv.URL)
		assert.ErrorContains(t, err, "used after that test ended", "a Transport using the stale clock fails its request")
		assert.Equal(t, 1, srv.Count())
	})
	assert.Len(t, clock.Waits(), 1, "the stale use recorded nothing")
}

// The point of the package: a long Retry-After played in virtual time.
func TestVirtualTimeWithTheTransport(t *testing.T) {
	clock := retrytest.NewClock(t)
	srv := retrytest.NewServer(t,
		retrytest.Unavailable(120*time.Second),
		retrytest.UnavailableUntil(60*time.Second),
		retrytest.OK("finally"),
	).UseClock(clock)
	rc := &http.Client{Transport: &retryhttp.Transport{
		Base:   client(t).Transport,
		Policy: retryhttp.Policy{Clock: clock, MaxRetryAfter: 5 * time.Minute, MaxElapsed: 10 * time.Minute},
	}}

	started := time.Now()
	resp, body := get(t, rc, srv.URL)

	assert.Less(t, time.Since(started), time.Second)
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "finally", body)
	waits := clock.Waits()
	require.Len(t, waits, 2)
	assert.GreaterOrEqual(t, waits[0], 120*time.Second)
	assert.LessOrEqual(t, waits[0], 144*time.Second)
	assert.GreaterOrEqual(t, waits[1], 60*time.Second)
	assert.LessOrEqual(t, waits[1], 72*time.Second)
	reqs := srv.Requests()
	require.Len(t, reqs, 3)
	assert.Equal(t, waits[0], reqs[1].Time.Sub(reqs[0].Time), "the server saw the retry when the clock said")
}

func TestVirtualTimeUnderConcurrentRequests(t *testing.T) {
	clock := retrytest.NewClock(t)
	const n = 50
	srv := retrytest.NewServer(t).Otherwise(retrytest.OK("ok")).UseClock(clock)
	for i := range n {
		srv.On(fmt.Sprintf("/%d", i), retrytest.Unavailable(30*time.Second), retrytest.OK("ok"))
	}
	rc := &http.Client{Transport: &retryhttp.Transport{
		Base: client(t).Transport,
		Policy: retryhttp.Policy{Clock: clock, MaxElapsed: 24 * time.Hour,
			Budget: retryhttp.UnlimitedBudget()},
	}}
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			resp, err := rc.Get(fmt.Sprintf("%s/%d", srv.URL, i))
			if assert.NoError(t, err) {
				assert.Equal(t, 200, resp.StatusCode)
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	// Every retry waits its 30 s. A retry that wakes before the reset a
	// later 503 named (the fake clock moves with each wait) is then held
	// by the destination's quota hold until that reset: one more wait.
	waits := clock.Waits()
	assert.GreaterOrEqual(t, len(waits), n)
	long := 0
	for _, w := range waits {
		if w >= 30*time.Second {
			long++
		}
	}
	assert.GreaterOrEqual(t, long, n, "waits: %v", waits)
	assert.Equal(t, 2*n, srv.Count())
}

func mustRequest(t *testing.T, method, url string) *http.Request {
	req, err := http.NewRequest(method, url, nil)
	require.NoError(t, err)
	return req
}

func TestSlowAnswerOnTheFakeClock(t *testing.T) {
	clock := retrytest.NewClock(t)
	srv := retrytest.NewServer(t, retrytest.OK("slow").WithSlow(time.Minute)).UseClock(clock)
	done := make(chan string, 1)
	go func() {
		_, body := get(t, client(t), srv.URL)
		done <- body
	}()
	require.Eventually(t, func() bool { return srv.Count() == 1 }, 5*time.Second, time.Millisecond)
	clock.Advance(59 * time.Second)
	select {
	case body := <-done:
		t.Fatalf("answered %q before the clock moved a minute", body)
	case <-time.After(20 * time.Millisecond):
	}
	require.NoError(t, clock.Sleep(context.Background(), time.Second)) // a wait moves it too
	select {
	case body := <-done:
		assert.Equal(t, "slow", body)
	case <-time.After(5 * time.Second):
		t.Fatal("not answered once the clock had moved a minute")
	}
}

func TestSlowAnswerHonoursCancellation(t *testing.T) {
	srv := retrytest.NewServer(t, retrytest.OK("never").WithSlow(time.Hour)).UseClock(retrytest.NewClock(t))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	require.NoError(t, err)
	_, err = client(t).Do(req)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
}

func TestSlowAnswerInRealTime(t *testing.T) {
	srv := retrytest.NewServer(t, retrytest.OK("late").WithSlow(50*time.Millisecond))
	start := time.Now()
	_, body := get(t, client(t), srv.URL)
	assert.Equal(t, "late", body)
	assert.GreaterOrEqual(t, time.Since(start), 50*time.Millisecond)
}

func TestSlowAnswerAndAHedge(t *testing.T) {
	clock := retrytest.NewClock(t)
	srv := retrytest.NewServer(t, retrytest.OK("slow").WithSlow(time.Minute), retrytest.OK("fast")).UseClock(clock)
	c := &http.Client{Transport: &retryhttp.Transport{Base: client(t).Transport, Policy: retryhttp.Policy{
		Clock: clock, Hedge: &retryhttp.Hedge{Delay: 200 * time.Millisecond},
	}}}
	_, body := get(t, c, srv.URL)
	assert.Equal(t, "fast", body)
	assert.Equal(t, 2, srv.Count())
	assert.Equal(t, []time.Duration{200 * time.Millisecond}, clock.Waits())
}
