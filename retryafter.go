package retryhttp

import (
	"math"
	"net/http"
	"time"
)

// maxDelay is the delay given to a delta-seconds value too large for a
// time.Duration: the greatest whole number of seconds a Duration holds.
// RFC 9111 §1.2.2 asks for at least 2^31 seconds in that case, so that an
// absurd value reads as "very long" (and a cap gives up) rather than wrapping
// around to "now".
const maxDelay = time.Duration(math.MaxInt64/int64(time.Second)) * time.Second

// ParseRetryAfter parses the value of a Retry-After header field as
// RFC 9110 §10.2.3 defines it and reports how long the server asked the
// client to wait, counted from now.
//
// It accepts delay-seconds (one or more ASCII digits, leading zeros allowed;
// a value too large for a time.Duration yields the largest whole number of
// seconds a Duration holds, which is more than 2^31 seconds as RFC 9111 §1.2.2
// asks) and an HTTP-date in any of the three forms RFC 9110 §5.6.7 requires
// recipients to accept: IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"), the
// obsolete RFC 850 form ("Sunday, 06-Nov-94 08:49:37 GMT") and asctime
// ("Sun Nov  6 08:49:37 1994"). Dates are in GMT only, their names are
// case-sensitive, and the RFC 850 form's two-digit year is the latest with
// those digits that is not more than 50 years after now. A date at or
// before now yields 0; one too far ahead for a time.Duration yields the same
// largest delay as an overflowing delay-seconds. Spaces and tabs around the
// value are ignored.
//
// The result is never negative. ok is false for anything else (a sign, a
// fraction, a unit, another time zone, a day that does not exist, an empty
// value), in which case the caller should fall back to its own schedule.
func ParseRetryAfter(value string, now time.Time) (d time.Duration, ok bool) {
	value = trimOWS(value)
	if value == "" {
		return 0, false
	}
	if isDigit(value[0]) {
		return parseDelaySeconds(value)
	}
	t, ok := parseHTTPDate(value, now)
	if !ok {
		return 0, false
	}
	if !t.After(now) {
		return 0, true
	}
	return min(t.Sub(now), maxDelay), true
}

// RetryAfter reads the Retry-After header of resp and reports how long the
// server asked the client to wait before trying again.
//
// An HTTP-date is measured against the response's own Date header when that
// holds a valid HTTP-date, so that a difference between the client's and the
// server's clocks does not change the wait; otherwise against now. A response
// that is nil, has no Retry-After, has one that ParseRetryAfter rejects, or
// has several Retry-After fields that disagree yields ok false.
func RetryAfter(resp *http.Response, now time.Time) (d time.Duration, ok bool) {
	if resp == nil {
		return 0, false
	}
	values := resp.Header.Values("Retry-After")
	if len(values) == 0 {
		return 0, false
	}
	// Retry-After is a singleton field (RFC 9110 §5.5): copies that disagree
	// leave the server's intent unknown, so none of them is trusted.
	for _, v := range values[1:] {
		if trimOWS(v) != trimOWS(values[0]) {
			return 0, false
		}
	}
	if date, ok := parseHTTPDate(trimOWS(resp.Header.Get("Date")), now); ok {
		now = date
	}
	return ParseRetryAfter(values[0], now)
}

// parseDelaySeconds parses 1*DIGIT, saturating at maxDelay.
func parseDelaySeconds(s string) (time.Duration, bool) {
	const maxSeconds = int64(maxDelay / time.Second)
	var n int64
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return 0, false
		}
		if n > (maxSeconds-int64(s[i]-'0'))/10 {
			// Too large to represent: keep checking the grammar, then saturate.
			for ; i < len(s); i++ {
				if !isDigit(s[i]) {
					return 0, false
				}
			}
			return maxDelay, true
		}
		n = n*10 + int64(s[i]-'0')
	}
	return time.Duration(n) * time.Second, true
}

var (
	shortDayNames = [...]string{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"}
	longDayNames  = [...]string{"Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"}
	monthNames    = [...]string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}
)

// parseHTTPDate parses an HTTP-date (RFC 9110 §5.6.7) in any of its three
// forms. now is only used to place the two-digit year of the RFC 850 form.
//
// It is written out by hand rather than with time.Parse because time.Parse
// is more lenient than the grammar (it accepts fractional seconds, any case
// in names, and a single-digit asctime day without its padding space) and
// maps two-digit years differently from the RFC.
func parseHTTPDate(s string, now time.Time) (time.Time, bool) {
	switch {
	case len(s) == len("Sun, 06 Nov 1994 08:49:37 GMT") && s[3] == ',':
		return parseIMFFixdate(s)
	case len(s) == len("Sun Nov  6 08:49:37 1994") && s[3] == ' ':
		return parseASCTime(s)
	default:
		return parseRFC850(s, now)
	}
}

// parseIMFFixdate parses "Sun, 06 Nov 1994 08:49:37 GMT".
func parseIMFFixdate(s string) (time.Time, bool) {
	if indexOf(shortDayNames[:], s[0:3]) < 0 || s[4] != ' ' || s[7] != ' ' || s[11] != ' ' ||
		s[16] != ' ' || s[25:] != " GMT" {
		return time.Time{}, false
	}
	day, ok1 := digits(s[5:7])
	month := indexOf(monthNames[:], s[8:11]) + 1
	year, ok2 := digits(s[12:16])
	if !ok1 || !ok2 || month == 0 {
		return time.Time{}, false
	}
	return makeDate(year, month, day, s[17:25])
}

// parseASCTime parses "Sun Nov  6 08:49:37 1994".
func parseASCTime(s string) (time.Time, bool) {
	if indexOf(shortDayNames[:], s[0:3]) < 0 || s[7] != ' ' || s[10] != ' ' || s[19] != ' ' {
		return time.Time{}, false
	}
	month := indexOf(monthNames[:], s[4:7]) + 1
	dayField := s[8:10]
	if dayField[0] == ' ' { // ( SP DIGIT ): a one-digit day padded with a space
		dayField = dayField[1:]
	}
	day, ok1 := digits(dayField)
	year, ok2 := digits(s[20:24])
	if !ok1 || !ok2 || month == 0 {
		return time.Time{}, false
	}
	return makeDate(year, month, day, s[11:19])
}

// parseRFC850 parses "Sunday, 06-Nov-94 08:49:37 GMT".
func parseRFC850(s string, now time.Time) (time.Time, bool) {
	comma := -1
	for i := 0; i < len(s) && i <= len("Wednesday"); i++ {
		if s[i] == ',' {
			comma = i
			break
		}
	}
	if comma < 0 || indexOf(longDayNames[:], s[:comma]) < 0 {
		return time.Time{}, false
	}
	rest := s[comma+1:] // " 06-Nov-94 08:49:37 GMT"
	if len(rest) != len(" 06-Nov-94 08:49:37 GMT") || rest[0] != ' ' || rest[3] != '-' ||
		rest[7] != '-' || rest[10] != ' ' || rest[19:] != " GMT" {
		return time.Time{}, false
	}
	day, ok1 := digits(rest[1:3])
	month := indexOf(monthNames[:], rest[4:7]) + 1
	yy, ok2 := digits(rest[8:10])
	if !ok1 || !ok2 || month == 0 {
		return time.Time{}, false
	}
	// RFC 9110 §5.6.7: a two-digit year that appears to be more than 50 years
	// in the future is the most recent past year with the same last two
	// digits. So the year is the latest with those digits that is not more
	// than 50 years ahead: of the candidates from nowYear-49 to nowYear+50,
	// only one in nowYear+50 can be too far ahead, and then the century
	// before is meant.
	nowYear := now.UTC().Year()
	year := nowYear - mod(nowYear, 100) + yy
	if year <= nowYear-50 {
		year += 100
	}
	t, ok := makeDate(year, month, day, rest[11:19])
	if ok && t.After(now.AddDate(50, 0, 0)) {
		t, ok = makeDate(year-100, month, day, rest[11:19])
	}
	return t, ok
}

// makeDate validates the calendar date and "HH:MM:SS" time and builds the
// instant in UTC.
func makeDate(year, month, day int, hms string) (time.Time, bool) {
	if len(hms) != 8 || hms[2] != ':' || hms[5] != ':' {
		return time.Time{}, false
	}
	hour, ok1 := digits(hms[0:2])
	minute, ok2 := digits(hms[3:5])
	sec, ok3 := digits(hms[6:8])
	// Second 60 is a leap second (RFC 9110 §5.6.7); time.Date carries it
	// into the next minute.
	if !ok1 || !ok2 || !ok3 || hour > 23 || minute > 59 || sec > 60 {
		return time.Time{}, false
	}
	if day < 1 || day > daysIn(time.Month(month), year) {
		return time.Time{}, false
	}
	return time.Date(year, time.Month(month), day, hour, minute, sec, 0, time.UTC), true
}

func daysIn(m time.Month, year int) int {
	// Day 0 of the next month is the last day of this one.
	return time.Date(year, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// digits parses a short, fixed-width run of ASCII digits.
func digits(s string) (int, bool) {
	if s == "" {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n, true
}

func indexOf(names []string, s string) int {
	for i, name := range names {
		if name == s {
			return i
		}
	}
	return -1
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func mod(a, b int) int { return ((a % b) + b) % b }

// trimOWS removes the optional white space (SP and HTAB, RFC 9110 §5.6.3)
// that may surround a field value.
func trimOWS(s string) string {
	for s != "" && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for s != "" && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}
