package main

import (
	"fmt"
	"strings"
	"time"
)

// The design targets of the metastable scenario for retryhttp.
const (
	targetRecoveryLag = 2 * time.Second // after the bare transport's
	targetLoadRatio   = 1.2             // of the bare transport's load
)

func recoveryText(ok bool, d time.Duration) string {
	if !ok {
		return "**never**"
	}
	return round(d).String()
}

func (r *report) metaMarkdown(p func(string, ...any)) {
	m := r.meta
	prm := m[0].params
	p("\n## 7. Metastable failure\n\n")
	p("The sustaining effect of Bronson et al. (HotOS 2021) and Huang et al. (OSDI 2022), on loopback. The server is one worker in front of a FIFO queue: it serves %.0f requests/s (each takes %.2f ms), holds at most %d waiting (%.1f s of work; an arrival that finds the queue full gets 503 at once, at no cost), and never notices that a client stopped waiting, so it still serves, in its turn, every request whose client gave up: that work is wasted. A request's wait grows with the queue. The trigger: capacity falls to a tenth for %v, from %v after the start. Load: Poisson arrivals, open loop, at %.0f%% of capacity (%.0f/s) for %v, from one schedule shared by every contender, each request to one of %d clients picked at random; each client is one simulated process with its own transport and its library's recommended setup for a limit of %v per attempt. Contenders ran %s. Recovery: the time from the end of the trigger until goodput (successful answers per second) over a 1 s window is at least %.0f%% of the load offered in it, and stays so on average to the end of the run; **never** if not by the end (%v after the trigger). Load ×bare: the most attempts the server received in any 1 s window from the start of the trigger to the end, against the requests offered in the same window, which is what the bare transport sends (one attempt each). Attempts per request below 1.00 mean requests that never reached the handler: the client gave up on them first. The parameters make the bare transport recover on its own: without retries, the full queue drains at %.0f/s once capacity is back.\n\n",
		prm.capacity, 1000/prm.capacity, prm.queueLimit(), prm.queueSeconds, prm.trigger, prm.warmup, 100*prm.load, prm.load*prm.capacity, prm.runFor(), prm.clients, prm.limit,
		map[bool]string{true: "at once, each against its own server (-quick)", false: "one after another"}[r.cfg.metaConcurrent],
		100*metaRecoverShare, prm.after, prm.capacity*(1-prm.load))
	p("| contender | setup | requests | succeeded | attempts per request | retries from the trigger on | load ×bare, at most | work wasted | recovery after the trigger |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, x := range m {
		p("| %s | %s | %d | %d (%.0f%%) | %.2f | %d | %.2f | %d of %d served | %s |\n", x.lib, x.setup, x.requests, x.ok, 100*float64(x.ok)/float64(x.requests),
			float64(x.attempts)/float64(x.requests), x.retriesFromTrigger, x.maxLoadRatio, x.wasted, x.served, recoveryText(x.recovered, x.recovery))
	}
	for _, run := range r.metaMore {
		p("\nThe same load and schedule shared by **%d processes** instead of %d (each its own transport; the bare transport and retryhttp only):\n\n| contender | requests | succeeded | attempts per request | retries from the trigger on | load ×bare, at most | work wasted | recovery after the trigger |\n|---|---:|---:|---:|---:|---:|---:|---:|\n", run[0].params.clients, prm.clients)
		for _, x := range run {
			p("| %s | %d | %d (%.0f%%) | %.2f | %d | %.2f | %d of %d served | %s |\n", x.lib, x.requests, x.ok, 100*float64(x.ok)/float64(x.requests),
				float64(x.attempts)/float64(x.requests), x.retriesFromTrigger, x.maxLoadRatio, x.wasted, x.served, recoveryText(x.recovered, x.recovery))
		}
	}
	p("\n![goodput and load through the trigger, %d processes](metastable.svg)\n", prm.clients)
	if bare := m[0]; float64(bare.attempts) < 0.99*float64(bare.requests) {
		p("\n**Loopback artifact:** %d of the bare transport's requests never reached the server's handler. In the runs where this happened, the load the server saw from the bare clients fell to nothing for several seconds after the trigger and then arrived all at once: the loopback harness (client and server in one process, on 2 CPUs) stalled, not the library. The simulation (section 8) has no such stall.\n", bare.requests-bare.attempts)
	}
	if !r.metaNative {
		p("\n**Provisional:** the core did not enforce `Policy.AttemptTimeout` when this ran, so the bench applied the 1 s limit to each of retryhttp's attempts itself, below the Transport, with an error the Transport retries (a wrapped ECONNRESET). Rerun once the core enforces it.\n")
	}
}

func (r *report) simMarkdown(p func(string, ...any)) {
	s := r.sim
	f := s.cfg.fleet
	p("\n## 8. Fleet simulation\n\n")
	p("A discrete-event simulation in virtual time (`go run . -sim`; %v for everything in this section and the next, one run at a time; a run that has stayed recovered for %v after the trigger ends early). The server is the one of section 7: FIFO, no notice of clients that left, %.1f s of queue, 503 at once beyond it, a tenth of its capacity during the trigger. Arrivals are Poisson, each to a client picked at random. retryhttp's clients are **real `retryhttp.Transport` values** with their default Policy: their `Clock` is the simulation's virtual clock and their `Base` the simulated server, so the attempts, the backoff and its jitter, MaxElapsed and the `Budget` are retryhttp's own code; an attempt that runs out of its 1 s limit returns an error that wraps `ErrAttemptTimeout` (and ECONNRESET), which the Transport retries, while the server goes on working on it. Each request runs on a coroutine (`iter.Pull`) that hands control back to the scheduler whenever the Base waits for the server or the Clock sleeps. The peers are **models** of their documented defaults: go-retryablehttp (model) makes 5 attempts, waiting 1, 2, 4, 8 s without jitter, retrying every error and 5xx; failsafehttp (model) makes 3 attempts without delay. resty (model) makes 4 attempts, waiting a jittered 100–200, 200–400 and 400–800 ms, retrying every error, 429 and 5xx.\n\n",
		s.took.Round(100*time.Millisecond), simSettled, f.queueSeconds)
	p("### Agreement with the loopback run\n\nThe scenario of section 7 with the same parameters (%d clients, %.0f/s, %.0f%% load, %v trigger), simulated:\n\n", r.cfg.meta.clients, r.cfg.meta.capacity, 100*r.cfg.meta.load, r.cfg.meta.trigger)
	p("| contender | recovery, loopback | recovery, simulated | attempts per request, loopback | simulated |\n|---|---:|---:|---:|---:|\n")
	for _, sm := range s.loopback {
		lb, ok := findMeta(r.meta, sm.client)
		loop, la := "not run", ""
		if ok {
			loop, la = recoveryText(lb.recovered, lb.recovery), fmt.Sprintf("%.2f", float64(lb.attempts)/float64(lb.requests))
		}
		p("| %s | %s | %s | %s | %.2f |\n", sm.client, loop, recoveryText(sm.recovered, sm.recovery), la, float64(sm.attempts)/float64(sm.requests))
	}
	if len(r.meta) > 0 {
		agree, total := agreement(r.meta, s.loopback)
		p("\nThey agree on which contenders recover for %d of %d.\n", agree, total)
	}
	p("\n### Where each recovers, at the loopback scale\n\nThe same scenario (10 s trigger) swept over the offered load: R recovered by the end, **S** stuck.\n\n| contender | %s |\n|---|%s\n", joinLoads(s.boundaryLoads), strings.Repeat("---|", len(s.boundaryLoads)))
	for _, c := range simClients {
		var cells []string
		for _, x := range s.boundary[c.name] {
			cells = append(cells, map[bool]string{true: "R", false: "**S**"}[x.recovered])
		}
		p("| %s | %s |\n", clientLabel(c), strings.Join(cells, " | "))
	}
	p("\n### The fleet: stability map\n\nThe same total load shared by %s processes (at 90%% load each sends about %s requests/s), capacity %.0f/s, %.1f s of queue, %v of warm-up; the trigger's length and the offered load swept; each cell recovered (green, darker the later) or stuck at the end, %v after the trigger (red). One row of maps per fleet size.%s\n\n![stability map](stability.svg)\n\n",
		joinInts(s.cfg.fleets), perProcessRates(s.cfg.fleets, 0.9*f.capacity), f.capacity, f.queueSeconds, f.warmup, f.after, namedWaitMapText(s.cfg.retryAfters))
	p("The longest trigger (s) each recovers from, per offered load (— none of those swept), and, for retryhttp, the cells where it recovers more than %v after the bare transport or not at all while the bare transport does:\n\n| processes | contender | %s | behind bare |\n|---:|---|%s---:|\n", targetRecoveryLag, joinLoads(s.cfg.loads), strings.Repeat("---:|", len(s.cfg.loads)))
	for _, n := range s.cfg.fleets {
		for _, c := range s.cfg.mapClients() {
			var cells []string
			for li := range s.cfg.loads {
				longest := "—"
				for ti, trig := range s.cfg.triggers {
					if s.sweep[n][c.name][li][ti].recovered {
						longest = fmt.Sprint(trig.Seconds())
					} else {
						break
					}
				}
				cells = append(cells, longest)
			}
			behind := ""
			if c.name != "bare transport" {
				behind = fmt.Sprintf("%d of %d", s.behindBare(n, c.name), len(s.cfg.loads)*len(s.cfg.triggers))
			}
			p("| %d | %s | %s | %s |\n", n, clientLabel(c), strings.Join(cells, " | "), behind)
		}
	}
}

// namedWaitMapText says what the map's named-wait rows are, if any.
func namedWaitMapText(ns []int) string {
	if len(ns) == 0 {
		return ""
	}
	return fmt.Sprintf(" The rows `retryhttp, Retry-After: N` (N = %s) are retryhttp against the same server, but one that names a wait of N s on its 503s: the Transport reads the header, so that the wait, its jitter and whether the Budget is charged are its own decision. What these rows leave out: the quota holds between requests (a hold after a 503 with Retry-After makes later requests wait, some of them for another request's answer in real time, which a simulation that runs one request at a time cannot play), so each request goes to a destination of its own, which only its own retries share; the Budget is `NewBudget(0.1, 3)`, one window per process, as the default per-destination Budget is for a process with one destination. The bare transport ignores the header: its map is the reference.", joinInts(ns))
}

// behindBare counts the cells of the map of fleet size n where client
// recovers more than targetRecoveryLag after the bare transport, or not at
// all while the bare transport does.
func (s *simReport) behindBare(n int, client string) int {
	count := 0
	for li := range s.cfg.loads {
		for ti := range s.cfg.triggers {
			b, c := s.sweep[n]["bare transport"][li][ti], s.sweep[n][client][li][ti]
			if b.recovered && (!c.recovered || c.recovery > b.recovery+targetRecoveryLag) {
				count++
			}
		}
	}
	return count
}

func joinInts(ns []int) string {
	var parts []string
	for _, n := range ns {
		parts = append(parts, fmt.Sprint(n))
	}
	return strings.Join(parts, ", ")
}

func perProcessRates(ns []int, total float64) string {
	var parts []string
	for _, n := range ns {
		parts = append(parts, fmt.Sprintf("%.2g", total/float64(n)))
	}
	return strings.Join(parts, ", ")
}

func (r *report) designsMarkdown(p func(string, ...any)) {
	s := r.sim
	p("\n## 9. Budget designs on three scenarios, at every fleet size\n\nEach design runs in retryhttp's real Transport with its default Policy, in the simulation. The designs marked retryhttp's code are its own `Budget`; every other is a **model**: a gate in the simulation that decides, where the Transport would sleep before a retry, whether the retry goes ahead (the Transport itself then holds an `UnlimitedBudget`). Scenarios: the **total outage** of section 2 (100 concurrent requests, one fresh process, only 503); the **blip** of section 3 (200 requests over 6 s, one fresh process, 503 for the first 3 s), and the same **after history**: one process sends 30 requests/s for 60 s, all answered, then 6 s more with 503 for the first 3 s (the successes among those last 180 requests, each on its own coroutine: the default backoff's waits of 1, 2 and 4 s ±50%% take a request's last retry past the blip, as far as the budget allows it; `go test -run TestOpenLoopBlipWithHistory` counts the requests started in the blip apart); the **trigger** of section 7 (%d processes, %.0f%% load, %v trigger; bare transport: recovery after %s), and the **fleet**: the same total load at %.0f/s, 90%% load and a 10 s trigger, shared by %s processes (bare transport: %s). Each fleet cell gives the recovery after the trigger, the attempts per request, and the most attempts in any 1 s window from the trigger on against the requests offered in it (×bare). Wins: at most %.2f attempts per request in the outage, recovery after the trigger no more than %v after the bare transport's, at the loopback scale and at every fleet size.\n\n",
		r.cfg.meta.clients, 100*r.cfg.meta.load, r.cfg.meta.trigger, recoveryText(s.loopback[0].recovered, s.loopback[0].recovery), s.cfg.fleet.capacity,
		joinInts(s.cfg.fleets), s.bareFleetsText(), targetAmplification, targetRecoveryLag)
	var head, rule string
	for _, n := range s.cfg.fleets {
		head += fmt.Sprintf(" %d processes |", n)
		rule += "---:|"
	}
	p("| design | outage: attempts per request | answer p50 | max | blip: succeeded | after history | trigger: recovery | attempts per request | load ×bare |%s wins |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|%s---|\n", head, rule)
	bare := s.loopback[0]
	for _, d := range s.designs {
		wins := d.outageAmp <= targetAmplification && d.trig.recovered && bare.recovered && d.trig.recovery <= bare.recovery+targetRecoveryLag
		var cells []string
		for fi, n := range s.cfg.fleets {
			f := d.fleets[fi]
			b := s.fleetBare(n)
			wins = wins && (!b.recovered || (f.recovered && f.recovery <= b.recovery+targetRecoveryLag))
			cells = append(cells, fmt.Sprintf("%s, %.2f, ×%.2f", recoveryText(f.recovered, f.recovery), float64(f.attempts)/float64(f.requests), f.peak))
		}
		p("| %s | %.2f | %v | %v | %d of %d | %d of %d | %s | %.2f | ×%.2f | %s | %s |\n", d.d.label(), d.outageAmp, round(d.outageP50), round(d.outageMax), d.blipOK, d.blipN, d.histOK, d.histN,
			recoveryText(d.trig.recovered, d.trig.recovery), float64(d.trig.attempts)/float64(d.trig.requests), d.trig.peak, strings.Join(cells, " | "), yesNo(wins))
	}
	p("\nAnswer time: how long the callers waited for their answer in the total outage; a design that waits for tokens makes every caller of a dead server wait that long. A fixed burst per process is multiplied by the fleet: at 10,000 processes each sends about one request every 11 s, so a burst of 10 covers every retry of its first few failed requests, and the fleet brings 100,000 retries to the first seconds of a failure. A window of earned successes holds, fleet-wide, ratio × the server's goodput of the window, whatever the number of processes.\n")
}

// fleetBare is the bare transport's run of the map of fleet size n at 90%
// load and a 10 s trigger.
func (s *simReport) fleetBare(n int) simMetaResult {
	for li, load := range s.cfg.loads {
		for ti, trig := range s.cfg.triggers {
			if load == 0.9 && trig == 10*time.Second {
				return s.sweep[n]["bare transport"][li][ti]
			}
		}
	}
	return simMetaResult{}
}

func (s *simReport) bareFleetsText() string {
	var parts []string
	for _, n := range s.cfg.fleets {
		b := s.fleetBare(n)
		parts = append(parts, recoveryText(b.recovered, b.recovery))
	}
	return strings.Join(parts, ", ")
}

func findMeta(rs []metaResult, lib string) (metaResult, bool) {
	for _, r := range rs {
		if r.lib == lib {
			return r, true
		}
	}
	return metaResult{}, false
}

func joinLoads(loads []float64) string {
	var parts []string
	for _, l := range loads {
		parts = append(parts, fmt.Sprintf("%.0f%%", 100*l))
	}
	return strings.Join(parts, " | ")
}

func clientLabel(c simClient) string {
	if c.model {
		return c.name + " (model)"
	}
	return c.name
}
