package retryhttp

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzStructuredField fuzzes the structured-field parser (structuredfield.go)
// on its own. The input is a field's lines, one per "\n". It checks that:
//
//   - no input makes it panic;
//   - whatever parses as an RFC 9651 List of Items (sfParseList: the List
//     and parameter grammar, with the parser's own bare items and keys)
//     round-trips: serialised canonically (sfSerializeList, RFC 9651 §4.1)
//     it parses again to the same value, and serialises to the same text;
//   - the RateLimit field's parser (parseRateLimitField) accepts exactly
//     those Lists whose every member is a String or Token with a "r" that is
//     an unsigned Integer and a "t", if any, likewise, and reads from them
//     what that value says (sfRateLimitOf); and it reads the same from the
//     canonical text.
//
// The parser has no Inner List or Dictionary (a RateLimit field has
// neither), so neither is fuzzed. The seeds are every raw and canonical
// value of the HTTP WG's suite in testdata/sf-tests, an Item case also as
// a parameter's value.
func FuzzStructuredField(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "sf-tests", "*.json"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no structured-field suite in testdata/sf-tests: %v", err)
	}
	seen := map[string]bool{}
	add := func(s string) {
		if !seen[s] {
			seen[s] = true
			f.Add(s)
		}
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		var cases []struct {
			Raw        []string `json:"raw"`
			Canonical  []string `json:"canonical"`
			HeaderType string   `json:"header_type"`
		}
		if err := json.Unmarshal(data, &cases); err != nil {
			f.Fatalf("%s: %v", file, err)
		}
		for _, tc := range cases {
			for _, lines := range [][]string{tc.Raw, tc.Canonical} {
				if len(lines) == 0 {
					continue
				}
				add(strings.Join(lines, "\n"))
				if tc.HeaderType == "item" && len(lines) == 1 {
					add(`"sf";r=0;t=7;x=` + strings.Trim(lines[0], " "))
				}
			}
		}
	}
	for _, s := range []string{
		`"default";r=0;t=50, "burst";r=5;t=1`, `"a";r=-0;t=5`, `"a";r=0;t=-0`, `a;r=0;t=999999999999999`,
		`"a";r=0;t=5;r=1`, `"a";r=0;t`, `"a";r=0;t=3600;x=:YQ:`, `"a";r=0;t=5.0`, "\"a\";r=0;t=5\n\t\"b\";r=0;t=9",
		`x;r=1;q=%"caf%c3%a9";d=@-1;b=:iZ==:;f=?0;n=-1.250;s="\"\\"`,
	} {
		add(s)
	}
	f.Fuzz(func(t *testing.T, value string) {
		lines := strings.Split(value, "\n")
		items, ok := parseRateLimitField(lines)
		// RFC 9651 §4.2 combines a field's lines with ", ", as
		// parseRateLimitField does, once each is stripped of its OWS.
		trimmed := make([]string, len(lines))
		for i, l := range lines {
			trimmed[i] = trimOWS(l)
		}
		field := strings.Join(trimmed, ", ")
		list, listOK := sfParseList(t, field)
		if !listOK {
			if ok {
				t.Fatalf("%q: a RateLimit field (%+v), but no List", value, items)
			}
			return
		}
		canonical := sfSerializeList(list)
		want, wantOK := sfRateLimitOf(list)
		if ok != wantOK || items != want {
			t.Fatalf("%q: RateLimit %+v %v, but its List %q says %+v %v", value, items, ok, canonical, want, wantOK)
		}

		again, againOK := sfParseList(t, canonical)
		if !againOK {
			t.Fatalf("%q: its List %+v serialises to %q, which does not parse", value, list, canonical)
		}
		if !reflect.DeepEqual(sfWithoutRaw(again), sfWithoutRaw(list)) {
			t.Fatalf("%q: its List %+v serialises to %q, which parses to %+v", value, list, canonical, again)
		}
		if twice := sfSerializeList(again); twice != canonical {
			t.Fatalf("%q: canonical text %q serialises to %q", value, canonical, twice)
		}
		items2, ok2 := parseRateLimitField([]string{canonical})
		want2, wantOK2 := sfRateLimitOf(again)
		if ok2 != wantOK2 || items2 != want2 {
			t.Fatalf("%q: canonical %q: RateLimit %+v %v, but its List says %+v %v", value, canonical, items2, ok2, want2, wantOK2)
		}
	})
}

type sfKind uint8

const (
	sfInteger sfKind = iota + 1
	sfDecimal
	sfString
	sfToken
	sfBytes
	sfBoolean
	sfDate
	sfDisplay
)

// sfBare is a bare item's value (RFC 9651 §3.3).
type sfBare struct {
	kind sfKind
	n    int64  // an Integer or Date; a Decimal in thousandths; a Boolean as 0 or 1
	s    string // a String, Token or Display String; a Byte Sequence's bytes
	raw  string // the text it was parsed from, not part of the value
}

type sfParam struct {
	key   string
	value sfBare
}

// sfItem is a List member that is an Item (RFC 9651 §3.3).
type sfItem struct {
	value  sfBare
	params []sfParam
}

// sfParseList parses s, already stripped of leading and trailing spaces, as
// an RFC 9651 §4.2.1 List of Items, with sfParser's bare items and keys.
func sfParseList(t testing.TB, s string) ([]sfItem, bool) {
	t.Helper()
	p := sfParser{s: s}
	var list []sfItem
	for !p.done() {
		value, ok := sfParseBare(t, &p)
		if !ok {
			return nil, false
		}
		item := sfItem{value: value}
		for !p.done() && p.peek() == ';' { // §4.2.3.2
			p.i++
			p.skipSP()
			key, ok := p.key()
			if !ok {
				return nil, false
			}
			v := sfBare{kind: sfBoolean, n: 1}
			if !p.done() && p.peek() == '=' {
				p.i++
				if v, ok = sfParseBare(t, &p); !ok {
					return nil, false
				}
			}
			i := 0
			for i < len(item.params) && item.params[i].key != key {
				i++
			}
			if i == len(item.params) {
				item.params = append(item.params, sfParam{key: key})
			}
			item.params[i].value = v // a later one overrides, in place
		}
		list = append(list, item)
		p.skipOWS()
		if p.done() {
			break
		}
		if p.peek() != ',' {
			return nil, false
		}
		p.i++
		p.skipOWS()
		if p.done() {
			return nil, false
		}
	}
	return list, true
}

// sfParseBare lets sfParser.bareItem find a bare item, and decodes the
// text it took, which must decode as its type: if not, t fails.
func sfParseBare(t testing.TB, p *sfParser) (sfBare, bool) {
	t.Helper()
	start := p.i
	if _, _, ok := p.bareItem(); !ok {
		return sfBare{}, false
	}
	raw := p.s[start:p.i]
	b := sfBare{raw: raw}
	switch c := raw[0]; {
	case c == '-' || isDigit(c):
		b.kind, b.n = sfNumber(t, raw)
	case c == '"':
		b.kind = sfString
		var sb strings.Builder
		for i := 1; i < len(raw)-1; i++ {
			if raw[i] == '\\' {
				i++
			}
			sb.WriteByte(raw[i])
		}
		b.s = sb.String()
	case c == ':':
		b.kind = sfBytes
		decoded, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(raw[1:len(raw)-1], "="))
		if err != nil {
			t.Fatalf("accepted Byte Sequence %q does not decode: %v", raw, err)
		}
		b.s = string(decoded)
	case c == '?':
		b.kind, b.n = sfBoolean, int64(raw[1]-'0')
	case c == '@':
		b.kind = sfDate
		var k sfKind
		if k, b.n = sfNumber(t, raw[1:]); k != sfInteger {
			t.Fatalf("accepted Date %q is not an Integer", raw)
		}
	case c == '%':
		b.kind = sfDisplay
		var decoded []byte
		for i := 2; i < len(raw)-1; i++ {
			if raw[i] == '%' {
				n, err := strconv.ParseUint(raw[i+1:i+3], 16, 8)
				if err != nil {
					t.Fatalf("accepted Display String %q has a bad escape", raw)
				}
				decoded = append(decoded, byte(n))
				i += 2
				continue
			}
			decoded = append(decoded, raw[i])
		}
		if !utf8.Valid(decoded) {
			t.Fatalf("accepted Display String %q is not UTF-8", raw)
		}
		b.s = string(decoded)
	default:
		b.kind, b.s = sfToken, raw
	}
	return b, true
}

// sfNumber decodes an Integer, or a Decimal into thousandths.
func sfNumber(t testing.TB, raw string) (sfKind, int64) {
	t.Helper()
	whole, frac, isDecimal := strings.Cut(raw, ".")
	n, err := strconv.ParseInt(whole, 10, 64)
	if err != nil || n > 999_999_999_999_999 || n < -999_999_999_999_999 {
		t.Fatalf("accepted number %q is out of range", raw)
	}
	if !isDecimal {
		return sfInteger, n
	}
	if len(frac) < 1 || len(frac) > 3 || n > 999_999_999_999 || n < -999_999_999_999 {
		t.Fatalf("accepted Decimal %q is out of range", raw)
	}
	f, err := strconv.ParseInt((frac + "00")[:3], 10, 64)
	if err != nil || f < 0 {
		t.Fatalf("accepted Decimal %q has a bad fraction", raw)
	}
	n = n*1000 + f
	if strings.HasPrefix(raw, "-") {
		n = n - 2*f // the fraction has the whole part's sign
	}
	return sfDecimal, n
}

// sfSerializeList serialises a List of Items as RFC 9651 §4.1.1 does.
func sfSerializeList(list []sfItem) string {
	var b strings.Builder
	for i, item := range list {
		if i > 0 {
			b.WriteString(", ")
		}
		sfSerializeBare(&b, item.value)
		for _, p := range item.params { // §4.1.1.2
			b.WriteString(";" + p.key)
			if p.value.kind != sfBoolean || p.value.n != 1 {
				b.WriteByte('=')
				sfSerializeBare(&b, p.value)
			}
		}
	}
	return b.String()
}

// sfSerializeBare serialises a bare item (RFC 9651 §4.1.3).
func sfSerializeBare(b *strings.Builder, v sfBare) {
	switch v.kind {
	case sfInteger: // §4.1.4
		b.WriteString(strconv.FormatInt(v.n, 10))
	case sfDecimal: // §4.1.5: at least one fraction digit, no trailing zeros
		n := v.n
		if n < 0 {
			b.WriteByte('-')
			n = -n
		}
		frac := strings.TrimRight(strconv.FormatInt(1000+n%1000, 10)[1:], "0")
		if frac == "" {
			frac = "0"
		}
		b.WriteString(strconv.FormatInt(n/1000, 10) + "." + frac)
	case sfString: // §4.1.6
		b.WriteByte('"')
		for i := 0; i < len(v.s); i++ {
			if v.s[i] == '"' || v.s[i] == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(v.s[i])
		}
		b.WriteByte('"')
	case sfToken: // §4.1.7
		b.WriteString(v.s)
	case sfBytes: // §4.1.8
		b.WriteString(":" + base64.StdEncoding.EncodeToString([]byte(v.s)) + ":")
	case sfBoolean: // §4.1.9
		b.WriteString("?" + strconv.FormatInt(v.n, 10))
	case sfDate: // §4.1.10
		b.WriteString("@" + strconv.FormatInt(v.n, 10))
	case sfDisplay: // §4.1.11
		b.WriteString(`%"`)
		for i := 0; i < len(v.s); i++ {
			if c := v.s[i]; c == '%' || c == '"' || c < 0x20 || c > 0x7e {
				b.WriteString("%" + strconv.FormatUint(uint64(c)>>4, 16) + strconv.FormatUint(uint64(c)&0xf, 16))
			} else {
				b.WriteByte(c)
			}
		}
		b.WriteByte('"')
	default:
		panic("no bare item kind " + strconv.Itoa(int(v.kind)))
	}
}

// sfWithoutRaw is list without the texts its values were parsed from.
func sfWithoutRaw(list []sfItem) []sfItem {
	out := make([]sfItem, len(list))
	for i, item := range list {
		item.value.raw = ""
		params := make([]sfParam, len(item.params))
		for j, p := range item.params {
			p.value.raw = ""
			params[j] = p
		}
		item.params = params
		out[i] = item
	}
	return out
}

// sfRateLimitOf is what a List says as a RateLimit field: valid when every
// member is named by a String or Token and has an "r" that is an Integer
// written without a sign, and a "t", if any, likewise; then exhausted when
// some member has r=0, with the longest t of those members, saturated.
func sfRateLimitOf(list []sfItem) (rateLimitItems, bool) {
	var items rateLimitItems
	for _, item := range list {
		if item.value.kind != sfString && item.value.kind != sfToken {
			return rateLimitItems{}, false
		}
		var r, t *sfBare
		for i, p := range item.params {
			switch p.key {
			case "r":
				r = &item.params[i].value
			case "t":
				t = &item.params[i].value
			}
		}
		unsigned := func(b *sfBare) bool { return b.kind == sfInteger && b.raw[0] != '-' }
		if r == nil || !unsigned(r) || t != nil && !unsigned(t) {
			return rateLimitItems{}, false
		}
		if r.n != 0 {
			continue
		}
		items.exhausted = true
		if t != nil {
			reset := maxDelay
			if t.n <= int64(maxDelay/time.Second) {
				reset = time.Duration(t.n) * time.Second
			}
			items.reset = max(items.reset, reset)
			items.resetKnown = true
		}
	}
	return items, true
}
