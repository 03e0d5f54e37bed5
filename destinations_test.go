package retryhttp

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// stillClock never moves, and sleeps not at all.
type stillClock struct{}

func (stillClock) Now() time.Time                                   { return time.Unix(1_800_000_000, 0) }
func (stillClock) Sleep(ctx context.Context, _ time.Duration) error { return ctx.Err() }

func TestHostBudgetKeepsTheMostRecentlyFailed(t *testing.T) {
	t.Parallel() // CPU-bound: it runs beside the other parallel tests, on another core
	for name, budget := range map[string]*Budget{
		"NewHostBudget":      NewHostBudget(0.5, 1),
		"NewFixedHostBudget": NewFixedHostBudget(0.5, 1),
	} {
		t.Run(name, func(t *testing.T) {
			tr := &Transport{Base: roundTripFunc503{}, Policy: Policy{Budget: budget, MaxAttempts: 2, Clock: stillClock{}}}
			const hosts = 3 * MaxHostBuckets
			for i := range hosts {
				req, err := http.NewRequest(http.MethodGet, fmt.Sprintf("http://h%d.example/", i), nil)
				require.NoError(t, err)
				resp, err := tr.RoundTrip(req)
				require.NoError(t, err)
				resp.Body.Close()
			}
			kept := 0
			for i := range hosts {
				if budget.tracks(mustURL(t, fmt.Sprintf("http://h%d.example", i))) {
					kept++
					assert.GreaterOrEqual(t, i, hosts-MaxHostBuckets, "only the most recently failed destinations are kept")
				}
			}
			assert.Equal(t, MaxHostBuckets, kept, "only the most recently failed destinations are kept")
		})
	}
}

// tracks reports whether b keeps an entry for u's destination.
func (b *Budget) tracks(u *url.URL) bool {
	if b.ledgers != nil {
		return b.ledgers.find(u, "") != nil
	}
	return b.hosts.find(u, "") != nil
}

type roundTripFunc503 struct{}

func (roundTripFunc503) RoundTrip(req *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: http.StatusServiceUnavailable, Header: http.Header{}, Body: http.NoBody, Request: req}, nil
}

func TestDestTableKeys(t *testing.T) {
	var tab destTable[int]
	a := tab.findOrAdd(mustURL(t, "HTTPS://API.example.com/x"), "", 0)
	*a = 1
	assert.Same(t, a, tab.find(mustURL(t, "https://api.example.com:443/y"), ""), "the same destination, however spelled")
	assert.Nil(t, tab.find(mustURL(t, "http://api.example.com"), ""), "another scheme and port")
	b := tab.findOrAdd(mustURL(t, "https://api.example.com"), "search", 0)
	assert.NotSame(t, a, b, "an extra string keys finer than the destination")
	assert.Same(t, b, tab.find(mustURL(t, "https://API.example.com"), "search"))
	assert.Nil(t, tab.find(mustURL(t, "https://api.example.com"), "core"))
	assert.Nil(t, tab.find(mustURL(t, "https://api.example.com:80"), "0"), `"…:443"+"0" is not "…:4430"`)
	assert.Equal(t, 2, tab.len())
}

// A full table evicts exactly one entry, the one its concern scores lowest,
// and tells the concern.
func TestDestTableEvictsTheLeastWorth(t *testing.T) {
	var evicted []int
	tab := destTable[int]{limit: 3, hooks: destHooks[int]{
		fresh:   func(v *int, _ uint64, now int64) { *v = int(now) },
		worth:   func(v *int, _ int64) (int64, int64) { return int64(*v % 2), int64(*v) }, // odd ones kept over even ones
		evicted: func(v *int, _ uint64) { evicted = append(evicted, *v) },
	}}
	for i, host := range []string{"a", "b", "c", "d", "e"} {
		tab.findOrAdd(mustURL(t, "http://"+host+".example"), "", int64(i+1))
	}
	assert.Equal(t, []int{2, 4}, evicted, "the even ones go first, oldest first")
	assert.Equal(t, 3, tab.len())
	for _, host := range []string{"a", "c", "e"} {
		assert.NotNil(t, tab.find(mustURL(t, "http://"+host+".example"), ""), host)
	}
}

func TestDestTableRemoveIf(t *testing.T) {
	var tab destTable[int]
	u := mustURL(t, "http://a.example")
	v := tab.findOrAdd(u, "", 0)
	tab.removeIf(v, func(*int) bool { return false })
	assert.Same(t, v, tab.find(u, ""), "kept when the concern says no")
	tab.removeIf(v, func(*int) bool { return true })
	assert.Nil(t, tab.find(u, ""))
	tab.removeIf(v, func(*int) bool { t.Error("asked about an entry the table no longer holds"); return true })
}

// Lookups take no lock and allocate nothing, while other keys are added.
func TestDestTableFindIsAllocationFree(t *testing.T) {
	var tab destTable[int]
	u := mustURL(t, "http://a.example/")
	tab.findOrAdd(u, "", 0)
	assert.Zero(t, testing.AllocsPerRun(100, func() { tab.findOrAdd(u, "", 0) }))
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 200 { // 801 keys in all: none is evicted
				tab.findOrAdd(mustURL(t, fmt.Sprintf("http://%d-%d.example", i, j)), "", 0)
				assert.NotNil(t, tab.find(u, ""))
			}
		})
	}
	wg.Wait()
	assert.Equal(t, 801, tab.len())
}
