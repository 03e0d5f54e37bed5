package retrytest

import (
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// RateLimitStyle is the way a real API refuses a request over its rate
// limit: the status code, and the header fields that say when the quota
// resets. RateLimited answers in one of these styles.
//
// The zero RateLimitStyle is none of them, so that a style left out by
// mistake makes RateLimited panic rather than pick one silently.
type RateLimitStyle int

const (
	// GitHub is GitHub's REST API over its primary rate limit: 403
	// Forbidden with X-RateLimit-Limit: 5000, X-RateLimit-Remaining: 0,
	// X-RateLimit-Used: 5000, X-RateLimit-Resource: core, and
	// X-RateLimit-Reset, the Unix time of the reset in whole seconds, and
	// a JSON message.
	GitHub RateLimitStyle = iota + 1

	// GitHubSecondary is GitHub's REST API over a secondary rate limit:
	// 403 Forbidden with Retry-After in whole seconds and a JSON message,
	// and no X-RateLimit fields.
	GitHubSecondary

	// IETF is the RateLimit fields of draft-ietf-httpapi-ratelimit-headers
	// (-08 and later): 429 Too Many Requests with
	// RateLimit-Policy: "default";q=100;w=60 and
	// RateLimit: "default";r=0;t=<whole seconds>, and a problem+json body
	// of type quota-exceeded.
	IETF

	// IETFDraft06 is the older fields of the same draft up to -06, still
	// deployed: 429 Too Many Requests with RateLimit-Limit: 100,
	// RateLimit-Remaining: 0 and RateLimit-Reset in whole seconds.
	IETFDraft06

	// Discord is Discord's API: 429 Too Many Requests with Retry-After in
	// whole seconds, X-RateLimit-Limit: 10, X-RateLimit-Remaining: 0,
	// X-RateLimit-Reset, the Unix time of the reset with three decimals,
	// X-RateLimit-Reset-After, the seconds until then with three decimals,
	// X-RateLimit-Bucket: abcd1234 and X-RateLimit-Scope: user, and a JSON
	// body whose retry_after repeats X-RateLimit-Reset-After.
	Discord

	// XTwitter is the API of X, formerly Twitter: 429 Too Many Requests
	// with X-Rate-Limit-Limit: 15, X-Rate-Limit-Remaining: 0 and
	// X-Rate-Limit-Reset, the Unix time of the reset in whole seconds, and
	// a JSON problem body.
	XTwitter
)

var rateLimitStyleNames = [...]string{
	GitHub:          "GitHub",
	GitHubSecondary: "GitHubSecondary",
	IETF:            "IETF",
	IETFDraft06:     "IETFDraft06",
	Discord:         "Discord",
	XTwitter:        "XTwitter",
}

// String returns the name of the style's constant, such as "GitHub".
func (s RateLimitStyle) String() string {
	if s > 0 && int(s) < len(rateLimitStyleNames) {
		return rateLimitStyleNames[s]
	}
	return "RateLimitStyle(" + strconv.Itoa(int(s)) + ")"
}

// RateLimited returns an Answer that refuses a request for being over a
// rate limit, as the API of style does, saying that the quota resets
// reset from the moment the request arrives on the Server's clock (see
// UseClock).
//
// The Unix times the styles send are computed when the Answer is served,
// from the same clock and instant as the Date header, so a client that
// measures them against Date, as retryhttp.RateLimitWait does, reads back
// reset whatever the clock shows. Values are rounded up to the precision
// the API sends, whole seconds or, for Discord, milliseconds, so that a
// client is never told a time earlier than the reset: it may read up to
// one unit more; and a Unix time measured against Date, which drops the
// fraction of a second, up to one second more again when the clock is not
// on a whole second.
//
// The Answer's Header holds the fields that do not depend on the time; use
// WithHeader to replace any field, the Unix times included, for instance
// with a malformed value. RateLimited panics if reset is negative or style
// is not one of the RateLimitStyle constants.
func RateLimited(reset time.Duration, style RateLimitStyle) Answer {
	if reset < 0 {
		panic(fmt.Sprintf("retrytest: RateLimited(%v, %v): a reset cannot be in the past", reset, style))
	}
	seconds := strconv.FormatInt(int64(ceilSeconds(reset)/time.Second), 10)
	switch style {
	case GitHub:
		return Answer{
			Status: http.StatusForbidden,
			Header: fields(
				"Content-Type", "application/json; charset=utf-8",
				"X-RateLimit-Limit", "5000",
				"X-RateLimit-Remaining", "0",
				"X-RateLimit-Used", "5000",
				"X-RateLimit-Resource", "core",
			),
			HeaderFunc: func(now time.Time) http.Header {
				return fields("X-RateLimit-Reset", unixSeconds(now.Add(reset)))
			},
			Body: `{"message":"API rate limit exceeded"}`,
		}
	case GitHubSecondary:
		return Answer{
			Status: http.StatusForbidden,
			Header: fields(
				"Content-Type", "application/json; charset=utf-8",
				"Retry-After", seconds,
			),
			Body: `{"message":"You have exceeded a secondary rate limit. Please wait a few minutes before you try again."}`,
		}
	case IETF:
		return Answer{
			Status: http.StatusTooManyRequests,
			Header: fields(
				"Content-Type", "application/problem+json",
				"RateLimit-Policy", `"default";q=100;w=60`,
				"RateLimit", `"default";r=0;t=`+seconds,
			),
			Body: `{"type":"https://iana.org/assignments/http-problem-types#quota-exceeded",` +
				`"title":"Request cannot be satisfied as assigned quota has been exceeded",` +
				`"violated-policies":["default"]}`,
		}
	case IETFDraft06:
		return Answer{
			Status: http.StatusTooManyRequests,
			Header: fields(
				"Content-Type", "text/plain; charset=utf-8",
				"RateLimit-Limit", "100",
				"RateLimit-Remaining", "0",
				"RateLimit-Reset", seconds,
			),
			Body: "Too Many Requests",
		}
	case Discord:
		after := millis(reset)
		return Answer{
			Status: http.StatusTooManyRequests,
			Header: fields(
				"Content-Type", "application/json",
				"Retry-After", seconds,
				"X-RateLimit-Limit", "10",
				"X-RateLimit-Remaining", "0",
				"X-RateLimit-Reset-After", after,
				"X-RateLimit-Bucket", "abcd1234",
				"X-RateLimit-Scope", "user",
			),
			HeaderFunc: func(now time.Time) http.Header {
				return fields("X-RateLimit-Reset", unixMillis(now.Add(reset)))
			},
			Body: `{"message":"You are being rate limited.","retry_after":` + after + `,"global":false}`,
		}
	case XTwitter:
		return Answer{
			Status: http.StatusTooManyRequests,
			Header: fields(
				"Content-Type", "application/problem+json",
				"X-Rate-Limit-Limit", "15",
				"X-Rate-Limit-Remaining", "0",
			),
			HeaderFunc: func(now time.Time) http.Header {
				return fields("X-Rate-Limit-Reset", unixSeconds(now.Add(reset)))
			},
			Body: `{"title":"Too Many Requests","detail":"Too Many Requests","type":"about:blank","status":429}`,
		}
	}
	panic(fmt.Sprintf("retrytest: RateLimited(%v, %v): unknown style", reset, style))
}

// fields builds a header from name, value pairs.
func fields(kv ...string) http.Header {
	h := make(http.Header, len(kv)/2)
	for i := 0; i < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

// unixSeconds formats t as a Unix time in whole seconds, rounded up.
func unixSeconds(t time.Time) string {
	sec := t.Unix()
	if t.Nanosecond() > 0 {
		sec++
	}
	return strconv.FormatInt(sec, 10)
}

// unixMillis formats t as a Unix time in seconds with three decimals,
// rounded up.
func unixMillis(t time.Time) string {
	sec, ms := t.Unix(), (t.Nanosecond()+999_999)/1_000_000
	if ms == 1000 {
		sec, ms = sec+1, 0
	}
	return fmt.Sprintf("%d.%03d", sec, ms)
}

// millis formats d in seconds with three decimals, rounded up.
func millis(d time.Duration) string {
	ms := d / time.Millisecond
	if d%time.Millisecond != 0 {
		ms++
	}
	return fmt.Sprintf("%d.%03d", ms/1000, ms%1000)
}
