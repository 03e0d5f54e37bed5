package main

import (
	"context"
	"fmt"
	"image/color"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/failsafe-go/failsafe-go/adaptivethrottler"
	"github.com/failsafe-go/failsafe-go/failsafehttp"
	"github.com/failsafe-go/failsafe-go/timeout"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"github.com/b4dedce7/retryhttp"
)

// ---- Adaptive throttling in the metastable scenario ----
//
// retryhttp's opt-in Throttle (the SRE book's client-side throttling, K = 2)
// beside the bare transport, retryhttp's defaults, and failsafe-go's
// adaptivethrottler in front of its default retry policy, in the metastable
// scenario: on loopback with 20 processes (every contender) and with the
// largest count of -meta-procs (the bare transport and the Throttle), and in
// the simulation with 1,000 and 10,000, at 80%, 95% and 100% load.

// Names of the throttling contenders.
const (
	libThrottle   = "retryhttp + Throttle"
	libThrottle10 = "retryhttp + Throttle (10 s window)"
	libFailsafeT  = "failsafehttp + adaptivethrottler"
)

// throttleK and throttleWindow are the Throttle the bench measures: the
// SRE book's K, and the window that recovered soonest in the simulation of
// the scenario among 5, 10 and 20 s (and K 2, 3, 4) at 20 and 1,000
// processes; at 10,000, 10 s did better (see the report).
const (
	throttleK      = 2
	throttleWindow = 5 * time.Second
)

// extraMetaClients make the clients of contenders that only some scenarios
// measure, for metaClientFor.
var extraMetaClients = map[string]func(base *http.Transport, limit time.Duration) (*http.Client, string){}

var throttleColors = map[string]color.Color{
	"bare transport": color.RGBA{R: 120, G: 120, B: 120, A: 255},
	"retryhttp":      color.RGBA{R: 0, G: 114, B: 178, A: 255},
	libThrottle:      color.RGBA{R: 204, G: 121, B: 167, A: 255},
	libFailsafeT:     color.RGBA{R: 0, G: 158, B: 115, A: 255},
}

func init() {
	// The fifth map of the simulation's stability sweep, whose fleet of
	// 10,000 processes sends each 0.09 requests a second: a window of 10 s
	// holds enough of them (see the throttling section of the report).
	simClients = append(simClients, simClient{name: libThrottle10, make: throttleSimClientWith(throttleK, 10*time.Second)})
	extraMetaClients[libThrottle] = func(base *http.Transport, limit time.Duration) (*http.Client, string) {
		return &http.Client{Transport: &retryhttp.Transport{Base: base, Policy: retryhttp.Policy{
			AttemptTimeout: limit, Throttle: retryhttp.NewThrottle(throttleK, throttleWindow),
		}}}, fmt.Sprintf("Policy.AttemptTimeout = %v, Throttle = NewThrottle(%d, %v)", limit, throttleK, throttleWindow)
	}
	extraMetaClients[libFailsafeT] = func(base *http.Transport, limit time.Duration) (*http.Client, string) {
		throttler := adaptivethrottler.NewBuilder[*http.Response]().
			HandleIf(func(r *http.Response, err error) bool { return err != nil || r.StatusCode >= 500 }).
			Build()
		return &http.Client{Transport: failsafehttp.NewRoundTripper(base,
				failsafehttp.NewRetryPolicyBuilder().Build(), throttler, timeout.New[*http.Response](limit))},
			fmt.Sprintf("default retry policy around adaptivethrottler (5xx and errors fail) around timeout.New(%v)", limit)
	}
}

// throttleSimClient is a retryhttp process with the Throttle, in the
// simulation.
func throttleSimClient(s *sim) func(ctx context.Context) bool {
	return throttleSimClientWith(throttleK, throttleWindow)(s)
}

func throttleSimClientWith(k float64, window time.Duration) func(s *sim) func(ctx context.Context) bool {
	return func(s *sim) func(ctx context.Context) bool { return throttleSimProcess(s, k, window) }
}

func throttleSimProcess(s *sim, k float64, window time.Duration) func(ctx context.Context) bool {
	t := &retryhttp.Transport{Base: simBase{}, Policy: retryhttp.Policy{
		Clock: simClock{s: s}, Throttle: retryhttp.NewThrottle(k, window),
	}}
	return func(ctx context.Context) bool {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://sim.invalid/", nil)
		resp, err := t.RoundTrip(req)
		return err == nil && resp.StatusCode == http.StatusOK
	}
}

// throttleLoads are the loads of the comparison.
var throttleLoads = []float64{0.8, 0.95, 1.0}

// throttleQuickLoads are the loads -quick runs on loopback: the one where
// arrivals match the capacity, so that neither the bare transport nor
// retryhttp without a throttle can drain the queue, and the Throttle's
// recovery stands out.
var throttleQuickLoads = []float64{1.0}

type throttleReport struct {
	loads    []float64      // the loads run on loopback
	loopback [][]metaResult // [load][contender]
	fleetLB  [][]metaResult // [load][contender]: the largest -meta-procs, on loopback
	fleetLBN int
	sim20    [][]simMetaResult   // [load][client]: 20 processes
	fleets   [][][]simMetaResult // [fleet][load][client]
	fleetNs  []int
	meta     metaParams
	// the capacity of the simulated fleets: the full simulation's, or the
	// quick one's tenth of it
	fleetCapacity float64
}

// throttleScenario runs the comparison.
func throttleScenario(cfg config, step func(string)) *throttleReport {
	cfg.meta.retryAfter = cfg.throttleRA // on loopback; the simulation's server names no wait
	rep := &throttleReport{meta: cfg.meta, fleetNs: []int{1000, 10000}, loads: throttleLoads}
	if cfg.quick {
		rep.loads = throttleQuickLoads
	}
	native := attemptTimeoutEnforced()
	contenders := []string{"bare transport", "retryhttp", libThrottle, libFailsafeT}
	var fleetLB sync.WaitGroup
	if cfg.quick { // the fleet on loopback at the same time as the 20 processes
		fleetLB.Go(func() { throttleFleetLoopback(cfg, rep, step, native) })
	}
	for _, load := range rep.loads {
		step(fmt.Sprintf("throttling: loopback at %.0f%%", 100*load))
		p := cfg.meta
		p.load = load
		rep.loopback = append(rep.loopback, metaRow(p, contenders, cfg.metaConcurrent, native))
	}
	if !cfg.quick {
		throttleFleetLoopback(cfg, rep, step, native)
	}
	fleetLB.Wait()
	step("throttling: simulation")
	simKinds := []simClient{simClients[0], simClients[1], {name: libThrottle, make: throttleSimClient},
		{name: libThrottle10, make: throttleSimClientWith(throttleK, 10*time.Second)}}
	run := func(p metaParams) [][]simMetaResult {
		var out [][]simMetaResult
		for _, load := range throttleLoads {
			var row []simMetaResult
			for _, c := range simKinds {
				q := p
				q.load = load
				r := simMetastable(q, c.make)
				r.client = c.name
				r.offered, r.load = nil, nil
				row = append(row, r)
			}
			out = append(out, row)
		}
		return out
	}
	full := metaFullParams() // the loopback scale (processes, capacity) with the full phases, whatever -quick says
	full.clients, full.capacity = rep.meta.clients, rep.meta.capacity
	rep.sim20 = run(full)
	fleet := simFullConfig().fleet
	if cfg.quick {
		// The quick simulation's fleet: a tenth of the capacity, so that
		// 1,000 processes send each as little as 10,000 at the full
		// capacity, for a tenth of the events.
		fleet = simQuickConfig().fleet
		rep.fleetNs = []int{1000}
	}
	rep.fleetCapacity = fleet.capacity
	for _, n := range rep.fleetNs {
		f := fleet
		f.clients = n
		rep.fleets = append(rep.fleets, run(f))
	}
	return rep
}

// throttleFleetLoopback runs the fleet on loopback: the same load shared by
// the largest -meta-procs count of processes, each its own transport, with
// the bare transport and the Throttle; nothing if that count is not larger
// than the scenario's.
func throttleFleetLoopback(cfg config, rep *throttleReport, step func(string), native bool) {
	n := cfg.metaProcs[len(cfg.metaProcs)-1]
	if n <= cfg.meta.clients {
		return
	}
	rep.fleetLBN = n
	for _, load := range rep.loads {
		step(fmt.Sprintf("throttling: loopback at %.0f%%, %d processes", 100*load, n))
		p := cfg.meta
		p.load, p.clients = load, n
		rep.fleetLB = append(rep.fleetLB, metaRow(p, []string{"bare transport", libThrottle}, cfg.metaConcurrent, native))
	}
}

// metaRow runs the metastable scenario p once for each contender, on one
// schedule: all at once, each against its own server (-quick), or in turn.
func metaRow(p metaParams, contenders []string, concurrent, native bool) []metaResult {
	sched := metaSchedule(p)
	row := make([]metaResult, len(contenders))
	if concurrent {
		var wg sync.WaitGroup
		for i, lib := range contenders {
			wg.Go(func() { row[i] = metastableOne(p, lib, sched, native) })
		}
		wg.Wait()
		return row
	}
	for i, lib := range contenders {
		row[i] = metastableOne(p, lib, sched, native)
	}
	return row
}

func (rep *throttleReport) markdown() string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	p("\n## Adaptive throttling in the metastable scenario\n\n")
	p("The metastable scenario (%.0f/s capacity, a tenth of it for %v, 1 s per attempt) at 80%%, 95%% and 100%% load",
		rep.meta.capacity, rep.meta.trigger)
	if len(rep.loads) < len(throttleLoads) {
		var loads []string
		for _, l := range rep.loads {
			loads = append(loads, fmt.Sprintf("%.0f%%", 100*l))
		}
		p(" (on loopback only %s in -quick, both process counts at once)", strings.Join(loads, ", "))
	}
	if rep.meta.retryAfter > 0 {
		p(", its full-queue 503s carrying `Retry-After: %d` on loopback (-throttle-retry-after)", rep.meta.retryAfter)
	}
	p(". ")
	p("`%s` is `Policy{AttemptTimeout: 1s, Throttle: NewThrottle(%d, %v)}`; `%s` is failsafe-go's `adaptivethrottler` (defaults, 5xx and errors count as failures) inside its default retry policy. ",
		libThrottle, throttleK, throttleWindow, libFailsafeT)
	p("Recovery: time from the end of the trigger until goodput is back to 95%% of the offered load for good; **stuck** if never.\n\n")
	p("Loopback, %d processes (phases %v + %v + %v, one contender at a time unless -quick):\n\n", rep.meta.clients, rep.meta.warmup, rep.meta.trigger, rep.meta.after)
	p("| load | contender | recovery | successes | attempts |\n|---|---|---|---|---|\n")
	for li, row := range rep.loopback {
		for _, r := range row {
			p("| %.0f%% | %s | %s | %d of %d | %d |\n", 100*rep.loads[li], r.lib, recoveryText(r.recovered, r.recovery), r.ok, r.requests, r.attempts)
		}
	}
	if len(rep.fleetLB) > 0 {
		p("\nLoopback, the same load shared by %d processes, each its own transport:\n\n| load | contender | recovery | successes | attempts |\n|---|---|---|---|---|\n", rep.fleetLBN)
		for li, row := range rep.fleetLB {
			for _, r := range row {
				p("| %.0f%% | %s | %s | %d of %d | %d |\n", 100*rep.loads[li], r.lib, recoveryText(r.recovered, r.recovery), r.ok, r.requests, r.attempts)
			}
		}
	}
	type part struct {
		name string
		rs   [][]simMetaResult
		n    int
	}
	parts := []part{{"Simulation at the loopback scale (full phases)", rep.sim20, rep.meta.clients}}
	for i, n := range rep.fleetNs {
		parts = append(parts, part{fmt.Sprintf("Simulation of a fleet (capacity %.0f/s)", rep.fleetCapacity), rep.fleets[i], n})
	}
	for _, part := range parts {
		p("\n%s, %d processes:\n\n| load | client | recovery | successes | attempts |\n|---|---|---|---|---|\n", part.name, part.n)
		for li, row := range part.rs {
			for _, r := range row {
				p("| %.0f%% | %s | %s | %d of %d | %d |\n", 100*throttleLoads[li], r.client, recoveryText(r.recovered, r.recovery), okOf(r), r.requests, r.attempts)
			}
		}
	}
	p("\n![goodput over time with and without throttling](throttle.svg)\n")
	return b.String()
}

func okOf(r simMetaResult) int {
	n := 0
	for _, g := range r.goodput {
		n += g
	}
	return n
}

// write saves throttle.svg/png: goodput over time on loopback, one tile
// per load.
func (rep *throttleReport) write(dir string) error {
	const bucket = 500 * time.Millisecond
	var plots []*plot.Plot
	for li, row := range rep.loopback {
		prm := row[0].params
		pl := plot.New()
		pl.Title.Text = fmt.Sprintf("Goodput at %.0f%% load (%d processes)", 100*rep.loads[li], prm.clients)
		pl.X.Label.Text = "time (s)"
		pl.Y.Label.Text = "successful answers per second"
		shade(pl, prm.warmup.Seconds(), (prm.warmup + prm.trigger).Seconds(), prm.capacity*1.1)
		pl.Add(plotter.NewGrid())
		for _, r := range row {
			vals := perSecond(r.goodput[:ticks(prm.runFor())], bucket)
			pts := make(plotter.XYs, len(vals))
			for k, v := range vals {
				pts[k] = plotter.XY{X: (time.Duration(k)*bucket + bucket/2).Seconds(), Y: v}
			}
			line, err := plotter.NewLine(pts)
			if err != nil {
				continue
			}
			line.Color = throttleColors[r.lib]
			line.Width = vg.Points(1.3)
			if r.lib == libFailsafeT {
				line.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
			}
			pl.Add(line)
			pl.Legend.Add(r.lib, line)
		}
		pl.Legend.Top, pl.Legend.Left = true, true
		pl.Y.Min, pl.Y.Max = 0, prm.capacity*1.1
		plots = append(plots, pl)
	}
	return saveBoth(tiles(plots), 16*vg.Inch, 4.5*vg.Inch, filepath.Join(dir, "throttle"))
}

type tiles []*plot.Plot

func (t tiles) Save(w, h vg.Length, file string) error { return saveTiles(t, w, h, file) }
