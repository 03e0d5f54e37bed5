package retryhttp_test

import (
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/b4dedce7/retryhttp"
	"github.com/b4dedce7/retryhttp/retrytest"
)

// rfcInstant is the instant of the RFC's own examples (RFC 9110 §5.6.7).
var rfcInstant = time.Date(1994, time.November, 6, 8, 49, 37, 0, time.UTC)

func TestParseRetryAfter(t *testing.T) {
	before := rfcInstant.Add(-10 * time.Second)
	now2026 := time.Date(2026, time.November, 24, 12, 0, 0, 0, time.UTC)
	now2060 := time.Date(2060, time.June, 15, 12, 0, 0, 0, time.UTC)
	const huge = time.Duration(1<<63-1) / time.Second * time.Second

	tests := []struct {
		name  string
		value string
		now   time.Time
		want  time.Duration
		ok    bool
	}{
		// delay-seconds
		{"RFC example 120", "120", before, 120 * time.Second, true},
		{"zero", "0", before, 0, true},
		{"leading zeros", "007", before, 7 * time.Second, true},
		{"surrounding OWS", " \t5\t ", before, 5 * time.Second, true},
		{"largest representable", "9223372036", before, 9223372036 * time.Second, true},
		{"one past representable saturates", "9223372037", before, huge, true},
		{"ten billion saturates", "10000000000", before, huge, true},
		{"many digits saturate", "99999999999999999999999999999", before, huge, true},
		{"saturation is at least 2^31 s", "2147483648", before, 2147483648 * time.Second, true},
		{"minus sign", "-1", before, 0, false},
		{"plus sign", "+1", before, 0, false},
		{"fraction", "1.0", before, 0, false},
		{"exponent", "1e3", before, 0, false},
		{"unit", "10s", before, 0, false},
		{"inner space", "1 0", before, 0, false},
		{"hex", "0x10", before, 0, false},
		{"non-ASCII digit", "١٢", before, 0, false},
		{"huge then junk", "99999999999999999999x", before, 0, false},
		{"empty", "", before, 0, false},
		{"blank", "   ", before, 0, false},

		// HTTP-date, the RFC's three forms of one instant
		{"IMF-fixdate", "Sun, 06 Nov 1994 08:49:37 GMT", before, 10 * time.Second, true},
		{"RFC 850", "Sunday, 06-Nov-94 08:49:37 GMT", before, 10 * time.Second, true},
		{"asctime", "Sun Nov  6 08:49:37 1994", before, 10 * time.Second, true},
		{"asctime two-digit day", "Sun Nov 06 08:49:37 1994", before, 10 * time.Second, true},
		{"date now is zero", "Sun, 06 Nov 1994 08:49:37 GMT", rfcInstant, 0, true},
		{"date in the past is zero", "Sun, 06 Nov 1994 08:49:37 GMT", rfcInstant.Add(time.Hour), 0, true},
		{"leap second", "Sat, 31 Dec 2016 23:59:60 GMT", time.Date(2016, 12, 31, 23, 59, 50, 0, time.UTC), 10 * time.Second, true},
		{"leap day", "Thu, 29 Feb 2024 00:00:10 GMT", time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC), 10 * time.Second, true},

		// RFC 850 two-digit years, read against 2026
		{"rfc850 70 is 2070, not 1970", "Thursday, 01-Jan-70 00:00:00 GMT", now2026, time.Date(2070, 1, 1, 0, 0, 0, 0, time.UTC).Sub(now2026), true},
		{"rfc850 26 is 2026", "Tuesday, 24-Nov-26 12:00:30 GMT", now2026, 30 * time.Second, true},
		{"rfc850 77 is 1977 (over 50 years ahead)", "Monday, 01-Jan-77 00:00:00 GMT", now2026, 0, true},
		{"rfc850 76 late in the year is 1976", "Friday, 27-Nov-76 00:00:00 GMT", now2026, 0, true},
		{"rfc850 76 early is 2076", "Tuesday, 24-Nov-76 11:00:00 GMT", now2026, time.Date(2076, 11, 24, 11, 0, 0, 0, time.UTC).Sub(now2026), true},
		// read against mid-2060, where the same-century year can be exactly 50 years back
		{"rfc850 10 early in 2060 is 2110 (under 50 years ahead)", "Friday, 10-Jan-10 00:00:00 GMT", now2060, time.Date(2110, 1, 10, 0, 0, 0, 0, time.UTC).Sub(now2060), true},
		{"rfc850 10 late in 2060 is 2010 (2110 is over 50 years ahead)", "Friday, 10-Dec-10 00:00:00 GMT", now2060, 0, true},
		{"rfc850 11 in 2060 is 2011 (2111 is over 50 years ahead)", "Monday, 10-Jan-11 00:00:00 GMT", now2060, 0, true},
		{"rfc850 60 in 2060 is 2060", "Tuesday, 15-Jun-60 12:00:05 GMT", now2060, 5 * time.Second, true},

		// not the grammar
		{"weekday lower case", "sun, 06 Nov 1994 08:49:37 GMT", before, 0, false},
		{"month upper case", "Sun, 06 NOV 1994 08:49:37 GMT", before, 0, false},
		{"zone UTC", "Sun, 06 Nov 1994 08:49:37 UTC", before, 0, false},
		{"zone lower case", "Sun, 06 Nov 1994 08:49:37 gmt", before, 0, false},
		{"numeric zone", "Sun, 06 Nov 1994 08:49:37 +0000", before, 0, false},
		{"fractional second", "Sun, 06 Nov 1994 08:49:37.5 GMT", before, 0, false},
		{"one-digit day", "Sun, 6 Nov 1994 08:49:37 GMT", before, 0, false},
		{"asctime day without padding", "Sun Nov 6 08:49:37 1994", before, 0, false},
		{"asctime with zone", "Sun Nov  6 08:49:37 1994 GMT", before, 0, false},
		{"rfc850 short day name", "Sun, 06-Nov-94 08:49:37 GMT", before, 0, false},
		{"rfc850 four-digit year", "Sunday, 06-Nov-1994 08:49:37 GMT", before, 0, false},
		{"imf long day name", "Sunday, 06 Nov 1994 08:49:37 GMT", before, 0, false},
		{"hour 24", "Sun, 06 Nov 1994 24:00:00 GMT", before, 0, false},
		{"minute 60", "Sun, 06 Nov 1994 08:60:00 GMT", before, 0, false},
		{"second 61", "Sun, 06 Nov 1994 08:49:61 GMT", before, 0, false},
		{"31 November", "Wed, 31 Nov 1994 08:49:37 GMT", before, 0, false},
		{"29 February of a common year", "Thu, 29 Feb 2023 08:49:37 GMT", before, 0, false},
		{"day zero", "Sun, 00 Nov 1994 08:49:37 GMT", before, 0, false},
		{"unknown month", "Sun, 06 Noe 1994 08:49:37 GMT", before, 0, false},
		{"missing seconds", "Sun, 06 Nov 1994 08:49 GMT", before, 0, false},
		{"ISO 8601", "1994-11-06T08:49:37Z", before, 0, false},
		{"words", "soon", before, 0, false},
		{"trailing comma", "Sun, 06 Nov 1994 08:49:37 GMT,", before, 0, false},
		{"two values", "120, 120", before, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := retryhttp.ParseRetryAfter(tt.value, tt.now)
			assert.Equal(t, tt.ok, ok)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestRetryAfterMeasuresDatesAgainstTheResponseDate(t *testing.T) {
	clientNow := rfcInstant.Add(time.Hour) // a client clock an hour fast
	tests := []struct {
		name   string
		header http.Header
		want   time.Duration
		ok     bool
	}{
		{"date against Date header", http.Header{
			"Retry-After": {"Sun, 06 Nov 1994 08:49:37 GMT"},
			"Date":        {"Sun, 06 Nov 1994 08:49:07 GMT"},
		}, 30 * time.Second, true},
		{"Date header in the obsolete asctime form", http.Header{
			"Retry-After": {"Sun, 06 Nov 1994 08:49:37 GMT"},
			"Date":        {"Sun Nov  6 08:49:27 1994"},
		}, 10 * time.Second, true},
		{"invalid Date header falls back to now", http.Header{
			"Retry-After": {"Sun, 06 Nov 1994 08:49:37 GMT"},
			"Date":        {"yesterday"},
		}, 0, true},
		{"no Date header falls back to now", http.Header{
			"Retry-After": {"Sun, 06 Nov 1994 10:49:37 GMT"},
		}, time.Hour, true},
		{"seconds ignore the Date header", http.Header{
			"Retry-After": {"7"},
			"Date":        {"Sun, 06 Nov 1994 08:49:07 GMT"},
		}, 7 * time.Second, true},
		{"no Retry-After", http.Header{}, 0, false},
		{"empty Retry-After", http.Header{"Retry-After": {""}}, 0, false},
		{"invalid Retry-After", http.Header{"Retry-After": {"-5"}}, 0, false},
		{"repeated identical values", http.Header{"Retry-After": {"3", "3"}}, 3 * time.Second, true},
		{"disagreeing values", http.Header{"Retry-After": {"3", "300"}}, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := retryhttp.RetryAfter(&http.Response{Header: tt.header}, clientNow)
			assert.Equal(t, tt.ok, ok)
			assert.Equal(t, tt.want, got)
		})
	}
	t.Run("nil response", func(t *testing.T) {
		_, ok := retryhttp.RetryAfter(nil, clientNow)
		assert.False(t, ok)
	})
}

// GitHub sends X-RateLimit-Limit/-Remaining/-Reset on every API response, the
// reset being the end of the hourly window however much quota is left. A
// transient 503 that carries them with quota left (Remaining 4999) has asked
// for no wait: it is retried at once, not given up on as a wait too long.
func TestRateLimitResetWithQuotaLeftIsNotAWait(t *testing.T) {
	clock := retrytest.NewClock(t)
	var calls atomic.Int32
	base := roundTripFunc(func(req *http.Request) (*http.Response, error) {
		if calls.Add(1) == 1 {
			h := http.Header{}
			h.Set("X-RateLimit-Limit", "5000")
			h.Set("X-RateLimit-Remaining", "4999")
			h.Set("X-RateLimit-Used", "1")
			h.Set("X-RateLimit-Reset", strconv.FormatInt(clock.Now().Add(50*time.Minute).Unix(), 10))
			return &http.Response{StatusCode: 503, Header: h, Body: http.NoBody, Request: req}, nil
		}
		return &http.Response{StatusCode: 200, Header: http.Header{}, Body: http.NoBody, Request: req}, nil
	})
	var hook giveUps
	tr := &retryhttp.Transport{Base: base, Policy: retryhttp.Policy{Clock: clock, OnGiveUp: hook.record}}

	resp, err := tr.RoundTrip(newRequest(t, "GET", "https://api.github.example/repos/o/r", nil))

	require.NoError(t, err)
	resp.Body.Close()
	for _, ev := range hook.all() {
		t.Logf("gave up: %v (wait %v from %s)", ev.Reason, ev.RetryAfter, ev.RetryAfterHeader)
	}
	assert.Equal(t, 200, resp.StatusCode, "a 503 with quota left was not retried")
	assert.EqualValues(t, 2, calls.Load())
}
