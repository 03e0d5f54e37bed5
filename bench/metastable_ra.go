package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ---- 7b. Metastable failure: named waits, and a young fleet ----
//
// Issue 23's first two cases on loopback. The server of section 7 may name
// a wait on its full queue's 503s (Retry-After: N, as the 503 pages tell
// server admins to): each N of -meta-retry-after is its own run, with every
// contender at the first process count of -meta-procs and the bare
// transport and retryhttp at the others. And a young fleet: many processes
// that, at the trigger, have sent little (a short warm-up at a lower rate),
// so that many hold the burst of a process that has seen no success yet.

// metaRARun is the metastable scenario with one Retry-After value: one
// []metaResult per process count of -meta-procs, in order.
type metaRARun struct {
	retryAfter int // seconds; 0: no Retry-After
	runs       [][]metaResult
}

// youngFleet is the young-fleet run of the metastable scenario: procs
// processes, a warm-up of warmup at rate requests a second in all before
// the trigger. procs 0: no such run.
type youngFleet struct {
	procs  int
	warmup time.Duration
	rate   float64
}

// params returns the metastable parameters of the young fleet, the rest as
// in base.
func (y youngFleet) params(base metaParams) metaParams {
	p := base
	p.clients, p.warmup, p.warmupRate = y.procs, y.warmup, y.rate
	return p
}

// parseRetryAfters reads -meta-retry-after: whole seconds, comma-separated;
// 0 stands for no Retry-After, and an empty list for 0 alone.
func parseRetryAfters(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" || f == "none" {
			f = "0"
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("-meta-retry-after: %q is not a number of seconds", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// parseYoungFleet reads -meta-warmup: PROCESSES,WARM-UP,RATE, or WARM-UP
// alone for 2,000 processes at 160 requests/s; empty or 0 for none.
func parseYoungFleet(s string) (youngFleet, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "0" {
		return youngFleet{}, nil
	}
	y := youngFleet{procs: 2000, rate: 160}
	parts := strings.Split(s, ",")
	bad := fmt.Errorf("-meta-warmup: %q is not PROCESSES,WARM-UP,RATE (such as 2000,10s,160) nor a warm-up (such as 10s)", s)
	var err error
	switch len(parts) {
	case 1:
		y.warmup, err = time.ParseDuration(parts[0])
	case 3:
		if y.procs, err = strconv.Atoi(strings.TrimSpace(parts[0])); err != nil {
			return youngFleet{}, bad
		}
		if y.warmup, err = time.ParseDuration(strings.TrimSpace(parts[1])); err != nil {
			return youngFleet{}, bad
		}
		y.rate, err = strconv.ParseFloat(strings.TrimSpace(parts[2]), 64)
	default:
		return youngFleet{}, bad
	}
	if err != nil || y.procs < 1 || y.warmup <= 0 || y.rate <= 0 {
		return youngFleet{}, bad
	}
	return y, nil
}

func (r *report) metaRAMarkdown(p func(string, ...any)) {
	p("\n## 7b. Metastable failure: named waits, and a young fleet\n\n")
	if len(r.metaRA) > 0 {
		prm := r.metaRA[0].runs[0][0].params
		p("The scenario of section 7 (%.0f requests/s of capacity, %.0f%% load, a tenth of the capacity for %v from %v on, %v per attempt, each process its own transport, default Policy but for AttemptTimeout), run once per `Retry-After` the server's full-queue 503s carry (`-meta-retry-after`; none is section 7's own run). Recovered: the time from the end of the trigger until goodput is back to %.0f%% of the offered load for good, or **never**. Mean load ÷ bare: the attempts the server received from the start of the trigger to the end of the offered load, against the requests offered in that span, which is the bare transport's load (one attempt each); peak ÷ bare: the same over the fullest 1 s window. Goodput after: the successes from the end of the trigger to the end of the offered load, against the requests offered in that span.\n\n",
			prm.capacity, 100*prm.load, prm.trigger, prm.warmup, prm.limit, 100*metaRecoverShare)
		p("| `Retry-After` on the 503s | processes | contender | bare: recovered | recovered | mean load ÷ bare | peak ÷ bare | goodput after |\n|---|---:|---|---:|---:|---:|---:|---:|\n")
		for _, ra := range r.metaRA {
			named := "none"
			if ra.retryAfter > 0 {
				named = fmt.Sprintf("%d s", ra.retryAfter)
			}
			for _, run := range ra.runs {
				metaRARows(p, named, run)
			}
		}
	}
	if len(r.metaYoung) > 0 {
		prm := r.metaYoung[0].params
		p("\n**A young fleet**: %d processes, each its own transport, a warm-up of %v at %.0f requests/s in all (about %.2f requests per process) before the trigger, then %.0f%% load (%.0f/s); the rest as in section 7, no `Retry-After`. At the trigger, many of the processes have not yet had a success (`-meta-warmup`).\n\n",
			prm.clients, prm.warmup, prm.warmupRate, prm.warmupRate*prm.warmup.Seconds()/float64(prm.clients), 100*prm.load, prm.load*prm.capacity)
		p("| `Retry-After` on the 503s | processes | contender | bare: recovered | recovered | mean load ÷ bare | peak ÷ bare | goodput after |\n|---|---:|---|---:|---:|---:|---:|---:|\n")
		metaRARows(p, "none", r.metaYoung)
	}
}

// metaRARows writes one row per contender of run, the bare transport's
// recovery beside each.
func metaRARows(p func(string, ...any), named string, run []metaResult) {
	bare := run[0]
	for _, x := range run[1:] {
		p("| %s | %d | %s | %s | %s | ×%.2f | ×%.2f | %.0f%% |\n", named, x.params.clients, x.lib,
			recoveryText(bare.recovered, bare.recovery), recoveryText(x.recovered, x.recovery), x.meanLoadRatio, x.maxLoadRatio, 100*x.goodputAfter)
	}
}

// metaRATargets checks issue 23's targets for retryhttp in the runs with a
// named wait and in the young fleet.
func (r *report) metaRATargets(check func(ok bool, format string, a ...any)) {
	verdict := func(what string, bare, ours metaResult, peak float64) {
		check(ours.recovered && bare.recovered && ours.recovery <= bare.recovery+targetRecoveryLag,
			"metastable failure, %s, %d processes: recovered %s after the trigger, the bare transport %s (target: no more than %v after it)",
			what, ours.params.clients, recoveryText(ours.recovered, ours.recovery), recoveryText(bare.recovered, bare.recovery), targetRecoveryLag)
		check(ours.meanLoadRatio <= targetLoadRatio && ours.maxLoadRatio <= peak,
			"metastable failure, %s, %d processes: mean load ×%.2f the bare transport's, peak ×%.2f (targets ≤ ×%.1f and ≤ ×%.1f)",
			what, ours.params.clients, ours.meanLoadRatio, ours.maxLoadRatio, targetLoadRatio, peak)
	}
	for _, ra := range r.metaRA {
		if ra.retryAfter == 0 {
			continue // section 7's own targets
		}
		for _, run := range ra.runs {
			if len(run) > 1 {
				verdict(fmt.Sprintf("Retry-After: %d", ra.retryAfter), run[0], run[1], targetNamedPeak)
			}
		}
	}
	if len(r.metaYoung) > 1 {
		verdict(fmt.Sprintf("a young fleet (%v warm-up)", r.metaYoung[0].params.warmup), r.metaYoung[0], r.metaYoung[1], targetNamedPeak)
	}
}

// targetNamedPeak is issue 23's bound on the peak load, against the bare
// transport's, with named waits and in a young fleet.
const targetNamedPeak = 1.5
