package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
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

// runCmd runs the command in-process and returns its exit code, stdout and
// stderr.
func runCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// runVirtual runs the command like runCmd, but with a fake clock for the
// retry waits, so that long waits take no real time.
func runVirtual(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	return runOnClock(t, retrytest.NewClock(t), args...)
}

// runOnClock is runVirtual on clock, which the test may also move itself
// (advanceOnce) or hand to its Server.
func runOnClock(t *testing.T, clock *retrytest.Clock, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	ctx := context.WithValue(context.Background(), clockKey{}, clock)
	code := run(ctx, args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// advanceOnce moves clock forward by d as soon as ready reports true, as
// time passing while the command waits for an answer would; it gives up
// when the test ends. If ready is still false after 5 s of real time, the
// test fails and the clock moves anyway, so that a command waiting for an
// answer held on the clock ends instead of hanging until go test's timeout.
func advanceOnce(t *testing.T, clock *retrytest.Clock, ready func() bool, d time.Duration) {
	done := make(chan struct{})
	stopped := make(chan struct{})
	t.Cleanup(func() { close(done); <-stopped })
	go func() {
		defer close(stopped)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		giveUp := time.After(5 * time.Second)
		for !ready() {
			select {
			case <-done:
				return
			case <-giveUp:
				t.Errorf("what the test waited for before moving the clock %v did not happen in 5 s", d)
				clock.Advance(d)
				return
			case <-tick.C:
			}
		}
		clock.Advance(d)
	}()
}

// giveUpLines returns the lines of stderr that say why the command gave up.
func giveUpLines(stderr string) []string {
	var lines []string
	for _, line := range strings.Split(stderr, "\n") {
		if strings.HasPrefix(line, "gave up after ") {
			lines = append(lines, line)
		}
	}
	return lines
}

func TestDemo(t *testing.T) {
	t.Parallel()
	// The demo's waits, about 7 s of real time, play on a fake clock; what
	// it prints is the same.
	code, stdout, stderr := runVirtual(t)

	assert.Equal(t, exitOK, code, stderr)
	assert.Contains(t, stdout, "hello from the demo server")
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	require.Len(t, lines, 6, stderr)
	assert.Contains(t, lines[0], "no URL given: fetching from a flaky demo server at http://127.0.0.1:")
	// A server-named wait of 1s gets up to 1s of jitter.
	assert.Regexp(t, `^attempt 1: 503 Service Unavailable; Retry-After "1" read as delay-seconds: 1s; waiting 1(\.\d+)?s; budget 2\.0 tokens left$`, lines[1])
	assert.Regexp(t, `^attempt 2: 503 Service Unavailable; Retry-After "\w{3}, \d\d \w{3} \d{4} [\d:]{8} GMT" read as HTTP-date, IMF-fixdate: 1s; waiting 1(\.\d+)?s; budget 1\.0 tokens left$`, lines[2])
	assert.Regexp(t, `^attempt 3: error: .*EOF; no response, so backoff; waiting [\d.]+m?s; budget 0\.0 tokens left$`, lines[3])
	assert.Equal(t, "attempt 4: 200 OK", lines[4])
	assert.Regexp(t, `^200 OK after 4 attempts in [\d.]+m?s$`, lines[5])
	assert.NotContains(t, stderr, "gave up")
}

func TestDemoPostIsNotRetried(t *testing.T) {
	code, stdout, stderr := runCmd(t, "-X", "POST", "-d", `{"amount":1}`)
	assert.Equal(t, exitFailed, code)
	assert.Empty(t, stdout)
	assert.Contains(t, stderr, "attempt 1: 503 Service Unavailable\n")
	assert.NotContains(t, stderr, "attempt 2")
	assert.Contains(t, stderr, "attempt 1: 503 Service Unavailable\n"+
		"gave up after 1 attempt: POST is not idempotent and has no Idempotency-Key (not retried)\n"+
		"503 Service Unavailable after 1 attempt in ")
}

func TestFetchesAURL(t *testing.T) {
	srv := retrytest.NewServer(t,
		retrytest.Unavailable(0).WithHeader("Retry-After", "0"),
		retrytest.Reply(503, "").WithHeader("Retry-After", "soon"),
		retrytest.OK("payload"),
	)
	code, stdout, stderr := runVirtual(t, "-max-elapsed", "1m", srv.URL+"/x")

	assert.Equal(t, exitOK, code, stderr)
	assert.Equal(t, "payload", stdout)
	// Even a wait of 0s gets up to 1s of jitter.
	assert.Regexp(t, `attempt 1: 503 Service Unavailable; Retry-After "0" read as delay-seconds: 0s; waiting \d+(\.\d+)?m?s; budget 2\.0 tokens left\n`, stderr)
	assert.Contains(t, stderr, `attempt 2: 503 Service Unavailable; Retry-After "soon" not understood, so backoff; waiting `)
	assert.Contains(t, stderr, "attempt 3: 200 OK\n")
	assert.NotContains(t, stderr, "demo server")
	assert.Equal(t, 3, srv.Count())
}

func TestExitCodes(t *testing.T) {
	tests := []struct {
		name   string
		script []retrytest.Answer
		args   []string
		want   int
	}{
		{"200", []retrytest.Answer{retrytest.OK("")}, nil, exitOK},
		{"304 is below 400", []retrytest.Answer{retrytest.Reply(304, "")}, nil, exitOK},
		{"404", []retrytest.Answer{retrytest.Reply(404, "")}, nil, exitFailed},
		{"503 after the attempts", []retrytest.Answer{retrytest.Unavailable(0), retrytest.Unavailable(0)}, []string{"-attempts", "2"}, exitFailed},
		{"502 is not retried by default", []retrytest.Answer{retrytest.Reply(502, "")}, nil, exitFailed},
		{"502 retried with -retry-on", []retrytest.Answer{retrytest.Reply(502, ""), retrytest.OK("")}, []string{"-retry-on", "502,503"}, exitOK},
		{"-retry-on with spaces", []retrytest.Answer{retrytest.Reply(504, ""), retrytest.OK("")}, []string{"-retry-on", "503, 504"}, exitOK},
		{"empty -retry-on retries no status", []retrytest.Answer{retrytest.Unavailable(0)}, []string{"-retry-on", ""}, exitFailed},
		{"Retry-After over -max-retry-after", []retrytest.Answer{retrytest.Unavailable(10 * time.Second)}, []string{"-max-retry-after", "5s"}, exitFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := retrytest.NewServer(t, tt.script...)
			code, _, stderr := runVirtual(t, append(tt.args, srv.URL)...)
			assert.Equal(t, tt.want, code, stderr)
			assert.Equal(t, len(tt.script), srv.Count())
		})
	}
}

func TestFailedRequest(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()

	code, stdout, stderr := runVirtual(t, "-attempts", "2", "-max-elapsed", "1m", url)

	assert.Equal(t, exitFailed, code)
	assert.Empty(t, stdout)
	assert.Contains(t, stderr, "attempt 1: error: ")
	assert.Contains(t, stderr, "connection refused; no response, so backoff; waiting ")
	// The last attempt's own error, not the GiveUpError around it.
	assert.Regexp(t, `(?m)^attempt 2: error: dial tcp [\d.:]+: connect: connection refused$`, stderr)
	assert.NotContains(t, stderr, "gave up after 2 attempts (")
	assert.NotContains(t, stderr, "retryhttp:")
	assert.Equal(t, []string{"gave up after 2 attempts: attempts used up (-attempts 2)"}, giveUpLines(stderr))
	assert.Contains(t, stderr, "failed after 2 attempts in ")
}

func TestFailedRequestQuiet(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()

	code, stdout, stderr := runVirtual(t, "-q", "-attempts", "2", url)

	assert.Equal(t, exitFailed, code)
	assert.Empty(t, stdout)
	assert.Regexp(t, `^retryget: gave up after 2 attempts: attempts used up \(-attempts 2\); last error: dial tcp [\d.:]+: connect: connection refused\n$`, stderr)
}

func TestTimeout(t *testing.T) {
	srv := retrytest.NewServer(t, retrytest.OK("late").WithDelay(time.Minute))
	code, _, stderr := runCmd(t, "-timeout", "100ms", srv.URL)
	assert.Equal(t, exitFailed, code)
	assert.Contains(t, stderr, "attempt 1: error: context deadline exceeded\n")
	// The attempt's outcome was not retryable: the request did not give up
	// on it, but the summary says what ended it.
	assert.Empty(t, giveUpLines(stderr))
	assert.Regexp(t, `(?m)^failed after 1 attempt in [\d.]+m?s: the -timeout deadline \(100ms\) passed$`, stderr)
}

// A deadline that ends an attempt after retries: the last attempt's line
// has its own error, not the "failed after 2 attempts" wrapped around it.
func TestTimeoutAfterARetry(t *testing.T) {
	if testing.Short() {
		t.Skip("-timeout is a real deadline on the request's context: 300 ms of real time")
	}
	t.Parallel()
	srv := retrytest.NewServer(t,
		retrytest.Unavailable(0).WithHeader("Retry-After", "0"),
		retrytest.OK("late").WithDelay(time.Minute))
	code, _, stderr := runVirtual(t, "-timeout", "300ms", srv.URL)

	assert.Equal(t, exitFailed, code)
	assert.Equal(t, 2, srv.Count())
	assert.Contains(t, stderr, "attempt 2: error: context deadline exceeded\n")
	assert.NotContains(t, stderr, "failed after 2 attempts:")
	assert.Empty(t, giveUpLines(stderr))
	assert.Regexp(t, `(?m)^failed after 2 attempts in [\d.]+m?s: the -timeout deadline \(300ms\) passed$`, stderr)
}

// Every way of giving up says why, in a line of its own after the last
// attempt's, whether the retries ended on a response or on an error.
func TestGiveUpReasons(t *testing.T) {
	t.Parallel()
	retryNow := retrytest.Unavailable(0).WithHeader("Retry-After", "0")
	hang := retrytest.OK("late").WithDelay(time.Minute)
	tests := []struct {
		name      string
		script    []retrytest.Answer
		otherwise *retrytest.Answer
		args      []string
		attempts  int
		want      string // the give-up line
		lastLine  string // the last attempt's line, when it says more than the status
		unseen    bool   // the server may not have seen every attempt
	}{
		{
			name:     "attempts used up",
			script:   []retrytest.Answer{retryNow, retryNow},
			args:     []string{"-attempts", "2"},
			attempts: 2,
			want:     "gave up after 2 attempts: attempts used up (-attempts 2)",
		},
		{
			name:     "attempts used up, the default",
			script:   []retrytest.Answer{retryNow, retryNow, retryNow, retryNow},
			attempts: 4,
			want:     "gave up after 4 attempts: attempts used up (-attempts 4)",
		},
		{
			// A fresh destination's budget holds its burst of 3: 3 blind
			// retries, then none.
			name:      "budget empty",
			otherwise: &retryNow,
			args:      []string{"-attempts", "20", "-max-elapsed", "1h"},
			attempts:  4,
			want:      "gave up after 4 attempts: the retry budget is empty",
		},
		{
			name:     "Retry-After too long",
			script:   []retrytest.Answer{retrytest.Unavailable(time.Hour)},
			attempts: 1,
			want:     "gave up after 1 attempt: Retry-After 3600s exceeds -max-retry-after 30s",
		},
		{
			name:     "Retry-After over -max-retry-after",
			script:   []retrytest.Answer{retrytest.TooManyRequests(10 * time.Second)},
			args:     []string{"-max-retry-after", "5s"},
			attempts: 1,
			want:     "gave up after 1 attempt: Retry-After 10s exceeds -max-retry-after 5s",
		},
		{
			name: "rate-limit wait too long",
			script: []retrytest.Answer{retrytest.Reply(http.StatusTooManyRequests, "").
				WithHeader("X-RateLimit-Reset-After", "90.5")},
			args:     []string{"-max-retry-after", "1m"},
			attempts: 1,
			want:     "gave up after 1 attempt: X-RateLimit-Reset-After 90.5s exceeds -max-retry-after 1m0s",
		},
		{
			name:     "POST not resendable",
			script:   []retrytest.Answer{retryNow},
			args:     []string{"-X", "POST", "-d", `{"amount":1}`},
			attempts: 1,
			want:     "gave up after 1 attempt: POST is not idempotent and has no Idempotency-Key (not retried)",
		},
		{
			name:     "PATCH not resendable",
			script:   []retrytest.Answer{retrytest.TooManyRequests(time.Second)},
			args:     []string{"-X", "PATCH"},
			attempts: 1,
			want:     "gave up after 1 attempt: PATCH is not idempotent and has no Idempotency-Key (not retried)",
		},
		{
			name:     "max elapsed",
			script:   []retrytest.Answer{retrytest.Unavailable(5 * time.Second)},
			args:     []string{"-max-elapsed", "1s"},
			attempts: 1,
			want:     "gave up after 1 attempt: next retry would pass -max-elapsed 1s; the server asked for 5s",
		},
		{
			name:     "timeout deadline",
			script:   []retrytest.Answer{retrytest.Unavailable(4 * time.Second)},
			args:     []string{"-timeout", "1s"},
			attempts: 1,
			want:     "gave up after 1 attempt: next retry would pass the -timeout deadline (1s); the server asked for 4s",
		},
		{
			name: "timeout deadline, a rate-limit header's wait",
			script: []retrytest.Answer{retrytest.Reply(http.StatusTooManyRequests, "").
				WithHeader("X-RateLimit-Reset-After", "7.5")},
			args:     []string{"-timeout", "2s"},
			attempts: 1,
			want:     "gave up after 1 attempt: next retry would pass the -timeout deadline (2s); the server asked for 7.5s",
		},
		{
			name:     "timeout deadline, no wait asked for",
			script:   []retrytest.Answer{retrytest.Reply(http.StatusServiceUnavailable, "")},
			args:     []string{"-timeout", "100ms"},
			attempts: 1,
			want:     "gave up after 1 attempt: next retry would pass the -timeout deadline (100ms)",
		},
		{
			name:      "attempt timeout",
			otherwise: &hang,
			args:      []string{"-attempts", "2", "-attempt-timeout", "100ms"},
			attempts:  2,
			want:      "gave up after 2 attempts: attempt timed out (-attempt-timeout 100ms); attempts used up (-attempts 2)",
			lastLine:  "attempt 2: error: retryhttp: attempt timed out: no response headers within 100ms",
			// On a loaded machine, an attempt may time out before the
			// server has read it.
			unseen: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := retrytest.NewServer(t, tt.script...)
			if tt.otherwise != nil {
				srv.Otherwise(*tt.otherwise)
			}
			code, stdout, stderr := runVirtual(t, append(tt.args, srv.URL)...)

			assert.Equal(t, exitFailed, code, stderr)
			assert.Empty(t, stdout)
			if tt.unseen {
				assert.LessOrEqual(t, srv.Count(), tt.attempts)
			} else {
				assert.Equal(t, tt.attempts, srv.Count())
			}
			assert.Equal(t, []string{tt.want}, giveUpLines(stderr), stderr)
			lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
			require.GreaterOrEqual(t, len(lines), 3, stderr)
			last := lines[len(lines)-3]
			if tt.lastLine != "" {
				assert.Equal(t, tt.lastLine, last)
			} else {
				assert.Regexp(t, fmt.Sprintf(`^attempt %d: \d{3} [\w ]+$`, tt.attempts), last)
			}
			assert.Equal(t, tt.want, lines[len(lines)-2])
			assert.Regexp(t, `^(\d{3} [\w ]+|failed) after `+plural(tt.attempts, "attempt")+` in `, lines[len(lines)-1])
			assert.NotContains(t, stderr, "retryhttp: gave up")
		})
	}
}

// A wait cut short gives up after the attempt its retry line told of,
// without a line of its own for that attempt.
func TestCancelledWhileWaiting(t *testing.T) {
	t.Parallel()
	srv := retrytest.NewServer(t, retrytest.Unavailable(5*time.Second))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr bytes.Buffer
	time.AfterFunc(100*time.Millisecond, cancel)
	code := run(ctx, []string{srv.URL}, &stdout, &stderr)

	assert.Equal(t, exitFailed, code)
	assert.Empty(t, stdout.String())
	assert.Regexp(t, `^attempt 1: 503 Service Unavailable; Retry-After "5" read as delay-seconds: 5s; waiting 5(\.\d+)?s; budget 2\.0 tokens left\n`+
		`gave up after 1 attempt: the request was cancelled while waiting to retry\n`+
		`failed after 1 attempt in [\d.]+m?s\n$`, stderr.String())
}

// The budget figure is the request's host's: the first retry leaves 2 of
// a fresh destination's 3, and the last one none. Retry-After: 0 is a
// blind retry, which the budget pays for.
func TestBudgetPerHost(t *testing.T) {
	srv := retrytest.NewServer(t).Otherwise(retrytest.Unavailable(0).WithHeader("Retry-After", "0"))
	code, _, stderr := runVirtual(t, "-attempts", "20", "-max-elapsed", "1h", srv.URL)
	assert.Equal(t, exitFailed, code)
	assert.Contains(t, stderr, "attempt 1: 503 Service Unavailable; Retry-After \"0\" read as delay-seconds: 0s; waiting ")
	assert.Regexp(t, `(?m)^attempt 1: .*; budget 2\.0 tokens left$`, stderr)
	assert.Regexp(t, `(?m)^attempt 3: .*; budget 0\.0 tokens left$`, stderr)
	assert.Contains(t, stderr, "attempt 4: 503 Service Unavailable\ngave up after 4 attempts: the retry budget is empty\n")
}

// A request that succeeded, or whose outcome was not retryable, did not
// give up: no reason is printed.
func TestNoGiveUpReason(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		script []retrytest.Answer
		args   []string
		want   int
	}{
		{"success", []retrytest.Answer{retrytest.OK("")}, nil, exitOK},
		{"success after a retry", []retrytest.Answer{retrytest.Unavailable(time.Second), retrytest.OK("")}, nil, exitOK},
		{"404", []retrytest.Answer{retrytest.Reply(http.StatusNotFound, "")}, nil, exitFailed},
		{"404 after a retry", []retrytest.Answer{retrytest.Unavailable(0), retrytest.Reply(http.StatusNotFound, "")}, nil, exitFailed},
		{"502 not in -retry-on", []retrytest.Answer{retrytest.Reply(http.StatusBadGateway, "")}, nil, exitFailed},
		{"403 that is no rate limit", []retrytest.Answer{retrytest.Reply(http.StatusForbidden, "")}, []string{"-retry-on", "403,503"}, exitFailed},
		{"POST answered 404", []retrytest.Answer{retrytest.Reply(http.StatusNotFound, "")}, []string{"-d", "x"}, exitFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := retrytest.NewServer(t, tt.script...)
			code, _, stderr := runVirtual(t, append(tt.args, srv.URL)...)
			assert.Equal(t, tt.want, code, stderr)
			assert.Equal(t, len(tt.script), srv.Count())
			assert.NotContains(t, stderr, "gave up")
			assert.NotContains(t, stderr, "not retried")
			assert.Regexp(t, `(?m)^\d{3} [\w ]+ after `+plural(len(tt.script), "attempt")+` in [\d.]+m?s$`, stderr)
		})
	}
}

// -attempt-timeout abandons an attempt whose response headers are late, and
// retries it.
func TestAttemptTimeout(t *testing.T) {
	if testing.Short() {
		t.Skip("-attempt-timeout is a real timer, as net/http's own header timeouts are: 500 ms of real time")
	}
	t.Parallel()
	srv := retrytest.NewServer(t, retrytest.OK("late").WithDelay(time.Minute), retrytest.OK("in time"))
	// Long enough for the first attempt to reach the server, even under -race.
	code, stdout, stderr := runVirtual(t, "-attempt-timeout", "500ms", srv.URL)

	assert.Equal(t, exitOK, code, stderr)
	assert.Equal(t, "in time", stdout)
	assert.Equal(t, 2, srv.Count())
	assert.Regexp(t, `(?m)^attempt 1: error: retryhttp: attempt timed out: no response headers within 500ms; no response, so backoff; waiting [\d.]+m?s; budget 2\.0 tokens left$`, stderr)
	assert.Contains(t, stderr, "attempt 2: 200 OK\n")
	assert.Empty(t, giveUpLines(stderr))
	assert.Regexp(t, `(?m)^200 OK after 2 attempts in `, stderr)
}

// Each retry line says which header the server's wait came from, and how it
// was read.
func TestServerWaitHeaders(t *testing.T) {
	t.Parallel()
	date := time.Date(2026, time.January, 1, 0, 0, 0, 0, time.UTC)
	rateLimited := func(status int, kv ...string) retrytest.Answer {
		a := retrytest.Reply(status, "")
		for i := 0; i < len(kv); i += 2 {
			a = a.WithHeader(kv[i], kv[i+1])
		}
		return a
	}
	tests := []struct {
		name   string
		answer retrytest.Answer
		args   []string
		want   string
	}{
		{"Retry-After delay-seconds", retrytest.TooManyRequests(2 * time.Second), nil,
			`Retry-After "2" read as delay-seconds: 2s`},
		{"Retry-After IMF-fixdate", rateLimited(503, "Date", date.Format(http.TimeFormat), "Retry-After", date.Add(3*time.Second).Format(http.TimeFormat)), nil,
			`Retry-After "Thu, 01 Jan 2026 00:00:03 GMT" read as HTTP-date, IMF-fixdate: 3s`},
		{"Retry-After RFC 850", rateLimited(503, "Date", date.Format(http.TimeFormat), "Retry-After", date.Add(3*time.Second).Format(retrytest.LayoutRFC850)), nil,
			`Retry-After "Thursday, 01-Jan-26 00:00:03 GMT" read as HTTP-date, obsolete RFC 850 form: 3s`},
		{"Retry-After asctime", rateLimited(503, "Date", date.Format(http.TimeFormat), "Retry-After", date.Add(3*time.Second).Format(retrytest.LayoutASCTime)), nil,
			`Retry-After "Thu Jan  1 00:00:03 2026" read as HTTP-date, asctime form: 3s`},
		{"X-RateLimit-Reset-After", rateLimited(429, "X-RateLimit-Reset-After", "1.5"), nil,
			`X-RateLimit-Reset-After "1.5" read as seconds from now: 1.5s`},
		{"X-RateLimit-Reset as a Unix time", rateLimited(429, "Date", date.Format(http.TimeFormat), "X-RateLimit-Reset", strconv.FormatInt(date.Unix()+20, 10)), nil,
			`X-RateLimit-Reset "1767225620" read as a Unix time: 20s`},
		{"X-RateLimit-Reset as seconds", rateLimited(429, "X-RateLimit-Reset", "4"), nil,
			`X-RateLimit-Reset "4" read as seconds from now: 4s`},
		{"X-Rate-Limit-Reset", rateLimited(429, "X-Rate-Limit-Reset", "5"), nil,
			`X-Rate-Limit-Reset "5" read as seconds from now: 5s`},
		{"RateLimit-Reset", rateLimited(429, "RateLimit-Reset", "6"), nil,
			`RateLimit-Reset "6" read as delay-seconds: 6s`},
		{"RateLimit", rateLimited(429, "RateLimit", `"default";r=0;t=7`), nil,
			`RateLimit "\"default\";r=0;t=7" read: 7s`},
		{"403 rate-limit refusal", rateLimited(403, "X-RateLimit-Remaining", "0", "X-RateLimit-Reset-After", "8"), []string{"-retry-on", "403"},
			`X-RateLimit-Reset-After "8" read as seconds from now: 8s`},
		{"Retry-After not understood, a rate-limit header read", rateLimited(429, "Retry-After", "soon", "X-RateLimit-Reset-After", "9"), nil,
			`Retry-After "soon" not understood; X-RateLimit-Reset-After "9" read as seconds from now: 9s`},
		{"rate-limit header with no wait", rateLimited(429, "RateLimit", `"default";r=5;t=7`), nil,
			`RateLimit "\"default\";r=5;t=7" gives no wait, so backoff`},
		{"no header", retrytest.Reply(503, ""), nil,
			`no Retry-After, so backoff`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := retrytest.NewServer(t, tt.answer, retrytest.OK("done"))
			code, stdout, stderr := runVirtual(t, append(tt.args, srv.URL)...)
			assert.Equal(t, exitOK, code, stderr)
			assert.Equal(t, "done", stdout)
			assert.Contains(t, stderr, "; "+tt.want+"; waiting ")
		})
	}
}

func TestRequestFlags(t *testing.T) {
	bodyFile := filepath.Join(t.TempDir(), "body.json")
	require.NoError(t, os.WriteFile(bodyFile, []byte(`{"from":"file"}`), 0o600))
	srv := retrytest.NewServer(t, retrytest.Unavailable(0), retrytest.OK("created"))

	code, stdout, stderr := runVirtual(t,
		"-H", "X-One: 1", "-H", "X-One: 2", "-H", "Content-Type: application/json",
		"-d", "@"+bodyFile, "-idempotency-key", "order-7", "-v",
		srv.URL+"/orders")

	assert.Equal(t, exitOK, code, stderr)
	assert.Equal(t, "created", stdout)
	reqs := srv.Requests()
	require.Len(t, reqs, 2, "a POST with an Idempotency-Key is retried")
	for _, r := range reqs {
		assert.Equal(t, "POST", r.Method)
		assert.Equal(t, []string{"1", "2"}, r.Header.Values("X-One"))
		assert.Equal(t, "application/json", r.Header.Get("Content-Type"))
		assert.Equal(t, "order-7", r.Header.Get("Idempotency-Key"))
		assert.Equal(t, `{"from":"file"}`, string(r.Body))
	}
	assert.Contains(t, stderr, "> POST "+srv.URL+"/orders\n")
	assert.Contains(t, stderr, "< Content-Type: ")
}

func TestMethodAndInlineBody(t *testing.T) {
	srv := retrytest.NewServer(t, retrytest.OK(""))
	code, _, stderr := runCmd(t, "-X", "put", "-d", "inline", srv.URL)
	assert.Equal(t, exitOK, code, stderr)
	reqs := srv.Requests()
	require.Len(t, reqs, 1)
	assert.Equal(t, "PUT", reqs[0].Method)
	assert.Equal(t, "inline", string(reqs[0].Body))
}

func TestQuiet(t *testing.T) {
	srv := retrytest.NewServer(t, retrytest.Unavailable(0), retrytest.OK("body"))
	code, stdout, stderr := runVirtual(t, "-q", srv.URL)
	assert.Equal(t, exitOK, code)
	assert.Equal(t, "body", stdout)
	assert.Empty(t, stderr)
	assert.Equal(t, 2, srv.Count())
}

func TestBadUsage(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.json")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown flag", []string{"-nope"}, "flag provided but not defined: -nope"},
		{"bad duration", []string{"-timeout", "soon"}, `invalid value "soon" for flag -timeout: not a duration; write one such as 30s, 1m30s or 500ms`},
		{"not a URL", []string{"::nope"}, `"::nope" is not an http or https URL`},
		{"other scheme", []string{"ftp://example.com/"}, `"ftp://example.com/" is not an http or https URL`},
		{"no host", []string{"http:///path"}, `"http:///path" is not an http or https URL`},
		{"two URLs", []string{"http://a/", "http://b/"}, "one URL at most, got 2 arguments"},
		{"unreadable body file", []string{"-d", "@" + missing}, "reading the body: open " + missing},
		{"bad header", []string{"-H", "NoColon"}, `header "NoColon" is not of the form 'Name: value'`},
		{"bad status", []string{"-retry-on", "503,abc"}, `-retry-on: "abc" is not an HTTP status code`},
		{"success status", []string{"-retry-on", "200"}, "-retry-on: 200 is not an error status a retry could mend; accepted: 403 (retried only as a rate-limit refusal), 408, 425, 429, and 500-599 except 501"},
		{"redirect status", []string{"-retry-on", "503,301"}, "-retry-on: 301 is not an error status a retry could mend"},
		{"client error", []string{"-retry-on", "404"}, "-retry-on: 404 is not an error status a retry could mend"},
		{"lasting server error", []string{"-retry-on", "501"}, "-retry-on: 501 is not an error status a retry could mend"},
		{"empty item", []string{"-retry-on", "503,,429"}, `-retry-on "503,,429": empty item; list statuses separated by single commas`},
		{"trailing comma", []string{"-retry-on", "503,"}, `-retry-on "503,": empty item`},
		{"duration without a unit", []string{"-max-elapsed", "5"}, "-max-elapsed 5: a duration needs a unit: write 5s (or 5ms, 5m, 5h)"},
		{"fractional duration without a unit", []string{"-timeout", "1.5"}, "-timeout 1.5: a duration needs a unit: write 1.5s"},
		{"attempt timeout without a unit", []string{"-attempt-timeout", "2"}, "-attempt-timeout 2: a duration needs a unit: write 2s"},
		{"max retry after without a unit", []string{"-max-retry-after=60"}, "-max-retry-after 60: a duration needs a unit: write 60s"},
		{"negative attempts", []string{"-attempts", "-1"}, "-attempts -1: must not be negative"},
		{"negative max elapsed", []string{"-max-elapsed", "-1s"}, "-max-elapsed -1s: must not be negative"},
		{"negative max retry after", []string{"-max-retry-after", "-5s"}, "-max-retry-after -5s: must not be negative"},
		{"negative attempt timeout", []string{"-attempt-timeout", "-1s"}, "-attempt-timeout -1s: must not be negative"},
		{"negative timeout", []string{"-timeout", "-1s"}, "-timeout -1s: must not be negative"},
		{"bad attempt timeout", []string{"-attempt-timeout", "soon"}, `invalid value "soon" for flag -attempt-timeout`},
		{"bad method", []string{"-X", "BAD METHOD", "http://127.0.0.1:1/"}, `invalid method "BAD METHOD"`},
		{"bad hedge", []string{"-hedge", "soon"}, `-hedge "soon": not a duration such as 150ms, nor auto`},
		{"zero hedge", []string{"-hedge", "0s"}, "-hedge 0s: must be positive, or auto for the adaptive delay"},
		{"negative hedge", []string{"-hedge", "-1s"}, "-hedge -1s: must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCmd(t, tt.args...)
			assert.Equal(t, exitUsage, code)
			assert.Empty(t, stdout)
			assert.Equal(t, 1, strings.Count(stderr, "\n"), "one line: %q", stderr)
			assert.True(t, strings.HasPrefix(stderr, "retryget: "), stderr)
			assert.Contains(t, stderr, tt.want)
			assert.NotContains(t, stderr, "Policy", "names the flag, not the library's field")
		})
	}
}

func TestHelp(t *testing.T) {
	code, _, stderr := runCmd(t, "-h")
	assert.Equal(t, exitOK, code)
	assert.Contains(t, stderr, "usage: retryget [flags] [URL]")
	assert.Regexp(t, regexp.MustCompile(`-retry-on statuses`), stderr)
	assert.Regexp(t, regexp.MustCompile(`-attempt-timeout duration\n\s+each attempt must produce its response headers within this time.*\(0: no limit\)`), stderr)
	assert.Regexp(t, regexp.MustCompile(`-hedge delay\n\s+send a hedged copy when an attempt has had no response headers for this delay, or "auto"`), stderr)
}

func TestHedge(t *testing.T) {
	t.Parallel()
	srv := retrytest.NewServer(t, retrytest.OK("slow").WithDelay(time.Minute), retrytest.OK("fast"))
	code, stdout, stderr := runVirtual(t, "-hedge", "100ms", srv.URL) // the 100 ms pass at once

	assert.Equal(t, exitOK, code, stderr)
	assert.Equal(t, "fast", stdout)
	assert.Equal(t, 2, srv.Count())
	assert.Regexp(t, `(?m)^attempt 1: no response headers after 100ms; hedging with attempt 2; budget [\d.]+ tokens left$`, stderr)
	assert.Contains(t, stderr, "attempt 2: 200 OK (the hedge answered first)\n")
	assert.Regexp(t, `(?m)^200 OK after 2 attempts in `, stderr)
	assert.Empty(t, giveUpLines(stderr))
}

func TestHedgeAnsweredBeforeItsHedge(t *testing.T) {
	t.Parallel()
	// On a fake clock: the hedge goes out 50 ms in, and once it has reached
	// the server, 300 ms pass, which the first attempt's answer waited for
	// and the hedge's, a minute, did not.
	clock := retrytest.NewClock(t)
	srv := retrytest.NewServer(t, retrytest.OK("first").WithSlow(300*time.Millisecond), retrytest.OK("hedge").WithSlow(time.Minute)).UseClock(clock)
	advanceOnce(t, clock, func() bool { return srv.Count() == 2 }, 300*time.Millisecond)
	code, stdout, stderr := runOnClock(t, clock, "-hedge", "50ms", srv.URL)

	assert.Equal(t, exitOK, code, stderr)
	assert.Equal(t, "first", stdout)
	assert.Contains(t, stderr, "hedging with attempt 2")
	assert.Contains(t, stderr, "attempt 1: 200 OK (answered before its hedge)\n")
	assert.Regexp(t, `(?m)^200 OK after 2 attempts in `, stderr)
}

func TestHedgeAuto(t *testing.T) {
	t.Parallel()
	// The adaptive delay needs 20 answers from the host: one fetch warms it
	// up and sends no hedge.
	srv := retrytest.NewServer(t, retrytest.OK("only").WithDelay(100*time.Millisecond)).Otherwise(retrytest.OK("hedge"))
	code, stdout, stderr := runCmd(t, "-hedge", "auto", srv.URL)
	assert.Equal(t, exitOK, code, stderr)
	assert.Equal(t, "only", stdout)
	assert.Equal(t, 1, srv.Count())
	assert.NotContains(t, stderr, "hedging")
	assert.Contains(t, stderr, "attempt 1: 200 OK\n")
}

func TestHedgeNotForAPostWithoutKey(t *testing.T) {
	t.Parallel()
	// On a fake clock, where a hedge's 10 ms pass at once: the answer comes
	// 200 ms after the POST reached the server, once a hedge's wait has
	// been played, or after 20 ms of real time in which none was (a hedge
	// goes out 5 ms after its request is written).
	clock := retrytest.NewClock(t)
	srv := retrytest.NewServer(t, retrytest.OK("once").WithSlow(200*time.Millisecond)).Otherwise(retrytest.OK("twice")).UseClock(clock)
	var arrived time.Time
	advanceOnce(t, clock, func() bool {
		if srv.Count() == 0 {
			return false
		}
		if arrived.IsZero() {
			arrived = time.Now()
		}
		return len(clock.Waits()) > 0 || time.Since(arrived) > 20*time.Millisecond
	}, 200*time.Millisecond)
	code, stdout, stderr := runOnClock(t, clock, "-hedge", "10ms", "-d", "x", srv.URL)
	assert.Equal(t, exitOK, code, stderr)
	assert.Equal(t, "once", stdout)
	assert.Equal(t, 1, srv.Count())
	assert.NotContains(t, stderr, "hedging")
}

func TestHoldLineAndThrottledReason(t *testing.T) {
	t.Parallel()
	line := describeHold(retryhttp.HoldEvent{Attempt: 1, Held: 3200 * time.Millisecond, Reason: retryhttp.HoldReset, Header: "X-RateLimit-Reset"})
	assert.Equal(t, "held 3.2s for the quota's reset (X-RateLimit-Reset said it was spent); sending", line)
	line = describeHold(retryhttp.HoldEvent{Attempt: 2, Reason: retryhttp.HoldQuota, Header: "Retry-After", Err: retryhttp.ErrMaxElapsed})
	assert.Contains(t, line, "not waiting longer: next retry would start past MaxElapsed")

	o := &options{}
	req := httptest.NewRequest("GET", "http://example.com/", nil)
	rejection := fmt.Errorf("%w: http://example.com:80 accepted 1 of the last 40 requests", retryhttp.ErrThrottled)
	reason := o.giveUpReason(req, &retryhttp.GiveUpEvent{Reason: retryhttp.ErrThrottled, Err: rejection})
	assert.Equal(t, "throttled locally: http://example.com:80 accepted 1 of the last 40 requests (nothing sent)", reason)
}
