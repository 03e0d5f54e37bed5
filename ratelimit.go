package retryhttp

import (
	"math"
	"net/http"
	"slices"
	"strings"
	"time"
)

// rateLimitForm is how a rate-limit header field writes its wait.
type rateLimitForm int

const (
	// formStructured is the IETF RateLimit field: a Structured Field List.
	formStructured rateLimitForm = iota
	// formDelaySeconds is 1*DIGIT seconds from now.
	formDelaySeconds
	// formDecimalDelta is 1*DIGIT ["." 1*DIGIT] seconds from now.
	formDecimalDelta
	// formDecimalEpochOrDelta is a decimal that is a Unix time when at
	// least epochThreshold, else seconds from now.
	formDecimalEpochOrDelta
)

// epochThreshold separates the two readings of X-RateLimit-Reset: no API
// asks for a wait of 31 years, and no reset lies before September 2001.
const epochThreshold = 1_000_000_000

// rateLimitFields lists the fields RateLimitWait reads, in the order of
// precedence: by the names APIs document them under, and by the keys
// http.Header stores them under (http.CanonicalHeaderKey), which differ.
var rateLimitFields = [...]struct {
	name      string // as APIs and this package's documentation spell it
	key       string // as http.CanonicalHeaderKey spells it
	form      rateLimitForm
	remaining string // the key of the field that counts the quota left, if any
}{
	{"RateLimit", "Ratelimit", formStructured, ""},
	{"RateLimit-Reset", "Ratelimit-Reset", formDelaySeconds, keyRateLimitRemaining},
	{"X-RateLimit-Reset-After", "X-Ratelimit-Reset-After", formDecimalDelta, keyXRateLimitRemaining},
	{"X-RateLimit-Reset", "X-Ratelimit-Reset", formDecimalEpochOrDelta, keyXRateLimitRemaining},
	{"X-Rate-Limit-Reset", "X-Rate-Limit-Reset", formDecimalEpochOrDelta, keyXRateDashLimitRem},
}

// Canonical keys of the other fields read here.
const (
	keyDate                = "Date"
	keyRateLimitRemaining  = "Ratelimit-Remaining"
	keyXRateLimitRemaining = "X-Ratelimit-Remaining"
	keyXRateDashLimitRem   = "X-Rate-Limit-Remaining"
)

// RateLimitWait reads the rate-limit header fields of resp and reports how
// long the server asked the client to wait before its quota resets. ok is
// false when they ask for no wait, and d is then 0; d is never negative.
//
// It reads the first of these fields present, and only that one:
// RateLimit (IETF draft -08 and later: the longest "t" among the policies
// with r=0), RateLimit-Reset (the drafts up to -06), X-RateLimit-Reset-After
// (Discord), X-RateLimit-Reset (GitHub, Discord, many gateways) and
// X-Rate-Limit-Reset (X). A reset is a wait only while its quota is spent:
// a remaining count above zero, which GitHub sends with its reset on every
// response, means no wait. A Unix time is measured against the response's
// Date header when that is valid, and otherwise against now. A malformed
// field means no wait; a wait is never shorter than asked, and one too
// large for a Duration saturates rather than wraps.
//
// The Transport reads these fields only when a response's Retry-After is
// absent or invalid: Retry-After takes precedence. The exact rules are in
// docs/retry-after-and-rate-limits.md
// (https://github.com/b4dedce7/retryhttp/blob/main/docs/retry-after-and-rate-limits.md).
func RateLimitWait(resp *http.Response, now time.Time) (d time.Duration, ok bool) {
	d, _, ok = rateLimitWait(resp, now)
	return d, ok
}

// rateLimitWait is RateLimitWait that also names the field that decided
// the result, as spelt in RateLimitWait's table: when ok, the field the
// wait came from; when not ok, the first present field, which is
// malformed or asks for no wait, or "" when none of them is present.
func rateLimitWait(resp *http.Response, now time.Time) (d time.Duration, header string, ok bool) {
	if resp == nil {
		return 0, "", false
	}
	h := canonicalRateLimitHeader(resp.Header)
	for _, f := range rateLimitFields {
		values := h[f.key]
		if len(values) == 0 {
			continue
		}
		switch {
		case f.form == formStructured:
			d, ok = structuredRateLimitWait(values)
		case remainingQuota(h[f.remaining]) == quotaLeft:
			// GitHub and Discord send the window's reset on every
			// response: with quota left, it asks for no wait.
			d, ok = 0, false
		default:
			d, ok = resetWait(values, f.form, h, now)
		}
		if !ok {
			return 0, f.name, false
		}
		return d, f.name, true
	}
	return 0, "", false
}

// rateLimitRefusal reports whether h marks its response as refused for
// being over a rate limit: an X-RateLimit-Remaining or
// X-Rate-Limit-Remaining of zero, or an IETF RateLimit field with an
// exhausted policy (r=0, with or without "t").
//
// A remaining count is zero when it is one or more '0' digits, optionally
// followed by '.' and one or more '0' digits ("0", "00", "0.0"), with
// spaces and tabs around it ignored: the grammar of the X- reset fields,
// valued zero. Anything else, such as "-0", "0.", "" or "none", is not
// zero, nor are copies of the field that disagree: a 403 is taken for a
// rate limit only on a clear statement. A RateLimit field that is
// malformed, in any way RateLimitWait rejects, marks nothing. Whether a
// Retry-After is present is for the caller to check.
func rateLimitRefusal(h http.Header) bool {
	h = canonicalRateLimitHeader(h)
	for _, key := range [...]string{keyXRateLimitRemaining, keyXRateDashLimitRem} {
		if remainingQuota(h[key]) == quotaSpent {
			return true
		}
	}
	if values := h[rateLimitFields[0].key]; len(values) > 0 {
		if items, ok := parseRateLimitField(values); ok && items.exhausted {
			return true
		}
	}
	return false
}

// canonicalRateLimitHeader returns h itself when every field read here is
// stored under its canonical key, as net/http always stores them, and
// otherwise a copy of those fields gathered under their canonical keys,
// so that a header built by hand as http.Header{"X-RateLimit-Reset": ...}
// reads the same as one built with Set.
func canonicalRateLimitHeader(h http.Header) http.Header {
	strays := false
	for k := range h {
		if rateLimitKeyKind(k) == keyStray {
			strays = true
			break
		}
	}
	if !strays {
		return h // the common case: no allocation
	}
	var keys []string
	for k := range h {
		if rateLimitKeyKind(k) != keyUnrelated {
			keys = append(keys, k)
		}
	}
	// Keys in one order, so that the values of one field come in the same
	// order on every call, and the result stays deterministic.
	slices.Sort(keys)
	out := http.Header{}
	for _, k := range keys {
		ck := http.CanonicalHeaderKey(k)
		out[ck] = append(out[ck], h[k]...)
	}
	return out
}

// keyKind is how a header key relates to the fields read here.
type keyKind int

const (
	keyUnrelated keyKind = iota
	keyCanonical         // one of the keys read here, spelt canonically
	keyStray             // one of the keys read here, in another case
)

// rateLimitKeys holds the keys of the fields read here by their length,
// which differs for each: the length of a key picks the one it may match,
// and most other keys are passed over at once.
var rateLimitKeys = func() (byLen [len("X-Ratelimit-Reset-After") + 1]string) {
	keys := []string{keyDate, keyRateLimitRemaining, keyXRateLimitRemaining, keyXRateDashLimitRem}
	for _, f := range rateLimitFields {
		keys = append(keys, f.key)
	}
	for _, key := range keys {
		if byLen[len(key)] != "" {
			panic("retryhttp: two rate-limit keys of one length: " + key + ", " + byLen[len(key)])
		}
		byLen[len(key)] = key
	}
	return byLen
}()

// rateLimitKeyKind tells whether k is the key of a field read here.
func rateLimitKeyKind(k string) keyKind {
	if len(k) >= len(rateLimitKeys) || rateLimitKeys[len(k)] == "" {
		return keyUnrelated
	}
	switch key := rateLimitKeys[len(k)]; {
	case k == key:
		return keyCanonical
	case strings.EqualFold(k, key):
		return keyStray
	}
	return keyUnrelated
}

// quota is what a remaining-quota field (X-RateLimit-Remaining and its
// kin) says.
type quota int

const (
	quotaUnknown quota = iota // absent, malformed, or copies that disagree
	quotaSpent                // zero: 1*"0" ["." 1*"0"]
	quotaLeft                 // a number above zero
)

// remainingQuota reads a remaining-quota field, with the grammar of the X-
// reset fields: a rate limit is taken as spent, or a reset as no wait, only
// on a clear statement.
func remainingQuota(values []string) quota {
	v, ok := singleValue(values)
	if !ok {
		return quotaUnknown
	}
	n, ok := parseDecimalSeconds(v)
	switch {
	case !ok:
		return quotaUnknown
	case n.saturated || n.sec > 0 || n.nsec > 0:
		return quotaLeft
	}
	return quotaSpent
}

// singleValue returns the value of a singleton field trimmed of OWS, or
// false when the field is absent or its copies disagree.
func singleValue(values []string) (string, bool) {
	if len(values) == 0 {
		return "", false
	}
	v := trimOWS(values[0])
	for _, other := range values[1:] {
		if trimOWS(other) != v {
			return "", false
		}
	}
	return v, true
}

// resetWait reads one of the single-number fields.
func resetWait(values []string, form rateLimitForm, h http.Header, now time.Time) (time.Duration, bool) {
	// These fields are singletons, like Retry-After: copies that disagree
	// leave the server's intent unknown, so none of them is trusted.
	v, ok := singleValue(values)
	if !ok {
		return 0, false
	}
	if form == formDelaySeconds {
		if v == "" {
			return 0, false
		}
		return parseDelaySeconds(v)
	}
	n, ok := parseDecimalSeconds(v)
	if !ok {
		return 0, false
	}
	if form == formDecimalDelta || (!n.saturated && n.sec < epochThreshold) {
		return n.delay(), true
	}
	ref := now
	if date, ok := parseHTTPDate(trimOWS(h.Get(keyDate)), now); ok {
		ref = date
	}
	return n.until(ref), true
}

// decimalSeconds is a non-negative number of seconds, split so that the
// integer part stays exact at any size a field can hold: float64 would
// lose the nanoseconds of a Unix time.
type decimalSeconds struct {
	sec       int64 // whole seconds
	nsec      int64 // fraction in nanoseconds, rounded up; may be 1e9
	saturated bool  // too large for an int64 of seconds; sec and nsec are then meaningless
}

// parseDecimalSeconds parses 1*DIGIT ["." 1*DIGIT].
func parseDecimalSeconds(s string) (decimalSeconds, bool) {
	var n decimalSeconds
	i := 0
	for ; i < len(s) && isDigit(s[i]); i++ {
		if n.saturated {
			continue // keep checking the grammar
		}
		digit := int64(s[i] - '0')
		if n.sec > (math.MaxInt64-digit)/10 {
			n.saturated = true
			continue
		}
		n.sec = n.sec*10 + digit
	}
	if i == 0 {
		return decimalSeconds{}, false // empty, sign, leading '.', letter
	}
	if i == len(s) {
		return n, true
	}
	if s[i] != '.' || i+1 == len(s) {
		return decimalSeconds{}, false // junk or a trailing '.'
	}
	frac := s[i+1:]
	scale := int64(1e8)
	roundUp := false
	for j := 0; j < len(frac); j++ {
		if !isDigit(frac[j]) {
			return decimalSeconds{}, false
		}
		digit := int64(frac[j] - '0')
		if j < 9 {
			n.nsec += digit * scale
			scale /= 10
		} else if digit != 0 {
			roundUp = true // below a nanosecond: round up, never down
		}
	}
	if roundUp {
		n.nsec++
	}
	return n, true
}

// delay returns n as a Duration, saturating at maxDelay.
func (n decimalSeconds) delay() time.Duration {
	const maxSeconds = int64(maxDelay / time.Second)
	if n.saturated || n.sec > maxSeconds || (n.sec == maxSeconds && n.nsec > 0) {
		return maxDelay
	}
	return time.Duration(n.sec)*time.Second + time.Duration(n.nsec)
}

// until returns how long from ref until the Unix time n: 0 if n is at or
// before ref, maxDelay if it is further away than that. It works on
// seconds and nanoseconds apart, as time.Unix would overflow on some of
// the seconds a field can hold.
func (n decimalSeconds) until(ref time.Time) time.Duration {
	const maxSeconds = int64(maxDelay / time.Second)
	if n.saturated {
		return maxDelay
	}
	refSec, refNsec := ref.Unix(), int64(ref.Nanosecond())
	diff := n.sec - refSec
	if refSec < 0 && diff < n.sec {
		return maxDelay // overflowed: n.sec is far after a ref long before 1970
	}
	// The wait is diff seconds plus (n.nsec - refNsec) nanoseconds, the
	// latter in (-1 s, 1 s].
	switch {
	case diff < 0:
		return 0
	case diff > maxSeconds:
		return maxDelay
	}
	d := time.Duration(diff) * time.Second
	frac := time.Duration(n.nsec - refNsec)
	if frac > 0 && d > maxDelay-frac {
		return maxDelay
	}
	return max(d+frac, 0)
}

// structuredRateLimitWait reads the IETF RateLimit field lines.
func structuredRateLimitWait(values []string) (time.Duration, bool) {
	items, ok := parseRateLimitField(values)
	if !ok || !items.resetKnown {
		return 0, false
	}
	return items.reset, true
}

// rateLimitItems is what the RateLimit field says about its policies.
type rateLimitItems struct {
	exhausted  bool          // some policy has r=0
	resetKnown bool          // some policy with r=0 has a "t"
	reset      time.Duration // the longest such "t", saturated
}

// parseRateLimitField parses the lines of a RateLimit field as one
// Structured Field List, as RFC 9651 §4.2 combines them: joined by ", ".
func parseRateLimitField(values []string) (rateLimitItems, bool) {
	s := trimOWS(values[0])
	if len(values) > 1 {
		// Rare; joining allocates, but parsing the lines one by one would
		// not be the same: a String may run from one line into the next.
		trimmed := make([]string, len(values))
		for i, v := range values {
			trimmed[i] = trimOWS(v)
		}
		s = strings.Join(trimmed, ", ")
	}
	p := sfParser{s: s}
	return p.rateLimitList()
}
