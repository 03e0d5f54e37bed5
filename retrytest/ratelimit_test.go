package retrytest_test

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/b4dedce7/retryhttp"
	"github.com/b4dedce7/retryhttp/retrytest"
)

// fetch GETs url with a client of its own and returns the response, its
// body read and closed.
func fetch(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	base := &http.Transport{}
	t.Cleanup(base.CloseIdleConnections)
	resp, err := (&http.Client{Transport: base}).Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(body)
}

// serverWait is what a client reads from resp: Retry-After first, as the
// rate-limit draft asks, else the rate-limit fields.
func serverWait(resp *http.Response, now time.Time) (time.Duration, bool) {
	if d, ok := retryhttp.RetryAfter(resp, now); ok {
		return d, true
	}
	return retryhttp.RateLimitWait(resp, now)
}

func TestRateLimited(t *testing.T) {
	// 90.40005 s: whole seconds round it up to 91, milliseconds to 90.401.
	const reset = 90*time.Second + 400*time.Millisecond + 50*time.Microsecond
	// The Server's clock runs 1000 h ahead of the real one, and is 0.7 s
	// past a whole second: a Unix time taken from the real clock, or
	// rounded the wrong way, shows.
	const ahead = 1000*time.Hour + 700*time.Millisecond

	tests := []struct {
		style  retrytest.RateLimitStyle
		status int
		// fields are the header fields sent besides Date and
		// Content-Length; unix is the Server's clock in whole Unix
		// seconds, rounded down.
		fields func(unix int64) http.Header
		body   string
		// wait is what a client reads back: reset rounded up to what the
		// API sends, plus, for a Unix time, the 0.7 s that Date drops.
		wait time.Duration
	}{
		{retrytest.GitHub, http.StatusForbidden, func(unix int64) http.Header {
			return http.Header{
				"Content-Type":          {"application/json; charset=utf-8"},
				"X-Ratelimit-Limit":     {"5000"},
				"X-Ratelimit-Remaining": {"0"},
				"X-Ratelimit-Used":      {"5000"},
				"X-Ratelimit-Resource":  {"core"},
				// 0.7 + 90.40005 = 91.10005 s from unix, rounded up
				"X-Ratelimit-Reset": {strconv.FormatInt(unix+92, 10)},
			}
		}, `{"message":"API rate limit exceeded"}`, 92 * time.Second},
		{retrytest.GitHubSecondary, http.StatusForbidden, func(int64) http.Header {
			return http.Header{
				"Content-Type": {"application/json; charset=utf-8"},
				"Retry-After":  {"91"},
			}
		}, `{"message":"You have exceeded a secondary rate limit. Please wait a few minutes before you try again."}`, 91 * time.Second},
		{retrytest.IETF, http.StatusTooManyRequests, func(int64) http.Header {
			return http.Header{
				"Content-Type":     {"application/problem+json"},
				"Ratelimit-Policy": {`"default";q=100;w=60`},
				"Ratelimit":        {`"default";r=0;t=91`},
			}
		}, `{"type":"https://iana.org/assignments/http-problem-types#quota-exceeded",` +
			`"title":"Request cannot be satisfied as assigned quota has been exceeded","violated-policies":["default"]}`,
			91 * time.Second},
		{retrytest.IETFDraft06, http.StatusTooManyRequests, func(int64) http.Header {
			return http.Header{
				"Content-Type":        {"text/plain; charset=utf-8"},
				"Ratelimit-Limit":     {"100"},
				"Ratelimit-Remaining": {"0"},
				"Ratelimit-Reset":     {"91"},
			}
		}, "Too Many Requests", 91 * time.Second},
		{retrytest.Discord, http.StatusTooManyRequests, func(unix int64) http.Header {
			return http.Header{
				"Content-Type":            {"application/json"},
				"Retry-After":             {"91"},
				"X-Ratelimit-Limit":       {"10"},
				"X-Ratelimit-Remaining":   {"0"},
				"X-Ratelimit-Reset-After": {"90.401"},
				// 0.7 + 90.40005 = 91.10005 s from unix, rounded up
				"X-Ratelimit-Reset":  {strconv.FormatInt(unix+91, 10) + ".101"},
				"X-Ratelimit-Bucket": {"abcd1234"},
				"X-Ratelimit-Scope":  {"user"},
			}
		}, `{"message":"You are being rate limited.","retry_after":90.401,"global":false}`,
			91 * time.Second}, // Retry-After comes first
		{retrytest.XTwitter, http.StatusTooManyRequests, func(unix int64) http.Header {
			return http.Header{
				"Content-Type":           {"application/problem+json"},
				"X-Rate-Limit-Limit":     {"15"},
				"X-Rate-Limit-Remaining": {"0"},
				"X-Rate-Limit-Reset":     {strconv.FormatInt(unix+92, 10)},
			}
		}, `{"title":"Too Many Requests","detail":"Too Many Requests","type":"about:blank","status":429}`,
			92 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.style.String(), func(t *testing.T) {
			clock := retrytest.NewClock(t)
			start := clock.Now()
			require.Zero(t, start.Nanosecond(), "a new Clock is on a whole second")
			clock.Advance(ahead)
			srv := retrytest.NewServer(t, retrytest.RateLimited(reset, tt.style)).UseClock(clock)

			resp, body := fetch(t, srv.URL)

			serverNow := start.Add(ahead)
			want := tt.fields(serverNow.Unix())
			want.Set("Date", serverNow.Format(http.TimeFormat))
			want.Set("Content-Length", strconv.Itoa(len(tt.body)))
			assert.Equal(t, tt.status, resp.StatusCode)
			assert.Equal(t, want, resp.Header)
			assert.Equal(t, tt.body, body)

			// The client's own clock is the real one, 1000 h behind the
			// Server's: Unix times are read against Date, so it does not
			// matter.
			wait, ok := serverWait(resp, time.Now())
			require.True(t, ok, "the client reads a wait")
			assert.Equal(t, tt.wait, wait)
			assert.GreaterOrEqual(t, wait, reset, "never earlier than the reset")
			assert.Less(t, wait, reset+2*time.Second, "within rounding")
		})
	}
}

// Discord sends both a Unix time and a delay: RateLimitWait reads the
// delay, but the Unix time, read alone, says the same within rounding.
func TestRateLimitedDiscordFieldsAgree(t *testing.T) {
	clock := retrytest.NewClock(t)
	clock.Advance(250 * time.Millisecond)
	srv := retrytest.NewServer(t, retrytest.RateLimited(1500*time.Millisecond, retrytest.Discord)).UseClock(clock)
	resp, _ := fetch(t, srv.URL)

	resp.Header.Del("Retry-After")
	after, ok := retryhttp.RateLimitWait(resp, clock.Now())
	require.True(t, ok)
	assert.Equal(t, 1500*time.Millisecond, after)

	resp.Header.Del("X-RateLimit-Reset-After")
	epoch, ok := retryhttp.RateLimitWait(resp, clock.Now())
	require.True(t, ok)
	// 0.25 + 1.5 s past the second that Date shows
	assert.Equal(t, 1750*time.Millisecond, epoch)
}

func TestRateLimitedRounding(t *testing.T) {
	tests := []struct {
		reset      time.Duration
		seconds    string // Retry-After, RateLimit t, RateLimit-Reset
		resetAfter string // Discord's X-RateLimit-Reset-After
		epoch      int64  // GitHub's X-RateLimit-Reset, past the clock's second
	}{
		{0, "0", "0.000", 0},
		{time.Nanosecond, "1", "0.001", 1},
		{999 * time.Millisecond, "1", "0.999", 1},
		{999*time.Millisecond + 1, "1", "1.000", 1},
		{time.Second, "1", "1.000", 1},
		{1500 * time.Millisecond, "2", "1.500", 2},
		{2 * time.Second, "2", "2.000", 2},
		{time.Hour, "3600", "3600.000", 3600},
	}
	for _, tt := range tests {
		t.Run(tt.reset.String(), func(t *testing.T) {
			clock := retrytest.NewClock(t)
			unix := clock.Now().Unix()
			srv := retrytest.NewServer(t,
				retrytest.RateLimited(tt.reset, retrytest.GitHubSecondary),
				retrytest.RateLimited(tt.reset, retrytest.IETF),
				retrytest.RateLimited(tt.reset, retrytest.IETFDraft06),
				retrytest.RateLimited(tt.reset, retrytest.Discord),
				retrytest.RateLimited(tt.reset, retrytest.GitHub),
			).UseClock(clock)

			secondary, _ := fetch(t, srv.URL)
			ietf, _ := fetch(t, srv.URL)
			draft06, _ := fetch(t, srv.URL)
			discord, _ := fetch(t, srv.URL)
			github, _ := fetch(t, srv.URL)

			assert.Equal(t, tt.seconds, secondary.Header.Get("Retry-After"))
			assert.Equal(t, `"default";r=0;t=`+tt.seconds, ietf.Header.Get("RateLimit"))
			assert.Equal(t, tt.seconds, draft06.Header.Get("RateLimit-Reset"))
			assert.Equal(t, tt.seconds, discord.Header.Get("Retry-After"))
			assert.Equal(t, tt.resetAfter, discord.Header.Get("X-RateLimit-Reset-After"))
			assert.Equal(t, strconv.FormatInt(unix+tt.epoch, 10), github.Header.Get("X-RateLimit-Reset"))
		})
	}
}

// The Unix times are taken from the Server's clock each time the Answer is
// served, not once when it is made.
func TestRateLimitedTimesAreTakenWhenServed(t *testing.T) {
	clock := retrytest.NewClock(t)
	srv := retrytest.NewServer(t).Otherwise(retrytest.RateLimited(time.Minute, retrytest.XTwitter)).UseClock(clock)

	first, _ := fetch(t, srv.URL)
	clock.Advance(10 * time.Minute)
	second, _ := fetch(t, srv.URL)

	e1, err := strconv.ParseInt(first.Header.Get("X-Rate-Limit-Reset"), 10, 64)
	require.NoError(t, err)
	e2, err := strconv.ParseInt(second.Header.Get("X-Rate-Limit-Reset"), 10, 64)
	require.NoError(t, err)
	assert.Equal(t, int64(600), e2-e1)
	assert.Equal(t, clock.Now().Add(time.Minute).Unix(), e2)
	for _, resp := range []*http.Response{first, second} {
		wait, ok := retryhttp.RateLimitWait(resp, time.Now())
		assert.True(t, ok)
		assert.Equal(t, time.Minute, wait)
	}
}

// A field set with WithHeader replaces the one RateLimited computes.
func TestRateLimitedWithHeaderWins(t *testing.T) {
	srv := retrytest.NewServer(t,
		retrytest.RateLimited(time.Minute, retrytest.GitHub).WithHeader("X-RateLimit-Reset", "soon"),
		retrytest.RateLimited(time.Minute, retrytest.Discord).WithHeader("X-RateLimit-Reset-After", "-1"),
	).UseClock(retrytest.NewClock(t))

	github, _ := fetch(t, srv.URL)
	assert.Equal(t, []string{"soon"}, github.Header.Values("X-RateLimit-Reset"))
	_, ok := retryhttp.RateLimitWait(github, time.Now())
	assert.False(t, ok, "a malformed reset is not read")

	discord, _ := fetch(t, srv.URL)
	assert.Equal(t, []string{"-1"}, discord.Header.Values("X-RateLimit-Reset-After"))
	assert.NotEmpty(t, discord.Header.Get("X-RateLimit-Reset"), "the other fields stay")
}

func TestAnswerHeaderFunc(t *testing.T) {
	clock := retrytest.NewClock(t)
	clock.Advance(1234 * time.Millisecond)
	served := make(chan time.Time, 1)
	stamp := func(now time.Time) http.Header {
		served <- now
		return http.Header{
			"X-Served-At": {now.Format(time.RFC3339Nano)},
			"X-Kind":      {"from the func"},
		}
	}
	withDate := func(time.Time) http.Header {
		return http.Header{"Date": {"Sun, 06 Nov 1994 08:49:37 GMT"}}
	}
	srv := retrytest.NewServer(t,
		retrytest.Answer{HeaderFunc: stamp}.WithHeader("X-Kind", "from Header"),
		retrytest.Answer{HeaderFunc: withDate},
	).UseClock(clock)

	resp, _ := fetch(t, srv.URL)
	assert.Equal(t, clock.Now(), <-served, "called with the Server's clock")
	assert.Equal(t, clock.Now().Format(time.RFC3339Nano), resp.Header.Get("X-Served-At"))
	assert.Equal(t, []string{"from Header"}, resp.Header.Values("X-Kind"), "Header wins")
	assert.Equal(t, clock.Now().UTC().Format(http.TimeFormat), resp.Header.Get("Date"))

	resp, _ = fetch(t, srv.URL)
	assert.Equal(t, []string{"Sun, 06 Nov 1994 08:49:37 GMT"}, resp.Header.Values("Date"), "a Date from the func replaces the clock's")
}

func TestRateLimitedPanics(t *testing.T) {
	assert.PanicsWithValue(t, "retrytest: RateLimited(-1s, GitHub): a reset cannot be in the past", func() {
		retrytest.RateLimited(-time.Second, retrytest.GitHub)
	})
	assert.PanicsWithValue(t, "retrytest: RateLimited(1s, RateLimitStyle(0)): unknown style", func() {
		retrytest.RateLimited(time.Second, 0)
	})
	assert.PanicsWithValue(t, "retrytest: RateLimited(1s, RateLimitStyle(7)): unknown style", func() {
		retrytest.RateLimited(time.Second, retrytest.XTwitter+1)
	})
}

func TestRateLimitStyleString(t *testing.T) {
	for style, want := range map[retrytest.RateLimitStyle]string{
		retrytest.GitHub:          "GitHub",
		retrytest.GitHubSecondary: "GitHubSecondary",
		retrytest.IETF:            "IETF",
		retrytest.IETFDraft06:     "IETFDraft06",
		retrytest.Discord:         "Discord",
		retrytest.XTwitter:        "XTwitter",
		-1:                        "RateLimitStyle(-1)",
	} {
		assert.Equal(t, want, style.String())
		assert.Equal(t, want, fmt.Sprint(style))
	}
}
