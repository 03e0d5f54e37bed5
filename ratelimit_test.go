package retryhttp

import (
	"math/big"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// rlNow is the client's clock in the rate-limit tests: 2026-11-24 12:00:00 UTC.
var rlNow = time.Date(2026, time.November, 24, 12, 0, 0, 0, time.UTC)

// epochIn returns the Unix time d after rlNow, as a field value; d may
// hold a fraction of a second, printed with nine digits.
func epochIn(d time.Duration) string {
	t := rlNow.Add(d)
	if t.Nanosecond() == 0 {
		return strconv.FormatInt(t.Unix(), 10)
	}
	return strconv.FormatInt(t.Unix(), 10) + "." + strconv.Itoa(1e9 + t.Nanosecond())[1:]
}

// hdr builds a header with canonical keys from name, value pairs; a name
// may repeat to send a field twice.
func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

func TestRateLimitWait(t *testing.T) {
	const (
		rl     = "RateLimit"
		rlr    = "RateLimit-Reset"
		after  = "X-RateLimit-Reset-After"
		reset  = "X-RateLimit-Reset"
		xreset = "X-Rate-Limit-Reset"
		sec    = time.Second
	)
	serverDate := rlNow.Add(-time.Hour) // the server's clock, an hour behind the client's

	tests := []struct {
		name   string
		header http.Header
		want   time.Duration
		from   string // the field that decided, "" for none
		ok     bool
	}{
		// IETF RateLimit (draft-ietf-httpapi-ratelimit-headers-11)
		{"ietf one exhausted policy", hdr(rl, `"default";r=0;t=50`), 50 * sec, rl, true},
		{"ietf draft example, one of two exhausted", hdr(rl, `"default";r=0;t=50, "burst";r=5;t=1`), 50 * sec, rl, true},
		{"ietf longest t of the exhausted", hdr(rl, `"permin";r=0;t=30, "perhr";r=0;t=1800, "burst";r=9;t=99999`), 1800 * sec, rl, true},
		{"ietf longest t listed first", hdr(rl, `"perhr";r=0;t=1800,"permin";r=0;t=30`), 1800 * sec, rl, true},
		{"ietf t=0", hdr(rl, `"default";r=0;t=0`), 0, rl, true},
		{"ietf token item", hdr(rl, `default;r=0;t=9`), 9 * sec, rl, true},
		{"ietf token with : and /", hdr(rl, `a:b/c;r=0;t=9`), 9 * sec, rl, true},
		{"ietf star token", hdr(rl, `*;r=0;t=9`), 9 * sec, rl, true},
		{"ietf parameters in any order", hdr(rl, `"d";t=12;r=0`), 12 * sec, rl, true},
		{"ietf leading zeros", hdr(rl, `"d";r=000;t=007`), 7 * sec, rl, true},
		{"ietf spaces after semicolons", hdr(rl, `"d"; r=0;  t=5`), 5 * sec, rl, true},
		{"ietf OWS around commas", hdr(rl, "\"a\";r=0;t=5 ,\t\"b\";r=1;t=9"), 5 * sec, rl, true},
		{"ietf OWS around the value", hdr(rl, " \t\"a\";r=0;t=5\t "), 5 * sec, rl, true},
		{"ietf partition key", hdr(rl, `"peruser";r=0;t=60;pk=:cHsdsRa894==:`), 60 * sec, rl, true},
		{"ietf other parameters of every type", hdr(rl,
			`"d";r=0;t=5;q=100;acme-b=?1;acme-d=-1.5;acme-s="x\"y\\z";acme-t=tok/en;acme-at=@1700000000;acme-ds=%"caf%c3%a9";acme-flag`),
			5 * sec, rl, true},
		{"ietf escaped quote in the name", hdr(rl, `"a\"b";r=0;t=5`), 5 * sec, rl, true},
		{"ietf later parameter overrides, exhausted", hdr(rl, `"a";r=3;t=5;r=0`), 5 * sec, rl, true},
		{"ietf later parameter overrides, not exhausted", hdr(rl, `"a";r=0;t=5;r=3`), 0, rl, false},
		{"ietf later t overrides", hdr(rl, `"a";r=0;t=500;t=5`), 5 * sec, rl, true},
		{"ietf lines combined", hdr(rl, `"a";r=1;t=99`, rl, `"b";r=0;t=4`), 4 * sec, rl, true},
		{"ietf lines combined, longest t", hdr(rl, `"a";r=0;t=8`, rl, `"b";r=0;t=4, "c";r=0;t=6`), 8 * sec, rl, true},
		{"ietf string spanning lines", hdr(rl, `"a`, rl, `b";r=0;t=3`), 3 * sec, rl, true},
		{"ietf exhausted without t is passed over", hdr(rl, `"a";r=0, "b";r=0;t=7`), 7 * sec, rl, true},
		{"ietf exhausted without t only", hdr(rl, `"a";r=0`), 0, rl, false},
		{"ietf nothing exhausted", hdr(rl, `"default";r=50;t=30`), 0, rl, false},
		{"ietf nothing exhausted does not fall through", hdr(rl, `"default";r=5;t=30`, after, "3"), 0, rl, false},
		{"ietf no t, nothing exhausted", hdr(rl, `"default";r=999;pk=:dHJpYWwxMjEzMjM=:`), 0, rl, false},
		{"ietf largest t saturates", hdr(rl, `"d";r=0;t=999999999999999`), maxDelay, rl, true},
		{"ietf largest t representable", hdr(rl, `"d";r=0;t=9223372036`), maxDelay, rl, true},
		{"ietf t one under saturation", hdr(rl, `"d";r=0;t=9223372035`), 9223372035 * sec, rl, true},
		{"ietf empty field", hdr(rl, ""), 0, rl, false},
		{"ietf malformed: no r", hdr(rl, `"a";t=5`), 0, rl, false},
		{"ietf malformed: no r in another item", hdr(rl, `"a";r=0;t=5, "b";t=9`), 0, rl, false},
		{"ietf malformed: boolean r", hdr(rl, `"a";r;t=5`), 0, rl, false},
		{"ietf malformed: negative r", hdr(rl, `"a";r=-1;t=5`), 0, rl, false},
		{"ietf malformed: negative t", hdr(rl, `"a";r=0;t=-5`), 0, rl, false},
		{"ietf malformed: minus zero t", hdr(rl, `"a";r=0;t=-0`), 0, rl, false},
		{"ietf malformed: decimal t", hdr(rl, `"a";r=0;t=1.5`), 0, rl, false},
		{"ietf malformed: decimal r", hdr(rl, `"a";r=0.0;t=5`), 0, rl, false},
		{"ietf malformed: string t", hdr(rl, `"a";r=0;t="5"`), 0, rl, false},
		{"ietf malformed: empty t", hdr(rl, `"a";r=0;t=`), 0, rl, false},
		{"ietf malformed: t with unit", hdr(rl, `"a";r=0;t=5s`), 0, rl, false},
		{"ietf malformed: integer of 16 digits", hdr(rl, `"a";r=0;t=1000000000000000`), 0, rl, false},
		{"ietf malformed: bad t in a policy not exhausted", hdr(rl, `"a";r=0;t=5, "b";r=1;t=-1`), 0, rl, false},
		{"ietf malformed: draft -07 dictionary", hdr(rl, `limit=100, remaining=0, reset=5`), 0, rl, false},

		// RateLimit-Reset (IETF drafts up to -06): delay-seconds only
		{"draft06 seconds", hdr(rlr, "30"), 30 * sec, rlr, true},
		{"draft06 zero", hdr(rlr, "0"), 0, rlr, true},
		{"draft06 leading zeros and OWS", hdr(rlr, " \t007 "), 7 * sec, rlr, true},
		{"draft06 never a Unix time", hdr(rlr, "1000000000"), 1000000000 * sec, rlr, true},
		{"draft06 saturates", hdr(rlr, "99999999999999999999"), maxDelay, rlr, true},
		{"draft06 fraction", hdr(rlr, "1.5"), 0, rlr, false},
		{"draft06 minus", hdr(rlr, "-1"), 0, rlr, false},
		{"draft06 plus", hdr(rlr, "+1"), 0, rlr, false},
		{"draft06 empty", hdr(rlr, ""), 0, rlr, false},
		{"draft06 identical repeats", hdr(rlr, "30", rlr, " 30"), 30 * sec, rlr, true},
		{"draft06 disagreeing repeats", hdr(rlr, "30", rlr, "31"), 0, rlr, false},

		// X-RateLimit-Reset-After (Discord): seconds, with a fraction
		{"discord reset-after", hdr(after, "64.57"), 64570 * time.Millisecond, after, true},
		{"discord reset-after whole", hdr(after, "2"), 2 * sec, after, true},
		{"reset-after three decimals", hdr(after, "1.234"), 1234 * time.Millisecond, after, true},
		{"reset-after a millisecond", hdr(after, "0.001"), time.Millisecond, after, true},
		{"reset-after nine decimals exact", hdr(after, "1.123456789"), sec + 123456789, after, true},
		{"reset-after trailing zeros exact", hdr(after, "1.100000000000"), 1100 * time.Millisecond, after, true},
		{"reset-after tenth decimal rounds up", hdr(after, "1.0000000001"), sec + 1, after, true},
		{"reset-after rounds up into the next second", hdr(after, "1.9999999999"), 2 * sec, after, true},
		{"reset-after zero", hdr(after, "0.000"), 0, after, true},
		{"reset-after never a Unix time", hdr(after, "1000000000.5"), 1000000000*sec + 500*time.Millisecond, after, true},
		{"reset-after saturates", hdr(after, "99999999999999999999"), maxDelay, after, true},
		{"reset-after saturates with a fraction", hdr(after, "99999999999999999999.5"), maxDelay, after, true},
		{"reset-after at saturation", hdr(after, "9223372036"), maxDelay, after, true},
		{"reset-after just past saturation", hdr(after, "9223372036.000000001"), maxDelay, after, true},
		{"reset-after just under saturation", hdr(after, "9223372035.999999999"), maxDelay - 1, after, true},
		{"reset-after leading dot", hdr(after, ".5"), 0, after, false},
		{"reset-after trailing dot", hdr(after, "5."), 0, after, false},
		{"reset-after two dots", hdr(after, "1.5.5"), 0, after, false},
		{"reset-after minus", hdr(after, "-1.5"), 0, after, false},
		{"reset-after plus", hdr(after, "+1"), 0, after, false},
		{"reset-after exponent", hdr(after, "1e3"), 0, after, false},
		{"reset-after hex", hdr(after, "0x10"), 0, after, false},
		{"reset-after unit", hdr(after, "5s"), 0, after, false},
		{"reset-after inner space", hdr(after, "1 5"), 0, after, false},
		{"reset-after decimal comma", hdr(after, "1,5"), 0, after, false},
		{"reset-after NaN", hdr(after, "NaN"), 0, after, false},
		{"reset-after non-ASCII digits", hdr(after, "١٢"), 0, after, false},
		{"reset-after empty", hdr(after, ""), 0, after, false},
		{"reset-after blank", hdr(after, " \t "), 0, after, false},
		{"reset-after identical repeats", hdr(after, "1.5", after, "1.5 "), 1500 * time.Millisecond, after, true},
		{"reset-after repeats that differ only in form", hdr(after, "1.5", after, "1.50"), 0, after, false},

		// X-RateLimit-Reset (GitHub, Discord): Unix time or seconds
		{"github epoch", hdr(reset, epochIn(60*sec)), 60 * sec, reset, true},
		{"epoch with a fraction", hdr(reset, epochIn(30123*time.Millisecond)), 30123 * time.Millisecond, reset, true},
		{"epoch with nine decimals", hdr(reset, epochIn(30*sec+1)), 30*sec + 1, reset, true},
		{"epoch rounds up below a nanosecond", hdr(reset, epochIn(30*sec)+".0000000001"), 30*sec + 1, reset, true},
		{"epoch now", hdr(reset, epochIn(0)), 0, reset, true},
		{"epoch in the past", hdr(reset, epochIn(-90*sec)), 0, reset, true},
		{"epoch half a second in the past", hdr(reset, epochIn(-500*time.Millisecond)), 0, reset, true},
		{"epoch boundary: 999999999 is seconds", hdr(reset, "999999999"), 999999999 * sec, reset, true},
		{"epoch boundary: 999999999.999 is seconds", hdr(reset, "999999999.999"), 999999999*sec + 999*time.Millisecond, reset, true},
		{"epoch boundary: 1000000000 is a time in 2001", hdr(reset, "1000000000"), 0, reset, true},
		{"seconds", hdr(reset, "120"), 120 * sec, reset, true},
		{"seconds with a fraction", hdr(reset, "1.5"), 1500 * time.Millisecond, reset, true},
		{"epoch in the year 9999 saturates", hdr(reset, "253402300799"), maxDelay, reset, true},
		{"epoch beyond int64 saturates", hdr(reset, "99999999999999999999"), maxDelay, reset, true},
		{"epoch against the Date header", hdr(reset, strconv.FormatInt(serverDate.Unix()+60, 10),
			"Date", serverDate.Format(http.TimeFormat)), 60 * sec, reset, true},
		{"epoch against an asctime Date header", hdr(reset, strconv.FormatInt(serverDate.Unix()+60, 10),
			"Date", serverDate.Format(time.ANSIC)), 60 * sec, reset, true},
		{"epoch against the Date header, fraction", hdr(reset, strconv.FormatInt(serverDate.Unix()+2, 10)+".5",
			"Date", serverDate.Format(http.TimeFormat)), 2500 * time.Millisecond, reset, true},
		{"epoch against an invalid Date header uses now", hdr(reset, epochIn(60*sec), "Date", "yesterday"), 60 * sec, reset, true},
		{"seconds ignore the Date header", hdr(reset, "60", "Date", serverDate.Format(http.TimeFormat)), 60 * sec, reset, true},
		{"epoch malformed", hdr(reset, epochIn(60*sec)+"Z"), 0, reset, false},
		{"epoch identical repeats", hdr(reset, epochIn(5*sec), reset, epochIn(5*sec)), 5 * sec, reset, true},
		{"epoch disagreeing repeats", hdr(reset, epochIn(5*sec), reset, epochIn(6*sec)), 0, reset, false},

		// X-Rate-Limit-Reset (X, formerly Twitter)
		{"x epoch", hdr(xreset, epochIn(15*time.Minute)), 15 * time.Minute, xreset, true},
		{"x seconds", hdr(xreset, "900"), 900 * sec, xreset, true},
		{"x epoch against Date", hdr(xreset, strconv.FormatInt(serverDate.Unix()+9, 10),
			"Date", serverDate.Format(http.TimeFormat)), 9 * sec, xreset, true},
		{"x epoch with a fraction", hdr(xreset, epochIn(1500*time.Millisecond)), 1500 * time.Millisecond, xreset, true},
		{"x malformed", hdr(xreset, "-900"), 0, xreset, false},

		// precedence: only the first present field is read
		{"RateLimit first of all", hdr(xreset, "5", reset, "4", after, "3", rlr, "2", rl, `"a";r=0;t=1`), sec, rl, true},
		{"RateLimit-Reset before the X- fields", hdr(xreset, "5", reset, "4", after, "3", rlr, "2"), 2 * sec, rlr, true},
		{"discord: reset-after before reset, not compared", hdr(reset, epochIn(3*sec), after, "1.234"), 1234 * time.Millisecond, after, true},
		{"X-RateLimit-Reset before X-Rate-Limit-Reset", hdr(xreset, "5", reset, "4"), 4 * sec, reset, true},
		{"malformed first field does not fall through", hdr(rlr, "soon", after, "3"), 0, rlr, false},
		{"empty first field does not fall through", hdr(after, "", reset, epochIn(3*sec)), 0, after, false},
		{"malformed RateLimit does not fall through", hdr(rl, `"a";r=0;t=x`, rlr, "3"), 0, rl, false},
		{"disagreeing repeats do not fall through", hdr(after, "1", after, "2", reset, "3"), 0, after, false},
		{"Retry-After alone is not read", hdr("Retry-After", "5"), 0, "", false},
		{"remaining alone is not a wait", hdr("X-RateLimit-Remaining", "0"), 0, "", false},
		// A reset with quota left is the end of a window still open (GitHub
		// and Discord send it on every response), not a wait.
		{"github reset with quota left", hdr(reset, "1700003000", "X-RateLimit-Remaining", "4999"), 0, reset, false},
		{"github reset with quota spent", hdr(reset, "1700003000", "X-RateLimit-Remaining", "0", "Date", "Tue, 14 Nov 2023 22:13:20 GMT"), 3000 * sec, reset, true},
		{"discord reset-after with quota left", hdr(after, "2.5", "X-RateLimit-Remaining", "3"), 0, after, false},
		{"discord reset-after with a fraction of quota left", hdr(after, "2.5", "X-RateLimit-Remaining", "0.5"), 0, after, false},
		{"x reset with quota left", hdr(xreset, "30", "X-Rate-Limit-Remaining", "12"), 0, xreset, false},
		{"x reset ignores the other spelling's count", hdr(xreset, "30", "X-RateLimit-Remaining", "12"), 30 * sec, xreset, true},
		{"draft-06 reset with quota left", hdr(rlr, "30", "RateLimit-Remaining", "7"), 0, rlr, false},
		{"draft-06 reset with quota spent", hdr(rlr, "30", "RateLimit-Remaining", "0"), 30 * sec, rlr, true},
		{"a malformed remaining count leaves the reset a wait", hdr(after, "4", "X-RateLimit-Remaining", "many"), 4 * sec, after, true},
		{"the IETF field is not held to the X- counts", hdr(rl, `"d";r=0;t=5`, "X-RateLimit-Remaining", "9"), 5 * sec, rl, true},
		{"no fields", http.Header{}, 0, "", false},
		{"nil header", nil, 0, "", false},

		// keys set in the map in another case than Go's canonical one
		{"map key as documented", http.Header{"X-RateLimit-Reset-After": {"2"}}, 2 * sec, after, true},
		{"map key in lower case", http.Header{"x-ratelimit-reset": {epochIn(7 * sec)}}, 7 * sec, reset, true},
		{"map key IETF spelling", http.Header{"RateLimit": {`"a";r=0;t=8`}}, 8 * sec, rl, true},
		{"map keys in two cases, same value", http.Header{"X-RateLimit-Reset-After": {"2"}, "X-Ratelimit-Reset-After": {"2"}}, 2 * sec, after, true},
		{"map keys in two cases, disagreeing", http.Header{"X-RateLimit-Reset-After": {"2"}, "X-Ratelimit-Reset-After": {"3"}}, 0, after, false},
		{"map keys in two cases, RateLimit lines combined", http.Header{"RateLimit": {`"a";r=0;t=8`}, "Ratelimit": {`"b";r=0;t=9`}}, 9 * sec, rl, true},
		{"map key Date in lower case", http.Header{"date": {serverDate.Format(http.TimeFormat)},
			"X-Ratelimit-Reset": {strconv.FormatInt(serverDate.Unix()+4, 10)}}, 4 * sec, reset, true},
		{"map keys in another case keep the precedence", http.Header{"x-ratelimit-reset": {"9"}, "ratelimit-reset": {"1"}}, sec, rlr, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := &http.Response{Header: tt.header}
			got, from, ok := rateLimitWait(resp, rlNow)
			assert.Equal(t, tt.ok, ok, "ok")
			assert.Equal(t, tt.want, got, "wait")
			assert.Equal(t, tt.from, from, "field")

			exported, exportedOK := RateLimitWait(resp, rlNow)
			assert.Equal(t, got, exported, "RateLimitWait")
			assert.Equal(t, ok, exportedOK, "RateLimitWait")
		})
	}
}

func TestRateLimitWaitNilResponse(t *testing.T) {
	d, from, ok := rateLimitWait(nil, rlNow)
	assert.False(t, ok)
	assert.Zero(t, d)
	assert.Empty(t, from)
	d, ok = RateLimitWait(nil, rlNow)
	assert.False(t, ok)
	assert.Zero(t, d)
}

// The table's keys must be what http.Header stores the names under, or
// no response from net/http would ever be read.
func TestRateLimitFieldKeysAreCanonical(t *testing.T) {
	for _, f := range rateLimitFields {
		assert.Equal(t, http.CanonicalHeaderKey(f.name), f.key, f.name)
	}
	assert.Equal(t, http.CanonicalHeaderKey("X-RateLimit-Remaining"), keyXRateLimitRemaining)
	assert.Equal(t, http.CanonicalHeaderKey("X-Rate-Limit-Remaining"), keyXRateDashLimitRem)
}

// The common case must not copy the header.
func TestCanonicalRateLimitHeaderKeepsCanonicalHeaders(t *testing.T) {
	h := hdr("X-RateLimit-Reset", "1", "Date", "x", "Content-Type", "text/plain", "x-other", "y")
	got := canonicalRateLimitHeader(h)
	got.Set("X-Probe", "1")
	assert.Equal(t, "1", h.Get("X-Probe"), "a canonical header is used as is")

	stray := http.Header{"x-ratelimit-reset": {"1"}, "Date": {"x"}, "Content-Type": {"text/plain"}}
	before := stray.Clone()
	got = canonicalRateLimitHeader(stray)
	assert.Equal(t, http.Header{"X-Ratelimit-Reset": {"1"}, "Date": {"x"}}, got, "only the fields read, canonically")
	assert.Equal(t, before, stray, "the response is not changed")
}

func TestRateLimitRefusal(t *testing.T) {
	tests := []struct {
		name   string
		header http.Header
		want   bool
	}{
		{"github remaining 0", hdr("X-RateLimit-Remaining", "0"), true},
		{"x remaining 0", hdr("X-Rate-Limit-Remaining", "0"), true},
		{"remaining 0 with OWS", hdr("X-RateLimit-Remaining", " \t0 "), true},
		{"remaining 00", hdr("X-RateLimit-Remaining", "00"), true},
		{"remaining 0.0", hdr("X-RateLimit-Remaining", "0.0"), true},
		{"remaining 0.000", hdr("X-RateLimit-Remaining", "0.000"), true},
		{"remaining 0 repeated", hdr("X-RateLimit-Remaining", "0", "X-RateLimit-Remaining", "0"), true},
		{"remaining 0 in a lower-case map key", http.Header{"x-ratelimit-remaining": {"0"}}, true},
		{"remaining 0 with a nonzero other spelling", hdr("X-RateLimit-Remaining", "0", "X-Rate-Limit-Remaining", "5"), true},
		{"ietf exhausted", hdr("RateLimit", `"default";r=0;t=50`), true},
		{"ietf exhausted without t", hdr("RateLimit", `"default";r=0`), true},
		{"ietf one of two exhausted", hdr("RateLimit", `"a";r=4;t=1, "b";r=0;t=9`), true},
		{"ietf exhausted in a second line", hdr("RateLimit", `"a";r=4;t=1`, "RateLimit", `"b";r=0`), true},
		{"remaining 1", hdr("X-RateLimit-Remaining", "1"), false},
		{"remaining 10", hdr("X-RateLimit-Remaining", "10"), false},
		{"remaining 0.5", hdr("X-RateLimit-Remaining", "0.5"), false},
		{"remaining -0", hdr("X-RateLimit-Remaining", "-0"), false},
		{"remaining 0.", hdr("X-RateLimit-Remaining", "0."), false},
		{"remaining .0", hdr("X-RateLimit-Remaining", ".0"), false},
		{"remaining empty", hdr("X-RateLimit-Remaining", ""), false},
		{"remaining word", hdr("X-RateLimit-Remaining", "none"), false},
		{"remaining list", hdr("X-RateLimit-Remaining", "0, 0"), false},
		{"remaining disagreeing repeats", hdr("X-RateLimit-Remaining", "0", "X-RateLimit-Remaining", "1"), false},
		{"ietf not exhausted", hdr("RateLimit", `"default";r=5;t=50`), false},
		{"ietf malformed", hdr("RateLimit", `"default";r=0;t=-1`), false},
		{"ietf malformed in another item", hdr("RateLimit", `"a";r=0;t=1, "b"`), false},
		{"draft -06 remaining is not read", hdr("RateLimit-Remaining", "0"), false},
		{"Retry-After is the caller's", hdr("Retry-After", "5"), false},
		{"reset alone", hdr("X-RateLimit-Reset", epochIn(time.Minute)), false},
		{"no fields", http.Header{}, false},
		{"nil", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, rateLimitRefusal(tt.header))
		})
	}
}

// The fuzz oracle's grammars, written independently of the parser.
var (
	rlDigits  = regexp.MustCompile(`^[ \t]*([0-9]+)[ \t]*$`)
	rlDecimal = regexp.MustCompile(`^[ \t]*([0-9]+(\.[0-9]+)?)[ \t]*$`)
)

// expectedWait computes with exact rationals what a decimal field value
// asks for, counted from ref when it is a Unix time.
func expectedWait(t *testing.T, value string, epoch bool, ref time.Time) time.Duration {
	t.Helper()
	v, ok := new(big.Rat).SetString(value)
	require.True(t, ok, "oracle cannot read %q", value)
	if epoch {
		refRat := new(big.Rat).SetInt64(ref.Unix())
		refRat.Add(refRat, new(big.Rat).SetFrac(big.NewInt(int64(ref.Nanosecond())), big.NewInt(1e9)))
		v.Sub(v, refRat)
	}
	if v.Sign() <= 0 {
		return 0
	}
	ns := new(big.Rat).Mul(v, new(big.Rat).SetInt64(1e9))
	// Round up to a whole nanosecond.
	q, r := new(big.Int).QuoRem(ns.Num(), ns.Denom(), new(big.Int))
	if r.Sign() != 0 {
		q.Add(q, big.NewInt(1))
	}
	if !q.IsInt64() || q.Int64() > int64(maxDelay) {
		return maxDelay
	}
	return time.Duration(q.Int64())
}

func FuzzRateLimitWait(f *testing.F) {
	now := rlNow.Unix()
	date := rlNow.Add(-time.Hour).Format(http.TimeFormat)
	const none = 5
	for _, seed := range []struct {
		field  uint8
		value  string
		other  uint8
		value2 string
		date   string
	}{
		{0, `"default";r=0;t=50, "burst";r=5;t=1`, none, "", ""},
		{0, `"a";r=0;t=5`, 0, `"b";r=0;t=9`, ""},
		{0, `"a";r=0;t=-1`, 2, "3", ""},
		{1, "30", none, "", ""},
		{1, "1.5", 3, "7", ""},
		{2, "64.57", 3, "1795521664.570", ""},
		{2, "1.0000000001", 2, "1.0000000001", ""},
		{2, "99999999999999999999", none, "", ""},
		{3, "1795521660", none, "", ""},
		{3, "1795518060.5", none, "", date},
		{3, "999999999", none, "", ""},
		{3, "1000000000", none, "", ""},
		{3, "253402300799", none, "", ""},
		{4, "1795522500", none, "", ""},
		{4, "-900", none, "", ""},
	} {
		f.Add(seed.field, seed.value, seed.other, seed.value2, seed.date, now)
	}
	f.Fuzz(func(t *testing.T, field uint8, value string, other uint8, value2, dateValue string, nowUnix int64) {
		now := time.Unix(nowUnix, 0).UTC()
		first := rateLimitFields[int(field)%len(rateLimitFields)]
		h := http.Header{first.key: {value}}
		second := int(other) % (len(rateLimitFields) + 1)
		if second < len(rateLimitFields) {
			k := rateLimitFields[second].key
			h[k] = append(h[k], value2)
		}
		if dateValue != "" {
			h["Date"] = []string{dateValue}
		}
		resp := &http.Response{Header: h}

		d, from, ok := rateLimitWait(resp, now)
		if d < 0 || d > maxDelay {
			t.Fatalf("%v: wait %v out of [0, %v]", h, d, maxDelay)
		}
		if !ok && d != 0 {
			t.Fatalf("%v: not ok but wait %v", h, d)
		}
		d2, from2, ok2 := rateLimitWait(resp, now)
		d3, ok3 := RateLimitWait(resp, now)
		if d2 != d || from2 != from || ok2 != ok || d3 != d || ok3 != ok {
			t.Fatalf("%v: not deterministic: %v %q %v, then %v %q %v, then %v %v", h, d, from, ok, d2, from2, ok2, d3, ok3)
		}
		refusal := rateLimitRefusal(h)
		if rateLimitRefusal(h) != refusal {
			t.Fatalf("%v: rateLimitRefusal not deterministic", h)
		}

		// The first present field in the order of precedence decides.
		decider := rateLimitFields[min(int(field)%len(rateLimitFields), second)]
		if from != decider.name {
			t.Fatalf("%v: decided by %q, want %q", h, from, decider.name)
		}
		lines := h[decider.key]
		if decider.form == formStructured {
			if ok && (d%time.Second != 0 || !strings.Contains(strings.Join(lines, ","), "r=")) {
				t.Fatalf("%v: RateLimit wait %v is not a t of an exhausted policy", h, d)
			}
			if ok && !refusal {
				t.Fatalf("%v: a wait from RateLimit, but no refusal", h)
			}
			return
		}
		for _, l := range lines[1:] {
			if trimOWS(l) != trimOWS(lines[0]) {
				if ok {
					t.Fatalf("%v: disagreeing copies accepted", h)
				}
				return
			}
		}

		v := lines[0]
		grammar := rlDecimal
		if decider.form == formDelaySeconds {
			grammar = rlDigits
		}
		m := grammar.FindStringSubmatch(v)
		if (m != nil) != ok {
			t.Fatalf("%q in %s: ok %v, but the grammar says %v", v, decider.name, ok, m != nil)
		}
		if m == nil {
			return
		}
		number := m[1]
		epoch := false
		if decider.form == formDecimalEpochOrDelta {
			whole, _, _ := strings.Cut(number, ".")
			epoch = len(strings.TrimLeft(whole, "0")) >= 10 // at least 1,000,000,000
		}
		ref := now
		if epoch {
			if date, ok := parseHTTPDate(trimOWS(dateValue), now); ok {
				ref = date
			}
		}
		if want := expectedWait(t, number, epoch, ref); d != want {
			t.Fatalf("%q in %s (Date %q, now %v): wait %v, want %v", v, decider.name, dateValue, now, d, want)
		}
		// The plain rule, stated on its own: digits n under 1e9 are n
		// seconds, saturated.
		if digits := rlDigits.FindStringSubmatch(v); digits != nil && !epoch {
			n, err := strconv.ParseInt(digits[1], 10, 64)
			if err == nil && n < int64(maxDelay/time.Second) && d != time.Duration(n)*time.Second {
				t.Fatalf("%q in %s: wait %v, want %d s", v, decider.name, d, n)
			}
		}
	})
}

// BenchmarkRateLimitWait measures reading the fields of real 429 and 403
// responses, among the other header fields they come with.
func BenchmarkRateLimitWait(b *testing.B) {
	common := func(kv ...string) http.Header {
		return hdr(append([]string{
			"Content-Type", "application/json; charset=utf-8",
			"Date", rlNow.Format(http.TimeFormat),
			"Server", "nginx",
			"Cache-Control", "no-cache",
			"Content-Length", "120",
		}, kv...)...)
	}
	for _, bc := range []struct {
		name   string
		header http.Header
	}{
		{"none", common("Retry-After", "5")},
		{"IETF", common("RateLimit-Policy", `"default";q=100;w=60`, "RateLimit", `"default";r=0;t=50, "burst";r=5;t=1`)},
		{"IETFDraft06", common("RateLimit-Limit", "100", "RateLimit-Remaining", "0", "RateLimit-Reset", "50")},
		{"GitHub", common("X-RateLimit-Limit", "5000", "X-RateLimit-Remaining", "0", "X-RateLimit-Used", "5000",
			"X-RateLimit-Reset", epochIn(time.Hour), "X-RateLimit-Resource", "core")},
		{"Discord", common("X-RateLimit-Limit", "5", "X-RateLimit-Remaining", "0", "X-RateLimit-Reset", epochIn(64570*time.Millisecond),
			"X-RateLimit-Reset-After", "64.570", "X-RateLimit-Bucket", "abcd1234", "X-RateLimit-Scope", "user")},
		{"XTwitter", common("X-Rate-Limit-Limit", "15", "X-Rate-Limit-Remaining", "0", "X-Rate-Limit-Reset", epochIn(15*time.Minute))},
	} {
		b.Run(bc.name, func(b *testing.B) {
			resp := &http.Response{Header: bc.header}
			b.ReportAllocs()
			for b.Loop() {
				RateLimitWait(resp, rlNow)
			}
		})
	}
	b.Run("refusal/GitHub", func(b *testing.B) {
		h := common("X-RateLimit-Remaining", "0", "X-RateLimit-Reset", epochIn(time.Hour))
		b.ReportAllocs()
		for b.Loop() {
			rateLimitRefusal(h)
		}
	})
}
