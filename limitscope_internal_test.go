package retryhttp

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRouteKeyReplacesIdentifiers(t *testing.T) {
	for _, tt := range []struct{ method, url, want string }{
		{"GET", "https://api.example/search/issues?q=bug", "GET /search/issues"},
		{"GET", "https://api.example/repos/octo/hello/issues/1347", "GET /repos/octo/hello/issues/{id}"},
		{"POST", "https://api.example/repos/octo/hello/issues", "POST /repos/octo/hello/issues"},
		{"GET", "https://api.example/repos/octo/hello/commits/6dcb09b5b57875f334f61aebed695e2e4193db5e", "GET /repos/octo/hello/commits/{id}"},
		{"DELETE", "https://api.example/orders/123e4567-e89b-12d3-a456-426614174000/items/7", "DELETE /orders/{id}/items/{id}"},
		{"GET", "https://discord.example/api/v10/channels/41771983423143937/messages", "GET /api/v10/channels/{id}/messages"},
		{"GET", "https://api.example/users/deadbeef", "GET /users/deadbeef"}, // a word of hex letters is a name
		{"GET", "https://api.example/v2/abc123", "GET /v2/abc123"},           // too short for a hash
		{"GET", "https://api.example", "GET /"},
		{"", "https://api.example/x/", "GET /x/"},
	} {
		req, err := http.NewRequest(tt.method, tt.url, nil)
		require.NoError(t, err)
		req.Method = tt.method
		assert.Equal(t, tt.want, routeKey(req), "%s %s", tt.method, tt.url)
	}
}

func TestResourceNameReadsWhereTheServerDrawsTheLimit(t *testing.T) {
	for _, tt := range []struct {
		name   string
		header http.Header
		want   string
	}{
		{"GitHub", http.Header{"X-Ratelimit-Resource": {"search"}, "X-Ratelimit-Remaining": {"0"}}, "search"},
		{"Discord", http.Header{"X-Ratelimit-Bucket": {"abcd1234"}}, "abcd1234"},
		{"IETF policy", http.Header{"Ratelimit-Policy": {`"search";q=5;w=3`}}, "search"},
		{"IETF policy, a token, two policies", http.Header{"Ratelimit-Policy": {`burst;q=100;w=1, daily;q=1000;w=86400`}}, "burst"},
		{"IETF RateLimit", http.Header{"Ratelimit": {`"search";r=0;t=3`}}, "search"},
		{"GitHub's name first", http.Header{"X-Ratelimit-Resource": {"core"}, "Ratelimit-Policy": {`"default";q=1`}}, "core"},
		{"copies that disagree name nothing", http.Header{"X-Ratelimit-Resource": {"core", "search"}}, ""},
		{"none", http.Header{"X-Ratelimit-Remaining": {"0"}}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, resourceName(tt.header))
		})
	}
}

// TestHoldsStayBoundedWhateverTheKey: however many keys a LimitKey gives,
// or routes a destination's answers teach, the table keeps at most maxHolds
// holds and maxRoutes routes per destination.
func TestHoldsStayBoundedWhateverTheKey(t *testing.T) {
	t.Parallel() // CPU-bound: it runs beside the other parallel tests, on another core
	var hs holds
	now := time.Now()
	u := mustURL(t, "https://api.example")
	for i := range 5000 {
		h := hs.findOrAddIn(u, limitScope{scopeKey, fmt.Sprint(i)})
		h.mu.Lock()
		h.spend(now, time.Hour, "X-RateLimit-Reset", 5)
		h.mu.Unlock()
		require.LessOrEqual(t, hs.table.len(), maxHolds)
	}
	p := hs.find(u)
	require.NotNil(t, p)
	assert.LessOrEqual(t, p.count, maxHolds)
	assert.Equal(t, hs.table.len(), p.count)
	assert.NotNil(t, hs.hold(u, limitScope{scopeKey, "4999"}), "the newest is kept")

	for i := range 1000 {
		req, err := http.NewRequest("GET", fmt.Sprintf("https://api.example/r%d", i), nil)
		require.NoError(t, err)
		p.learn(req, "search")
	}
	assert.Len(t, p.routes, maxRoutes)
}

// TestRoutesAreForgottenWithTheirDestinationsLastHold: a destination whose
// holds have all expired is forgotten, routes and all, and its requests
// take the happy path again.
func TestRoutesAreForgottenWithTheirDestinationsLastHold(t *testing.T) {
	var hs holds
	now := time.Now()
	u := mustURL(t, "https://api.example")
	search := hs.findOrAddIn(u, limitScope{scopeResource, "search"})
	core := hs.findOrAddIn(u, limitScope{scopeResource, "core"})
	for _, h := range []*hold{search, core} {
		h.mu.Lock()
		h.spend(now, time.Second, "X-RateLimit-Reset", 5)
		h.mu.Unlock()
	}
	req, err := http.NewRequest("GET", "https://api.example/search/issues", nil)
	require.NoError(t, err)
	hs.find(u).learn(req, "search")
	assert.Equal(t, limitScope{scopeResource, "search"}, hs.find(u).requestScope(req, nil))

	hs.dropIfExpired(search, now.Add(2*time.Second))
	assert.Nil(t, hs.hold(u, limitScope{scopeResource, "search"}), "expired")
	assert.Same(t, core, hs.hold(u, limitScope{scopeResource, "core"}), "another scope's hold is kept")
	assert.Equal(t, 1, hs.table.len())
	hs.dropIfExpired(core, now.Add(2*time.Second))
	assert.Nil(t, hs.find(u), "the destination is forgotten with its last hold")
	assert.Zero(t, hs.table.len())
}
