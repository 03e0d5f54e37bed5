package retryhttp_test

import (
	"fmt"
	"net/http"
	"time"

	"github.com/b4dedce7/retryhttp"
)

// Read the waits that GitHub, Discord and the IETF draft ask for. GitHub's
// reset is a Unix time, measured against the response's Date header, so a
// client clock that is off does not change the wait.
func ExampleRateLimitWait() {
	serverNow := time.Date(2026, time.November, 24, 12, 0, 0, 0, time.UTC)
	clientNow := serverNow.Add(3 * time.Second) // the client's clock is 3 s fast

	github := &http.Response{StatusCode: http.StatusForbidden, Header: http.Header{}}
	github.Header.Set("Date", serverNow.Format(http.TimeFormat))
	github.Header.Set("X-RateLimit-Remaining", "0")
	github.Header.Set("X-RateLimit-Reset", fmt.Sprint(serverNow.Add(90*time.Second).Unix()))

	discord := &http.Response{StatusCode: http.StatusTooManyRequests, Header: http.Header{}}
	discord.Header.Set("X-RateLimit-Reset-After", "1.234") // read before X-RateLimit-Reset
	discord.Header.Set("X-RateLimit-Reset", "1795521601.250")

	ietf := &http.Response{StatusCode: http.StatusTooManyRequests, Header: http.Header{}}
	ietf.Header.Set("RateLimit", `"minute";r=0;t=42, "day";r=4200;t=30000`)

	for _, r := range []struct {
		name string
		resp *http.Response
	}{{"GitHub", github}, {"Discord", discord}, {"IETF", ietf}} {
		wait, ok := retryhttp.RateLimitWait(r.resp, clientNow)
		fmt.Println(r.name, wait, ok)
	}
	// Output:
	// GitHub 1m30s true
	// Discord 1.234s true
	// IETF 42s true
}
