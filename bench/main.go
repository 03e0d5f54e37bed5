// Command bench measures retryhttp side by side with go-retryablehttp and
// failsafe-go's failsafehttp, each with its own defaults, and the bare
// transport as the floor, in one run on one machine, against servers on
// loopback. It prints a markdown report and writes it, with plots, to
// results/.
//
//	go run .          # every scenario in full, a few minutes
//	go run . -quick   # a smaller version, under a minute
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// config sizes the scenarios.
type config struct {
	quick          bool
	benchTime      string
	benchRounds    int
	pairs          int
	concurrentPuts int
	outageClients  int
	briefRequests  int
	outage         time.Duration
	herdClients    int
	overloadRPS    float64
	overloadFor    time.Duration
	out            string
}

func main() {
	testing.Init() // testing.Benchmark reads the test flags
	cfg := config{
		benchTime: "1s", benchRounds: 3, pairs: 25, concurrentPuts: 100, outageClients: 100,
		briefRequests: 200, outage: 3 * time.Second, herdClients: 200,
		overloadRPS: 400, overloadFor: 5 * time.Second,
	}
	flag.BoolVar(&cfg.quick, "quick", false, "run a smaller version of every scenario (under a minute)")
	flag.StringVar(&cfg.out, "out", "results", "the folder for RESULTS.md and the plots (empty: print only); -quick prints only unless -out is given")
	flag.Parse()
	if cfg.quick && !flagGiven("out") {
		cfg.out = "" // the committed results come from full runs
	}
	if cfg.quick {
		cfg.benchTime, cfg.benchRounds, cfg.pairs = "200ms", 1, 7
		cfg.briefRequests, cfg.outage = 60, 1500*time.Millisecond
		cfg.herdClients = 100
		cfg.overloadRPS, cfg.overloadFor = 300, 2*time.Second
	}
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

	step("happy path")
	rep.happy = happyPath(cfg)
	step("total outage")
	rep.outage = totalOutage(cfg)
	step("brief outage")
	rep.brief = briefOutage(cfg)
	step("herd")
	rep.herd = herd(cfg)
	step("overload")
	rep.overload = overload(cfg)
	step("Retry-After forms")
	rep.forms = forms(cfg)
	rep.took = time.Since(started)
	step("done")

	md := rep.markdown()
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
