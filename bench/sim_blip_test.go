package main

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/b4dedce7/retryhttp"
)

// openLoopBlip is the blip after history read as an open-loop process: 30
// requests a second arrive evenly, each on its own coroutine whatever the
// others are doing, for 60 s to a server that answers them all, then for 6 s
// more while the server answers 503 for the first 3 s. Every request runs
// through one process of client: a real retryhttp.Transport with the
// default Policy, and the budget client gives it. It counts the requests started in the blip and
// in the blip and the 3 s after it, those that got a 200, and the retries.
func openLoopBlip(client func(s *sim) func(ctx context.Context) bool) (b blipCount) {
	const rate, history, blip = 30, 60 * time.Second, 3 * time.Second
	s := newSim(blipServer{from: history, until: history + blip, latency: time.Millisecond}, 0, 3*time.Minute)
	do := client(s)
	total := int((history + 2*blip).Seconds() * rate)
	for i := range total {
		at := time.Duration(i) * time.Second / rate
		s.after(at, func() {
			s.start(func(ctx context.Context) bool {
				ok := do(ctx)
				if at >= history {
					b.all++
					if ok {
						b.allOK++
					}
					if at < history+blip {
						b.inBlip++
						if ok {
							b.inBlipOK++
						}
					}
				}
				return ok
			})
		})
	}
	s.run(3 * time.Minute)
	b.retries = s.attempts - s.requests
	return b
}

type blipCount struct{ inBlip, inBlipOK, all, allOK, retries int }

// TestOpenLoopBlipWithHistory measures what the default Budget lets an
// open-loop process get through a 3 s blip after 60 s of history at 30
// requests a second; docs/budget.md's Limits quotes it. It checks only that
// the retries stay within ratio × the successes of the last 10 s (30), and
// logs the rest, over 20 runs (the backoff's jitter differs in each):
//
//	cd bench && go test -run TestOpenLoopBlipWithHistory -v
func TestOpenLoopBlipWithHistory(t *testing.T) {
	real := func(b func() *retryhttp.Budget) func(s *sim) func(ctx context.Context) bool {
		return func(s *sim) func(ctx context.Context) bool { return retryhttpClient(s, b(), nil) }
	}
	for _, c := range []struct {
		name   string
		client func(s *sim) func(ctx context.Context) bool
		most   int // retries allowed
	}{
		{"default budget", real(func() *retryhttp.Budget { return nil }), 30},
		{"the window without the pace (model)", designClient(budgetDesign{ratio: 0.1, burst: 3, window: 10 * time.Second}), 30},
		{"NewHostBudget(0.3, 3)", real(func() *retryhttp.Budget { return retryhttp.NewHostBudget(0.3, 3) }), 90},
		{"NewHostBudget(1, 3)", real(func() *retryhttp.Budget { return retryhttp.NewHostBudget(1, 3) }), 300},
		{"UnlimitedBudget", real(retryhttp.UnlimitedBudget), 1 << 30},
	} {
		var inBlip, all, retries []int
		var n blipCount
		for range 20 {
			b := openLoopBlip(c.client)
			n = b
			inBlip = append(inBlip, b.inBlipOK)
			all = append(all, b.allOK)
			retries = append(retries, b.retries)
			if b.retries > c.most {
				t.Errorf("%s: %d retries, more than %d", c.name, b.retries, c.most)
			}
		}
		slices.Sort(inBlip)
		slices.Sort(all)
		slices.Sort(retries)
		t.Logf("%s: of %d requests started in the blip, %d–%d got a 200 (median %d); of %d in the blip and the 3 s after it, %d–%d (median %d); retries %d–%d",
			c.name, n.inBlip, inBlip[0], inBlip[len(inBlip)-1], inBlip[len(inBlip)/2],
			n.all, all[0], all[len(all)-1], all[len(all)/2], retries[0], retries[len(retries)-1])
	}
}
