package retryhttp

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A host that strings.ToLower changes in length (the Kelvin sign U+212A
// lowers to the one byte "k"; U+0130 to "i", which it does not even fold
// to) was filed under a lowered spelling that the lookup never matched
// against the URL: find missed the entry findOrAdd had just made, and
// every findOrAdd of the same URL landed on its own entry's hash, took the
// "colliding key" path, and evicted it. url.Parse accepts such hosts, and
// net/http punycodes them on the wire (the Kelvin sign reaches
// k.example), so a request can carry one. Keys now fold ASCII only, as
// their hash does.
func TestDestTableFindsTheEntryOfAHostWhoseLowerCaseIsShorter(t *testing.T) {
	for _, host := range []string{"\u212a.example", "\u0130.example"} {
		t.Run(host, func(t *testing.T) {
			evictions := 0
			tab := destTable[int]{hooks: destHooks[int]{evicted: func(*int, uint64) { evictions++ }}}
			u := mustURL(t, "http://"+host+"/")
			v := tab.findOrAdd(u, "", 0)
			*v = 1
			assert.Same(t, v, tab.find(u, ""), "find returns the entry findOrAdd made for the same URL")
			assert.Same(t, v, tab.findOrAdd(u, "", 0), "findOrAdd of the same URL again returns its entry")
			assert.Zero(t, evictions, "the same key does not evict its own entry as a colliding one")
		})
	}
}

// Through a Transport's Throttle: every request to such a host starts a
// fresh count, so that no number of 503s ever makes the Throttle reject
// one, while the same host spelled in ASCII is throttled.
func TestThrottleRejectsAHostWhoseLowerCaseIsShorter(t *testing.T) {
	for _, host := range []string{"k.example", "\u212a.example"} {
		t.Run(host, func(t *testing.T) {
			th := NewThrottle(2, time.Minute)
			tr := &Transport{Base: roundTripFunc503{}, Policy: Policy{Throttle: th, MaxAttempts: 1, Clock: stillClock{}}}
			rejected := 0
			for range 200 {
				req, err := http.NewRequest(http.MethodGet, "http://"+host+"/", nil)
				require.NoError(t, err)
				resp, err := tr.RoundTrip(req)
				if err != nil {
					require.ErrorIs(t, err, ErrThrottled)
					rejected++
					continue
				}
				resp.Body.Close()
			}
			assert.Greater(t, rejected, 100, "200 requests answered 503 make the Throttle reject most of them")
		})
	}
}
