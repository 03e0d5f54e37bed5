package main

import (
	"context"
	"fmt"
	"runtime/debug"
	"slices"
	"time"

	"github.com/b4dedce7/retryhttp"
)

// simConfig sizes the simulation.
type simConfig struct {
	fleet    metaParams // the fleet; the sweep varies its size, load and trigger
	fleets   []int      // the fleet sizes swept: processes sharing the same total load
	loads    []float64
	triggers []time.Duration
	designs  []budgetDesign
	// the Retry-After values (s) of the map's named-wait rows: retryhttp
	// against a server that names that wait on its 503s
	retryAfters []int
}

// mapClients are the client kinds of the stability map: every simulated
// client, and retryhttp with each named wait.
func (c simConfig) mapClients() []simClient {
	return append(slices.Clone(simClients), namedWaitSimClients(c.retryAfters)...)
}

// simFullConfig is the fleet of the issue: 20, 1,000 and 10,000 processes
// sharing the same load, to a server of capacity 1000/s; at 10,000 each
// sends about 0.09 requests a second at 90% load. The warm-up of 60 s gives
// the fleet a history, as a fleet in service has: after 5 s, two in three
// of 10,000 such processes would not have sent a request yet, a fleet of
// newborn processes, each with the allowance of a process that has never
// seen a success.
func simFullConfig() simConfig {
	return simConfig{
		fleet: metaParams{
			capacity: 1000, load: 0.9, queueSeconds: 1.5, triggerFactor: 0.1, clients: 10000,
			limit: time.Second, warmup: 60 * time.Second, trigger: 10 * time.Second, after: 30 * time.Second,
			grace: 3 * time.Second, seed: 7,
		},
		fleets:      []int{20, 1000, 10000},
		loads:       []float64{0.5, 0.6, 0.7, 0.8, 0.9, 0.95},
		triggers:    []time.Duration{1 * time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second, 60 * time.Second},
		designs:     budgetDesigns,
		retryAfters: []int{1, 5},
	}
}

// simQuickConfig is a tenth of the capacity, a coarser sweep and fewer
// budget designs.
func simQuickConfig() simConfig {
	c := simFullConfig()
	c.fleet.clients, c.fleet.capacity = 1000, 100
	c.fleets = []int{20, 1000} // at 100/s, 1,000 processes send as little each as 10,000 at 1000/s
	c.loads = []float64{0.6, 0.9}
	c.triggers = []time.Duration{2 * time.Second, 10 * time.Second, 30 * time.Second}
	c.retryAfters = []int{1}
	// retryhttp's own budgets and three models that stand for the rest:
	// the designs are most of the simulation's time.
	c.designs = slices.DeleteFunc(slices.Clone(budgetDesigns), func(d budgetDesign) bool {
		return !d.real && !d.sre && !(d.grpc && d.burst == 10 && !d.refund && d.wait == 0) && d.window != 10*time.Second
	})
	return c
}

// budgetDesigns are the designs compared in part 3: retryhttp's own (which
// deposits for each success), the first version's (a deposit for each
// request), each idea alone, and combinations.
var budgetDesigns = []budgetDesign{
	{name: "retryhttp's default Budget: NewHostBudget(0.1, 3), ratio × successes of the last 10 s paced at a tenth a second, 3 before the first success", real: true, ratio: 0.1, burst: 3},
	{name: "the fixed bucket of earlier versions: NewFixedBudget(0.1, 10)", real: true, fixed: true, ratio: 0.1, burst: 10},
	{name: "window 10 s, 2 before the first success", ratio: 0.1, burst: 2, window: 10 * time.Second},
	{name: "window 10 s, none before the first success", ratio: 0.1, burst: 0, window: 10 * time.Second},
	{name: "window 2 s, 2 before the first success", ratio: 0.1, burst: 2, window: 2 * time.Second},
	{name: "window 3 s, 2 before the first success", ratio: 0.1, burst: 2, window: 3 * time.Second},
	{name: "window 4 s, 2 before the first success", ratio: 0.1, burst: 2, window: 4 * time.Second},
	{name: "window 5 s, 2 before the first success", ratio: 0.1, burst: 2, window: 5 * time.Second},
	{name: "window 30 s, 2 before the first success", ratio: 0.1, burst: 2, window: 30 * time.Second},
	{name: "window 60 s, 2 before the first success", ratio: 0.1, burst: 2, window: 60 * time.Second},
	{name: "SRE client-side rule on retries, k = 1.1, 2 min", ratio: 0.1, sre: true},
	{name: "no budget: UnlimitedBudget", real: true, unlimited: true},
	{name: "first version: deposit per request", ratio: 0.1, burst: 10},
	{name: "refund on success", ratio: 0.1, burst: 10, refund: true},
	{name: "minimum 10 retries/s", ratio: 0.1, burst: 10, minRate: 10},
	{name: "wait for a token", ratio: 0.1, burst: 10, wait: retryhttp.DefaultMaxElapsed},
	{name: "gRPC: half the bucket", ratio: 0.1, burst: 10, grpc: true},
	{name: "refund + wait", ratio: 0.1, burst: 10, refund: true, wait: retryhttp.DefaultMaxElapsed},
	{name: "gRPC + wait", ratio: 0.1, burst: 10, grpc: true, wait: retryhttp.DefaultMaxElapsed},
	{name: "deposit on success", ratio: 0.1, burst: 10, depositOnSuccess: true},
	{name: "deposit on success + refund", ratio: 0.1, burst: 10, depositOnSuccess: true, refund: true},
	{name: "deposit on success + refund + wait", ratio: 0.1, burst: 10, depositOnSuccess: true, refund: true, wait: retryhttp.DefaultMaxElapsed},
	{name: "deposit on success + refund + wait ≤ 2 s", ratio: 0.1, burst: 10, depositOnSuccess: true, refund: true, wait: 2 * time.Second},
	{name: "deposit on success + refund + wait ≤ 4 s", ratio: 0.1, burst: 10, depositOnSuccess: true, refund: true, wait: 4 * time.Second},
	{name: "gRPC + refund + wait ≤ 4 s", ratio: 0.1, burst: 10, grpc: true, refund: true, wait: 4 * time.Second},
	{name: "gRPC, burst 3", ratio: 0.1, burst: 3, grpc: true},
	{name: "deposit on success + refund, burst 3", ratio: 0.1, burst: 3, depositOnSuccess: true, refund: true},
}

// fleetSeed is the seed offset of the map's cell at 90% load and a 10 s
// trigger, which the designs' fleet runs share.
func (c simConfig) fleetSeed() uint64 {
	for li, load := range c.loads {
		for ti, trig := range c.triggers {
			if load == 0.9 && trig == 10*time.Second {
				return uint64(li*100 + ti)
			}
		}
	}
	return 0
}

// simReport is what the simulation found.
type simReport struct {
	cfg      simConfig
	took     time.Duration
	loopback []simMetaResult // the loopback scenario, simulated, per client kind
	// boundary: per client kind, the loads swept at the loopback scale
	// (10 s trigger) and whether each recovered
	boundaryLoads []float64
	boundary      map[string][]simMetaResult
	sweep         map[int]map[string][][]simMetaResult // per fleet size and client kind, [load][trigger]
	designs       []designResult
}

// designResult is one budget design on the three scenarios.
type designResult struct {
	d                    budgetDesign
	outageAmp            float64
	outageP50, outageMax time.Duration
	blipOK, blipN        int
	histOK, histN        int             // the blip after 60 s of history
	trig                 simMetaResult   // at the loopback scale
	fleets               []simMetaResult // per fleet size, 90% load, 10 s trigger
}

// runSim runs the loopback-scale check, the sweep and the comparison of
// budget designs, on every CPU.
func runSim(cfg simConfig, loop metaParams, step func(string)) *simReport {
	started := time.Now()
	rep := &simReport{cfg: cfg, sweep: map[int]map[string][][]simMetaResult{}}
	var jobs []func()
	rep.boundaryLoads = []float64{0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95}
	rep.boundary = map[string][]simMetaResult{}
	for _, c := range simClients {
		row := make([]simMetaResult, len(rep.boundaryLoads))
		rep.boundary[c.name] = row
		for i, load := range rep.boundaryLoads {
			p := loop
			p.load = load
			jobs = append(jobs, func() {
				row[i] = simMetastable(p, c.make)
				row[i].offered, row[i].load, row[i].goodput = nil, nil, nil
			})
		}
	}
	rep.loopback = make([]simMetaResult, len(simClients))
	for i, c := range simClients {
		jobs = append(jobs, func() {
			rep.loopback[i] = simMetastable(loop, c.make)
			rep.loopback[i].client = c.name
		})
	}
	for _, n := range cfg.fleets {
		rep.sweep[n] = map[string][][]simMetaResult{}
		for _, c := range cfg.mapClients() {
			grid := make([][]simMetaResult, len(cfg.loads))
			rep.sweep[n][c.name] = grid
			for li, load := range cfg.loads {
				grid[li] = make([]simMetaResult, len(cfg.triggers))
				for ti, trig := range cfg.triggers {
					p := cfg.fleet
					p.clients, p.load, p.trigger = n, load, trig
					p.seed += uint64(li*100 + ti)
					p.retryAfter = c.retryAfter
					jobs = append(jobs, func() {
						grid[li][ti] = simMetastable(p, c.make)
						grid[li][ti].client = c.name
						grid[li][ti].offered, grid[li][ti].load, grid[li][ti].goodput = nil, nil, nil
					})
				}
			}
		}
	}
	rep.designs = make([]designResult, len(cfg.designs))
	for i, d := range cfg.designs {
		r := &rep.designs[i]
		r.d = d
		r.fleets = make([]simMetaResult, len(cfg.fleets))
		jobs = append(jobs,
			func() { r.outageAmp, r.outageP50, r.outageMax = simTotalOutage(d) },
			func() { r.blipOK, r.blipN = simBlip(d) },
			func() { r.histOK, r.histN = simBlipHistory(d) },
			func() { r.trig = simMetastable(loop, designClient(d)) },
		)
		for fi, n := range cfg.fleets {
			p := cfg.fleet
			p.clients = n
			p.seed += cfg.fleetSeed() // the arrivals of the map's cell it is compared with
			jobs = append(jobs, func() {
				r.fleets[fi] = simMetastable(p, designClient(d))
				r.fleets[fi].offered, r.fleets[fi].load, r.fleets[fi].goodput = nil, nil, nil
			})
		}
	}
	// One run at a time: simulations in parallel ran slower in all than
	// one after another (their coroutines hop between threads), and a
	// lazier garbage collector saves a third of the time.
	step(fmt.Sprintf("fleet simulation: %d runs", len(jobs)))
	defer debug.SetGCPercent(debug.SetGCPercent(1000))
	for _, job := range jobs {
		job()
	}
	rep.took = time.Since(started)
	return rep
}

// designClient makes retryhttp processes that use budget design d.
func designClient(d budgetDesign) func(s *sim) func(ctx context.Context) bool {
	return func(s *sim) func(ctx context.Context) bool {
		switch {
		case d.real && d.unlimited:
			return retryhttpClient(s, retryhttp.UnlimitedBudget(), nil)
		case d.real && d.fixed:
			return retryhttpClient(s, retryhttp.NewFixedBudget(d.ratio, int(d.burst)), nil)
		case d.real:
			return retryhttpClient(s, nil, nil) // the default
		}
		return retryhttpClient(s, retryhttp.UnlimitedBudget(), newBudgetModel(d, s))
	}
}

// simTotalOutage is the bench's total outage in the simulation: 100
// concurrent requests through one process to a server that answers only 503,
// after 1 ms. It returns the attempts per request and the answer times.
func simTotalOutage(d budgetDesign) (float64, time.Duration, time.Duration) {
	const n = 100
	s := newSim(outageServer{until: -1, latency: time.Millisecond}, 0, 2*time.Minute)
	do := designClient(d)(s)
	for range n {
		s.after(0, func() { s.start(do) })
	}
	s.run(2 * time.Minute)
	return float64(s.attempts) / n, percentile(s.answerTimes, 0.5), percentile(s.answerTimes, 1)
}

// simBlip is the bench's brief outage in the simulation: 200 requests evenly
// over 6 s through one process, to a server that answers 503 for the first
// 3 s, then 200, after 1 ms each. It returns the successes.
func simBlip(d budgetDesign) (ok, n int) {
	n = 200
	s := newSim(outageServer{until: 3 * time.Second, latency: time.Millisecond}, 0, 2*time.Minute)
	do := designClient(d)(s)
	for i := range n {
		s.after(6*time.Second*time.Duration(i)/time.Duration(n), func() { s.start(do) })
	}
	s.run(2 * time.Minute)
	return s.okCount, n
}

// agreement compares the loopback run with its simulation: for how many
// contenders they agree on recovery, and the recovery times side by side.
func agreement(real []metaResult, simulated []simMetaResult) (agree, total int) {
	for _, r := range real {
		i := slices.IndexFunc(simulated, func(s simMetaResult) bool { return s.client == r.lib })
		if i < 0 {
			continue
		}
		total++
		if simulated[i].recovered == r.recovered {
			agree++
		}
	}
	return agree, total
}

// simBlipHistory is the blip after a history: one process sends 30 requests
// a second, evenly, for 60 s to a server that answers them all, then for 6 s
// more while the server answers 503 for 3 s (from the 60th second), then
// 200. It returns the successes among the requests of those last 6 s.
func simBlipHistory(d budgetDesign) (ok, n int) {
	const rate, history, blip = 30, 60 * time.Second, 3 * time.Second
	s := newSim(blipServer{from: history, until: history + blip, latency: time.Millisecond}, 0, 3*time.Minute)
	do := designClient(d)(s)
	total := int((history + 2*blip).Seconds() * rate)
	before := 0
	for i := range total {
		at := time.Duration(i) * time.Second / rate
		if at < history {
			before++
		}
		s.after(at, func() { s.start(do) })
	}
	var okBefore int
	s.after(history, func() { okBefore = s.okCount })
	s.run(3 * time.Minute)
	return s.okCount - okBefore, total - before
}

// blipServer answers 503 from `from` until `until`, 200 otherwise, each
// after latency.
type blipServer struct {
	from, until time.Duration
	latency     time.Duration
}

func (b blipServer) arrive(now time.Duration) (int, time.Duration) {
	if now >= b.from && now < b.until {
		return 503, now + b.latency
	}
	return 200, now + b.latency
}
