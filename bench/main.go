// Command bench measures retryhttp side by side with go-retryablehttp,
// failsafe-go's failsafehttp and resty v3, each with its own defaults, and the
// bare transport as the floor, in one run on one machine, against servers on
// loopback. It prints a markdown report and writes it, with plots, to
// results/.
//
//	go run .                       # every scenario in full, about ten minutes
//	go run . -quick                # a smaller version, about a minute on a 2-core machine (longer when other work holds its cores)
//	go run . -sim                  # only the fleet simulation, in full (under a minute)
//	go run . -only metastable,sim  # only the scenarios named (printed; RESULTS.md is left alone)
//	go run . -meta-procs 20,2000   # the metastable scenario's load shared by 20, then by 2,000 processes
//	go run . -meta-retry-after 0,1,5  # the metastable scenario without, then with Retry-After: 1 and 5 on its 503s
//	go run . -meta-warmup 2000,10s,160  # and a young fleet: 2,000 processes, a 10 s warm-up at 160 requests/s
//
// Scenario names for -only: happy, outage, brief, herd, overload, forms,
// metastable, sim, quota, endpoints, throttle, restart, and the hedging
// scenarios tail, slow and metastable-hedge.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// config sizes the scenarios.
type config struct {
	quick          bool
	benchTime      string
	benchRounds    int
	pairs          int
	pairRun        time.Duration // how long each run of a block of pairedRatio lasts, about
	concurrentPuts int
	outageClients  int
	briefRequests  int
	outage         time.Duration
	herdClients    int
	overloadRPS    float64
	overloadFor    time.Duration
	meta           metaParams
	metaProcs      []int // the process counts the metastable scenario runs with, the same total load shared
	metaConcurrent bool  // run the contenders of the metastable scenario at once
	metaPeers      bool  // run the peers too at the first of metaProcs
	throttleRA     int   // the Retry-After (s) of the throttling scenario's 503s on loopback; 0: none
	metaRetryAfter []int // the Retry-After values (s) the metastable scenario's 503s carry, one run each; 0: none
	metaYoung      youngFleet
	sim            simConfig
	hedge          hedgeParams
	only           map[string]bool // nil: every scenario
	out            string
}

var scenarioNames = []string{"happy", "outage", "brief", "herd", "overload", "forms", "metastable", "sim", "quota", "endpoints", "throttle", "restart", "tail", "slow", "metastable-hedge"}

// runs reports whether the scenario named is part of this run.
func (c config) runs(name string) bool { return c.only == nil || c.only[name] }

func main() {
	testing.Init() // testing.Benchmark reads the test flags
	cfg := config{
		benchTime: "1s", benchRounds: 3, pairs: 25, pairRun: 50 * time.Millisecond, concurrentPuts: 100, outageClients: 100,
		briefRequests: 200, outage: 3 * time.Second, herdClients: 200,
		overloadRPS: 400, overloadFor: 5 * time.Second,
		meta: metaFullParams(), sim: simFullConfig(), hedge: hedgeFullParams(),
	}
	var only, metaProcs, metaRetryAfter, metaWarmup string
	var simOnly bool
	flag.BoolVar(&cfg.quick, "quick", false, "run a smaller version of every scenario, all but the happy path at once (about a minute)")
	flag.BoolVar(&simOnly, "sim", false, "run only the fleet simulation (same as -only sim)")
	flag.StringVar(&only, "only", "", "run only these scenarios, comma-separated: "+strings.Join(scenarioNames, ",")+"; prints, and writes no RESULTS.md")
	flag.StringVar(&metaProcs, "meta-procs", "20,1000", "the process counts, comma-separated, that share the load of the metastable scenario on loopback; the first also runs the peers and is the one simulated")
	flag.StringVar(&metaRetryAfter, "meta-retry-after", "0,1,5", "the Retry-After values in seconds, comma-separated, that the metastable scenario's 503s carry, each its own run; 0 or empty: none (-quick: 0 unless given)")
	flag.StringVar(&metaWarmup, "meta-warmup", "2000,10s,160", "a young fleet for the metastable scenario: PROCESSES,WARM-UP,RATE (a warm-up of WARM-UP at RATE requests/s in all before the trigger), or WARM-UP alone for 2000 processes at 160/s; empty or 0: none (-quick: none unless given)")
	flag.IntVar(&cfg.throttleRA, "throttle-retry-after", 0, "the Retry-After in seconds that the throttling scenario's full-queue 503s carry on loopback; 0: none")
	flag.BoolVar(&cfg.metaPeers, "meta-peers", true, "run the peers in the metastable scenario at the first -meta-procs count too (false: the bare transport and retryhttp only, at every count)")
	flag.StringVar(&cfg.out, "out", "results", "the folder for RESULTS.md and the plots (empty: print only); -quick and -only print only unless -out is given")
	flag.Parse()
	if simOnly {
		only = strings.Trim(only+",sim", ",")
	}
	if only != "" {
		cfg.only = map[string]bool{}
		for _, name := range strings.Split(only, ",") {
			if !slices.Contains(scenarioNames, name) {
				fail(fmt.Errorf("unknown scenario %q for -only; known: %s", name, strings.Join(scenarioNames, ",")))
			}
			cfg.only[name] = true
		}
	}
	for _, s := range strings.Split(metaProcs, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			fail(fmt.Errorf("-meta-procs: %q is not a number of processes", s))
		}
		cfg.metaProcs = append(cfg.metaProcs, n)
	}
	if cfg.quick && !flagGiven("meta-retry-after") {
		metaRetryAfter = "0"
	}
	if cfg.quick && !flagGiven("meta-warmup") {
		metaWarmup = ""
	}
	var err error
	if cfg.metaRetryAfter, err = parseRetryAfters(metaRetryAfter); err != nil {
		fail(err)
	}
	if cfg.metaYoung, err = parseYoungFleet(metaWarmup); err != nil {
		fail(err)
	}
	if (cfg.quick || cfg.only != nil) && !flagGiven("out") {
		cfg.out = "" // the committed results come from full runs of everything
	}
	if cfg.quick {
		cfg.benchTime, cfg.benchRounds, cfg.pairs, cfg.pairRun = "100ms", 1, 3, 25*time.Millisecond
		cfg.briefRequests, cfg.outage = 60, 1500*time.Millisecond
		cfg.herdClients = 100
		cfg.overloadRPS, cfg.overloadFor = 300, 2*time.Second // past the 1 s warm-up, so that goodput and load have a window
		cfg.meta.warmup, cfg.meta.trigger, cfg.meta.after, cfg.meta.grace = 3*time.Second, 3*time.Second, 9*time.Second, 2*time.Second
		// Half the capacity, and so half the requests and the CPU of each
		// loopback run: the queue still holds 1.5 s of work and drains at
		// a tenth of the capacity, so every phase lasts as long.
		cfg.meta.capacity /= 2
		cfg.metaConcurrent = true
		if !flagGiven("meta-procs") {
			// 1,000 processes at 0.27 requests/s each would mostly not
			// have sent a request in the quick run's 3 s of warm-up.
			cfg.metaProcs = []int{20, 200}
		}
		cfg.sim = simQuickConfig()
		cfg.hedge.rate, cfg.hedge.tailFor = 50, 4*time.Second
		cfg.hedge.before, cfg.hedge.slowFor, cfg.hedge.after = time.Second, 2*time.Second, time.Second
	}
	cfg.meta.clients = cfg.metaProcs[0]
	if err := flag.Set("test.benchtime", cfg.benchTime); err != nil {
		fail(err)
	}
	if err := run(cfg); err != nil {
		fail(err)
	}
}

func flagGiven(name string) bool {
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == name })
	return given
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

func run(cfg config) error {
	started := time.Now()
	step := func(name string) { fmt.Fprintf(os.Stderr, "%6.1fs  %s\n", time.Since(started).Seconds(), name) }
	var rep report
	rep.cfg = cfg
	rep.machine = fmt.Sprintf("%s/%s, %d CPUs, %s", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version())
	rep.date = time.Now().UTC().Format("2006-01-02")

	if cfg.runs("happy") {
		step("happy path")
		rep.happy = happyPath(cfg)
	}
	// -quick runs everything but the happy path at once, in lanes: those
	// that mostly wait (the outages, the herd, the overload, the forms, the
	// spent quota, the endpoints and the restart) beside the loopback
	// metastable runs, the throttling and the simulation, to stay under a
	// minute; the full run runs each alone.
	var side sync.WaitGroup
	metastables := func() {
		if cfg.runs("metastable") {
			for _, ra := range cfg.metaRetryAfter {
				p := cfg.meta
				p.retryAfter = ra
				named := ""
				if ra > 0 {
					named = fmt.Sprintf(", Retry-After: %d", ra)
				}
				step("metastable failure" + named)
				contenders := libraries
				if !cfg.metaPeers {
					contenders = libraries[:2]
				}
				first, native := metastable(p, cfg.metaConcurrent, contenders)
				runs := [][]metaResult{first}
				for _, n := range cfg.metaProcs[1:] {
					step(fmt.Sprintf("metastable failure, %d processes%s", n, named))
					p.clients = n
					// The peers' failure is plain at 20 processes already: at
					// larger counts only the bare transport and retryhttp run.
					more, _ := metastable(p, cfg.metaConcurrent, libraries[:2])
					runs = append(runs, more)
				}
				if ra == 0 {
					rep.meta, rep.metaMore, rep.metaNative = first, runs[1:], native
				}
				rep.metaRA = append(rep.metaRA, metaRARun{retryAfter: ra, runs: runs})
			}
			if y := cfg.metaYoung; y.procs > 0 {
				step(fmt.Sprintf("metastable failure, a young fleet of %d processes", y.procs))
				rep.metaYoung, _ = metastable(y.params(cfg.meta), cfg.metaConcurrent, libraries[:2])
			}
		}
	}
	metastableHedge := func() {
		if cfg.runs("metastable-hedge") {
			step("hedging: metastable failure")
			rep.metaHedge = metastableHedged(cfg.meta, cfg.metaConcurrent)
		}
	}
	// The spent quota, the endpoints and the restart mostly wait: their
	// own section, after the others.
	var quotaMD, endpointsMD string
	var restarted []restartResult
	quota := func() {
		if cfg.runs("quota") {
			step("spent quota")
			quotaMD = quotaMarkdown(quotaScenario())
		}
	}
	endpoints := func() {
		if cfg.runs("endpoints") {
			step("one endpoint rate-limited")
			endpointsMD = endpointsMarkdown(endpointsScenario())
		}
	}
	restart := func() {
		if cfg.runs("restart") {
			step("restart")
			restarted = restartScenario()
		}
	}
	// The simulation, and the hedging scenarios that run each contender
	// against its own server at once.
	sim := func() {
		if cfg.runs("sim") {
			step("fleet simulation")
			rep.sim = runSim(cfg.sim, cfg.meta, step)
		}
	}
	hedging := func() {
		if cfg.runs("tail") {
			step("hedging: heavy tail")
			rep.tail = heavyTail(cfg.hedge)
		}
		if cfg.runs("slow") {
			step("hedging: everything slow")
			rep.slow = everythingSlow(cfg.hedge)
		}
	}
	outage := func() {
		if cfg.runs("outage") {
			step("total outage")
			rep.outage = totalOutage(cfg)
		}
	}
	var throttled *throttleReport
	throttle := func() {
		if cfg.runs("throttle") {
			step("adaptive throttling")
			throttled = throttleScenario(cfg, step)
		}
	}
	if cfg.quick {
		// Two lanes of about 35 s of loopback metastable runs: the two
		// process counts one after the other, so that they do not
		// overlap; and the throttling's, then the hedged run, so that
		// about as many contenders run at once in both halves. The rest
		// is shorter.
		side.Go(metastables)
		side.Go(func() { throttle(); metastableHedge() })
		side.Go(sim)
		side.Go(hedging)
		side.Go(quota) // 30 requests, 5 a window
		side.Go(endpoints)
		side.Go(restart) // 5 requests a second
		side.Go(outage)  // go-retryablehttp's backoff alone takes 15 s
	} else {
		outage()
	}
	if cfg.runs("brief") {
		step("brief outage")
		rep.brief = briefOutage(cfg)
	}
	if cfg.runs("herd") {
		step("herd")
		rep.herd = herd(cfg)
	}
	if cfg.runs("overload") {
		step("overload")
		rep.overload = overload(cfg)
	}
	if cfg.runs("forms") {
		step("Retry-After forms")
		rep.forms = forms(cfg)
	}
	if cfg.quick {
		side.Wait()
	} else {
		metastables()
		metastableHedge()
		sim()
		hedging()
		quota()
		endpoints()
		restart()
		throttle()
	}
	// Scenarios of their own files, reported after the others.
	extra := quotaMD + endpointsMD + restartMarkdown(restarted)
	if throttled != nil {
		extra += throttled.markdown()
	}
	rep.took = time.Since(started)
	step("done")

	md := rep.markdown() + extra
	fmt.Print(md)
	if cfg.out == "" {
		return nil
	}
	if err := os.MkdirAll(cfg.out, 0o755); err != nil {
		return fmt.Errorf("making the results folder: %w", err)
	}
	if err := writePlots(cfg.out, &rep); err != nil {
		return err
	}
	if throttled != nil {
		if err := throttled.write(cfg.out); err != nil {
			return err
		}
	}
	if cfg.only != nil {
		fmt.Fprintf(os.Stderr, "wrote the plots of this partial run in %s; RESULTS.md is written by full runs only\n", cfg.out)
		return nil
	}
	name := "RESULTS.md"
	if err := os.WriteFile(filepath.Join(cfg.out, name), []byte(md), 0o644); err != nil {
		return fmt.Errorf("writing the results: %w", err)
	}
	fmt.Fprintf(os.Stderr, "wrote %s and the plots in %s\n", name, cfg.out)
	return nil
}

// versions lists the contenders and the versions measured.
func versions() string {
	var parts []string
	for _, lib := range libraries {
		parts = append(parts, fmt.Sprintf("%s (%s)", lib.name, version(lib.module)))
	}
	return strings.Join(parts, ", ")
}
