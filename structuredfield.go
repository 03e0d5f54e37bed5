package retryhttp

import (
	"strings"
	"time"
	"unicode/utf8"
)

// sfParser parses Structured Field Values (RFC 9651 §4.2) from s, as far
// as the RateLimit field needs: a List whose members are Items with a
// String or Token bare item, and parameters of any type. It does not
// allocate, except to check a rare Display String.
type sfParser struct {
	s string
	i int
}

func (p *sfParser) done() bool { return p.i >= len(p.s) }

func (p *sfParser) peek() byte { return p.s[p.i] }

func (p *sfParser) skipOWS() {
	for !p.done() && (p.peek() == ' ' || p.peek() == '\t') {
		p.i++
	}
}

func (p *sfParser) skipSP() {
	for !p.done() && p.peek() == ' ' {
		p.i++
	}
}

// rateLimitList parses the List (RFC 9651 §4.2.1) of service limit items.
func (p *sfParser) rateLimitList() (rateLimitItems, bool) {
	var items rateLimitItems
	for !p.done() {
		if !p.rateLimitItem(&items) {
			return rateLimitItems{}, false
		}
		p.skipOWS()
		if p.done() {
			break
		}
		if p.peek() != ',' {
			return rateLimitItems{}, false
		}
		p.i++
		p.skipOWS()
		if p.done() {
			return rateLimitItems{}, false // a trailing comma
		}
	}
	return items, true
}

// rateLimitItem parses one service limit item and adds it to items.
func (p *sfParser) rateLimitItem(items *rateLimitItems) bool {
	// The bare item names the policy: a String, or a Token. Other types,
	// and Inner Lists, are valid Structured Fields but not a RateLimit.
	switch c := p.peek(); {
	case c == '"':
		if !p.sfString() {
			return false
		}
	case isAlpha(c) || c == '*':
		p.token()
	default:
		return false
	}
	var (
		r, t       int64
		hasR, hasT bool
		rInt, tInt bool
	)
	for !p.done() && p.peek() == ';' {
		p.i++
		p.skipSP()
		key, ok := p.key()
		if !ok {
			return false
		}
		var (
			n     int64
			isInt bool
		)
		if !p.done() && p.peek() == '=' {
			p.i++
			if n, isInt, ok = p.bareItem(); !ok {
				return false
			}
		}
		// A later parameter of the same name overrides an earlier one
		// (RFC 9651 §4.2.3.2), so only the last value must be an Integer:
		// it is checked after the last parameter. A Boolean "r" (no value)
		// is not an Integer.
		switch key {
		case "r":
			r, hasR, rInt = n, true, isInt
		case "t":
			t, hasT, tInt = n, true, isInt
		}
	}
	if !hasR {
		return false // "r" is required
	}
	if !rInt || hasT && !tInt {
		return false
	}
	if r == 0 {
		items.exhausted = true
		if hasT {
			// t has at most 15 digits, so t seconds fit in an int64 of
			// seconds, but not always of nanoseconds.
			reset := maxDelay
			if t <= int64(maxDelay/time.Second) {
				reset = time.Duration(t) * time.Second
			}
			if !items.resetKnown || reset > items.reset {
				items.reset = reset
			}
			items.resetKnown = true
		}
	}
	return true
}

// key parses a parameter key (RFC 9651 §4.2.3.3).
func (p *sfParser) key() (string, bool) {
	start := p.i
	if p.done() || !(isLCAlpha(p.peek()) || p.peek() == '*') {
		return "", false
	}
	for p.i++; !p.done(); p.i++ {
		c := p.peek()
		if !isLCAlpha(c) && !isDigit(c) && c != '_' && c != '-' && c != '.' && c != '*' {
			break
		}
	}
	return p.s[start:p.i], true
}

// bareItem parses a bare item of any type (RFC 9651 §4.2.3.1) and returns
// its value when it is a non-negative Integer written without a sign,
// which is all the RateLimit parameters read here may be.
func (p *sfParser) bareItem() (n int64, nonNegativeInt bool, ok bool) {
	if p.done() {
		return 0, false, false
	}
	switch c := p.peek(); {
	case c == '-' || isDigit(c):
		return p.number()
	case c == '"':
		return 0, false, p.sfString()
	case isAlpha(c) || c == '*':
		p.token()
		return 0, false, true
	case c == ':':
		return 0, false, p.byteSequence()
	case c == '?':
		return 0, false, p.boolean()
	case c == '@':
		p.i++
		start := p.i
		if p.done() {
			return 0, false, false
		}
		if _, _, ok := p.number(); !ok || strings.IndexByte(p.s[start:p.i], '.') >= 0 {
			return 0, false, false // a Date is an Integer
		}
		return 0, false, true
	case c == '%':
		return 0, false, p.displayString()
	}
	return 0, false, false
}

// number parses an Integer or Decimal (RFC 9651 §4.2.4). It reports a
// value only for an Integer without a minus sign: a "-0" is an Integer,
// but RateLimitWait takes a sign as malformed, as it does elsewhere.
func (p *sfParser) number() (n int64, unsignedInt bool, ok bool) {
	negative := false
	if p.peek() == '-' {
		negative = true
		p.i++
	}
	if p.done() || !isDigit(p.peek()) {
		return 0, false, false
	}
	start, dot := p.i, -1
digits:
	for ; !p.done(); p.i++ {
		switch c := p.peek(); {
		case isDigit(c):
		case c == '.' && dot < 0:
			if p.i-start > 12 {
				return 0, false, false
			}
			dot = p.i
		default:
			break digits
		}
		if length := p.i - start + 1; dot < 0 && length > 15 || dot >= 0 && length > 16 {
			return 0, false, false
		}
	}
	if dot >= 0 {
		if frac := p.i - dot - 1; frac == 0 || frac > 3 {
			return 0, false, false
		}
		return 0, false, true
	}
	for _, c := range []byte(p.s[start:p.i]) {
		n = n*10 + int64(c-'0') // at most 15 digits: no overflow
	}
	return n, !negative, true
}

// sfString parses a String (RFC 9651 §4.2.5).
func (p *sfParser) sfString() bool {
	for p.i++; !p.done(); p.i++ {
		switch c := p.peek(); {
		case c == '\\':
			p.i++
			if p.done() || (p.peek() != '"' && p.peek() != '\\') {
				return false
			}
		case c == '"':
			p.i++
			return true
		case c < 0x20 || c > 0x7e:
			return false
		}
	}
	return false // no closing quote
}

// token parses a Token (RFC 9651 §4.2.6); the caller has checked its
// first character.
func (p *sfParser) token() {
	for p.i++; !p.done() && (isTChar(p.peek()) || p.peek() == ':' || p.peek() == '/'); p.i++ {
	}
}

// byteSequence parses a Byte Sequence (RFC 9651 §4.2.7), whose base64
// must decode. As the RFC recommends, it does not insist on "=" padding or
// zero pad bits.
func (p *sfParser) byteSequence() bool {
	start := p.i + 1
	for p.i++; !p.done(); p.i++ {
		switch c := p.peek(); {
		case c == ':':
			content := p.s[start:p.i]
			p.i++
			return decodableBase64(content)
		case !isAlpha(c) && !isDigit(c) && c != '+' && c != '/' && c != '=':
			return false
		}
	}
	return false
}

// decodableBase64 reports whether s, of base64 characters and "=", is
// base64 (RFC 4648 §4) that decodes once its padding is synthesized: "="
// only at its end, as many as its last group lacks or none, and never after
// a group's lone first character, which holds too few bits for a byte.
func decodableBase64(s string) bool {
	data := strings.TrimRight(s, "=")
	if strings.IndexByte(data, '=') >= 0 {
		return false // padding at the start or in the middle
	}
	pad := len(s) - len(data)
	switch len(data) % 4 {
	case 2:
		return pad == 0 || pad == 2
	case 3:
		return pad == 0 || pad == 1
	case 0:
		return pad == 0
	}
	return false
}

// boolean parses a Boolean (RFC 9651 §4.2.8).
func (p *sfParser) boolean() bool {
	if p.i+1 >= len(p.s) || (p.s[p.i+1] != '0' && p.s[p.i+1] != '1') {
		return false
	}
	p.i += 2
	return true
}

// displayString parses a Display String (RFC 9651 §4.2.10): %"..." with
// lower-case %xx escapes that decode to valid UTF-8.
func (p *sfParser) displayString() bool {
	if p.i+1 >= len(p.s) || p.s[p.i+1] != '"' {
		return false
	}
	var decoded []byte
	for p.i += 2; !p.done(); p.i++ {
		switch c := p.peek(); {
		case c == '"':
			p.i++
			return utf8.Valid(decoded)
		case c == '%':
			if p.i+2 >= len(p.s) {
				return false
			}
			hi, ok1 := lowerHex(p.s[p.i+1])
			lo, ok2 := lowerHex(p.s[p.i+2])
			if !ok1 || !ok2 {
				return false
			}
			decoded = append(decoded, hi<<4|lo)
			p.i += 2
		case c < 0x20 || c > 0x7e:
			return false
		default:
			decoded = append(decoded, c)
		}
	}
	return false
}

func lowerHex(c byte) (byte, bool) {
	switch {
	case isDigit(c):
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

func isAlpha(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

func isLCAlpha(c byte) bool { return 'a' <= c && c <= 'z' }

// isTChar reports whether c is a tchar (RFC 9110 §5.6.2).
func isTChar(c byte) bool {
	if isAlpha(c) || isDigit(c) {
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
