package retryhttp

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sfTestCase is one case of the HTTP working group's structured-field test
// suite (testdata/sf-tests; see its README.md).
type sfTestCase struct {
	Name       string          `json:"name"`
	Raw        []string        `json:"raw"`
	HeaderType string          `json:"header_type"`
	Expected   json.RawMessage `json:"expected"`
	MustFail   bool            `json:"must_fail"`
	CanFail    bool            `json:"can_fail"`
}

// The RateLimit field's parser against the HTTP WG's suite: every case that
// can stand in a RateLimit field, list cases as the field itself and item
// cases as the value of a parameter of a policy that is exhausted
// (`"sf";r=0;t=7;x=<item>`). A case that must fail must make the field
// invalid; a valid case must leave it as valid as its expected structure
// makes a RateLimit field (a valid List need not be a valid RateLimit);
// a case that may fail either way (can_fail: a SHOULD, such as a Byte
// Sequence without padding) is run, for it must not break the parser,
// but not judged.
func TestHTTPWGStructuredFieldSuite(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "sf-tests", "*.json"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	var run, judged, skipped int
	for _, file := range files {
		data, err := os.ReadFile(file)
		require.NoError(t, err)
		var cases []sfTestCase
		require.NoError(t, json.Unmarshal(data, &cases), file)
		for _, tc := range cases {
			name := filepath.Base(file) + "/" + tc.Name
			var field []string
			switch {
			case tc.Raw == nil:
				// A serialisation case has no text to parse.
				skipped++
				continue
			case tc.HeaderType == "dictionary":
				// The RateLimit field is a List: a Dictionary cannot stand
				// in it, and the parser has no Dictionary to test.
				skipped++
				continue
			case tc.HeaderType == "item" && len(tc.Raw) != 1:
				// An Item sent as several field lines is combined into a
				// List, which a parameter's value cannot be.
				skipped++
				continue
			case tc.HeaderType == "item":
				// RFC 9651 §4.2 discards the leading and trailing spaces of
				// a field value, which a parameter's value has none of.
				field = []string{`"sf";r=0;t=7;x=` + strings.Trim(tc.Raw[0], " ")}
			case tc.HeaderType == "list":
				field = tc.Raw
			default:
				t.Fatalf("%s: unknown header_type %q", name, tc.HeaderType)
			}
			items, ok := parseRateLimitField(field)
			run++
			if tc.CanFail {
				continue
			}
			judged++
			if tc.MustFail {
				assert.False(t, ok, "%s: %q must fail", name, field)
				continue
			}
			// A valid item makes the field one exhausted policy with t=7.
			want, wantOK := rateLimitItems{exhausted: true, resetKnown: true, reset: 7 * time.Second}, true
			if tc.HeaderType == "list" {
				want, wantOK = sfExpectedRateLimit(t, name, tc)
			}
			if assert.Equal(t, wantOK, ok, "%s: %q", name, field) && ok {
				assert.Equal(t, want, items, "%s: %q", name, field)
			}
		}
	}
	t.Logf("%d cases run (%d judged, %d may fail either way), %d skipped", run, judged, run-judged, skipped)
	assert.GreaterOrEqual(t, run, 399, "every vendored case that applies ran")
}

// sfExpectedRateLimit reads what a valid List case's expected structure
// makes of a RateLimit field: valid only when every member is an Item named
// by a String or a Token, with an "r" that is a non-negative Integer and a
// "t", if any, likewise; then the longest t of the members with r=0.
func sfExpectedRateLimit(t *testing.T, name string, tc sfTestCase) (rateLimitItems, bool) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(tc.Expected))
	dec.UseNumber() // an Integer (1) apart from a Decimal (1.0)
	var members []any
	require.NoError(t, dec.Decode(&members), name)
	var items rateLimitItems
	for _, m := range members {
		member, ok := m.([]any)
		require.True(t, ok && len(member) == 2, "%s: a member is [value, parameters]", name)
		switch bare := member[0].(type) {
		case string: // a String
		case map[string]any:
			if bare["__type"] != "token" {
				return rateLimitItems{}, false
			}
		default: // an Inner List, or a bare item of another type
			return rateLimitItems{}, false
		}
		params := sfParams(t, name, member[1])
		r, hasR := sfNonNegativeInt(params["r"])
		tv, hasT := sfNonNegativeInt(params["t"])
		if _, present := params["r"]; !present || !hasR {
			return rateLimitItems{}, false
		}
		if _, present := params["t"]; present && !hasT {
			return rateLimitItems{}, false
		}
		if r == 0 {
			items.exhausted = true
			if hasT {
				reset := time.Duration(tv) * time.Second
				if !items.resetKnown || reset > items.reset {
					items.reset = reset
				}
				items.resetKnown = true
			}
		}
	}
	return items, true
}

// sfParams reads parameters in either of the suite's forms: an object
// (older files) or an array of [name, value] pairs, the later ones winning.
func sfParams(t *testing.T, name string, v any) map[string]any {
	switch p := v.(type) {
	case map[string]any:
		return p
	case []any:
		out := make(map[string]any, len(p))
		for _, pair := range p {
			kv, ok := pair.([]any)
			require.True(t, ok && len(kv) == 2, "%s: a parameter is [name, value]", name)
			out[kv[0].(string)] = kv[1]
		}
		return out
	}
	t.Fatalf("%s: parameters of type %T", name, v)
	return nil
}

// sfNonNegativeInt reports v's value when it is a non-negative JSON integer.
func sfNonNegativeInt(v any) (int64, bool) {
	n, ok := v.(json.Number)
	if !ok || strings.ContainsAny(string(n), ".eE-") {
		return 0, false
	}
	i, err := n.Int64()
	return i, err == nil
}

// Byte Sequences whose base64 cannot be decoded make the field invalid
// (RFC 9651 §4.2.7), among them the two the suite's later versions add,
// padding at the start and in the middle. Missing padding and non-zero pad
// bits are accepted, as the RFC recommends.
func TestByteSequenceMustDecode(t *testing.T) {
	tests := []struct {
		b64 string
		ok  bool
	}{
		{"aGVsbG8=", true},
		{"", true},
		{"aGVsbG8", true},    // padding left out
		{"iZ==", true},       // non-zero pad bits
		{"YQ==", true},       // one byte
		{"YQ", true},         // one byte, unpadded
		{"YWI=", true},       // two bytes
		{"YWJj", true},       // three bytes
		{"=aGVsbG8=", false}, // padding at the start
		{"a=GVsbG8=", false}, // padding in the middle
		{"aGVs=bG8=", false},
		{"YQ===", false}, // too much padding
		{"YQ=", false},   // too little
		{"YWI==", false},
		{"YWJj=", false},
		{"Y", false}, // a lone character holds no byte
		{"YWJjZ", false},
		{"Y===", false},
		{"=", false},
		{"====", false},
	}
	for _, tt := range tests {
		field := []string{`"sf";r=0;t=7;pk=:` + tt.b64 + `:`}
		_, ok := parseRateLimitField(field)
		assert.Equal(t, tt.ok, ok, "%q", field[0])
		assert.Equal(t, tt.ok, decodableBase64(tt.b64), "decodableBase64(%q)", tt.b64)
	}
}

// Field values that break RFC 9651's grammar (or a RateLimit member's
// shape) make the whole RateLimit field invalid, and so no wait.
func TestStructuredFieldGrammarErrors(t *testing.T) {
	tests := []struct {
		name  string
		lines []string
	}{
		{"upper-case key", []string{`"a";R=0;T=5`}},
		{"trailing comma", []string{`"a";r=0;t=5,`}},
		{"leading comma", []string{`,"a";r=0;t=5`}},
		{"empty member", []string{`"a";r=0;t=5,,"b";r=1`}},
		{"empty line among lines", []string{`"a";r=0;t=5`, ""}},
		{"inner list", []string{`("a" "b");r=0;t=5`}},
		{"integer item", []string{`1;r=0;t=5`}},
		{"byte sequence item", []string{`:YQ==:;r=0;t=5`}},
		{"unterminated string", []string{`"a;r=0;t=5`}},
		{"bad escape", []string{`"a\x";r=0;t=5`}},
		{"non-ASCII in string", []string{`"é";r=0;t=5`}},
		{"space before semicolon", []string{`"a" ;r=0;t=5`}},
		{"tab after semicolon", []string{"\"a\";\tr=0;t=5"}},
		{"missing comma", []string{`"a";r=0;t=5 "b";r=0;t=9`}},
		{"bad parameter value", []string{`"a";r=0;t=5;x=?2`}},
		{"decimal with four fraction digits", []string{`"a";r=0;t=5;x=1.2345`}},
		{"display string in upper-case hex", []string{`"a";r=0;t=5;x=%"caf%C3%A9"`}},
		{"display string not UTF-8", []string{`"a";r=0;t=5;x=%"%ff"`}},
		{"decimal date", []string{`"a";r=0;t=5;x=@1.5`}},
	}
	for _, tt := range tests {
		_, ok := parseRateLimitField(tt.lines)
		assert.False(t, ok, "%s: %q", tt.name, tt.lines)
		h := http.Header{"Ratelimit": tt.lines}
		_, waitOK := RateLimitWait(&http.Response{Header: h}, rlNow)
		assert.False(t, waitOK, "%s: RateLimitWait", tt.name)
	}
}

// A parameter named again overrides its earlier value (RFC 9651
// §4.2.3.2), so only the last "r" and the last "t" of a member must be
// Integers: an earlier Boolean or String does not make the field invalid,
// and an earlier Integer does not save a later non-Integer.
func TestLastValueOfARepeatedParameterDecides(t *testing.T) {
	exhausted := func(reset time.Duration) rateLimitItems {
		return rateLimitItems{exhausted: true, resetKnown: true, reset: reset}
	}
	tests := []struct {
		field string
		want  rateLimitItems
		ok    bool
	}{
		{`A;t;r=0;t=0`, exhausted(0), true}, // found by FuzzStructuredField
		{`"a";t;r=0;t=5`, exhausted(5 * time.Second), true},
		{`"a";r;r=0;t=5`, exhausted(5 * time.Second), true},
		{`"a";r="x";r=0;t=?1;t=7`, exhausted(7 * time.Second), true},
		{`"a";r=-1;r=3`, rateLimitItems{}, true},
		{`"a";r=0;t=5;t`, rateLimitItems{}, false},
		{`"a";r=0;t=5;r=?0`, rateLimitItems{}, false},
		{`"a";r=0;t=5;t=1.5`, rateLimitItems{}, false},
	}
	for _, tt := range tests {
		items, ok := parseRateLimitField([]string{tt.field})
		assert.Equal(t, tt.ok, ok, "%q", tt.field)
		assert.Equal(t, tt.want, items, "%q", tt.field)
	}
}
