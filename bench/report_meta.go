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
	p("\n![goodput and load through the trigger](metastable.svg)\n")
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
	p("\n### The fleet: stability map\n\n%d clients (each sends about %.2f requests/s at 90%% load), capacity %.0f/s, %.1f s of queue, %v of warm-up; the trigger's length and the offered load swept; each cell recovered (green, darker the later) or stuck at the end, %v after the trigger (red).\n\n![stability map](stability.svg)\n\n",
		f.clients, 0.9*f.capacity/float64(f.clients), f.capacity, f.queueSeconds, f.warmup, f.after)
	p("The longest trigger (s) each recovers from, per offered load (— none of those swept):\n\n| contender | %s |\n|---|%s\n", joinLoads(s.cfg.loads), strings.Repeat("---:|", len(s.cfg.loads)))
	for _, c := range simClients {
		var cells []string
		for li := range s.cfg.loads {
			longest := "—"
			for ti, trig := range s.cfg.triggers {
				if s.sweep[c.name][li][ti].recovered {
					longest = fmt.Sprint(trig.Seconds())
				} else {
					break
				}
			}
			cells = append(cells, longest)
		}
		p("| %s | %s |\n", clientLabel(c), strings.Join(cells, " | "))
	}
}

func (r *report) designsMarkdown(p func(string, ...any)) {
	s := r.sim
	p("\n## 9. Budget designs on three scenarios\n\nEach design runs in retryhttp's real Transport with its default Policy, in the simulation. retryhttp's design is its own `Budget`, which earns `ratio` tokens for each success (a response not retried); every other is a **model**: a gate in the simulation that decides, where the Transport would sleep before a retry, whether the retry goes ahead (the Transport itself then holds an `UnlimitedBudget`). retryhttp's design also runs as a model (\"deposit on success\"), to check the gate against the real code; \"first version\" is the design retryhttp had before this comparison, a deposit for each request. Scenarios: the **total outage** of section 2 (100 concurrent requests, one process, only 503); the **blip** of section 3 (200 requests over 6 s, one process, 503 for the first 3 s); the **trigger** of section 7 (%d processes, %.0f%% load, %v trigger; bare transport: recovery after %s), and the same at the **fleet** scale (%d processes, 90%% load, 10 s trigger; bare transport: %s). Wins all three: at most %.2f attempts per request in the outage, at least 95%% successes through the blip, and recovery after the trigger no more than %v after the bare transport's.\n\n",
		r.cfg.meta.clients, 100*r.cfg.meta.load, r.cfg.meta.trigger, recoveryText(s.loopback[0].recovered, s.loopback[0].recovery), s.cfg.fleet.clients,
		recoveryText(s.designsBareFleet()), targetAmplification, targetRecoveryLag)
	p("| design | outage: attempts per request | answer p50 | max | blip: succeeded | trigger: recovery | attempts per request | wins all three | fleet: recovery | attempts per request | fleet within %v of bare |\n|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---|\n", targetRecoveryLag)
	bare := s.loopback[0]
	bareFleet := s.fleetBare()
	for _, d := range s.designs {
		wins := d.outageAmp <= targetAmplification && float64(d.blipOK) >= 0.95*float64(d.blipN) &&
			d.trig.recovered && bare.recovered && d.trig.recovery <= bare.recovery+targetRecoveryLag
		fleetOK := d.fleet.recovered && bareFleet.recovered && d.fleet.recovery <= bareFleet.recovery+targetRecoveryLag
		p("| %s | %.2f | %v | %v | %d of %d | %s | %.2f | %s | %s | %.2f | %s |\n", d.d.label(), d.outageAmp, round(d.outageP50), round(d.outageMax), d.blipOK, d.blipN,
			recoveryText(d.trig.recovered, d.trig.recovery), float64(d.trig.attempts)/float64(d.trig.requests), yesNo(wins),
			recoveryText(d.fleet.recovered, d.fleet.recovery), float64(d.fleet.attempts)/float64(d.fleet.requests), yesNo(fleetOK))
	}
	p("\nAnswer time: how long the callers waited for their answer in the total outage; a design that waits for tokens makes every caller of a dead server wait that long. The fleet's processes each send about one request every 11 s, so a burst of 10 tokens per process covers every retry of its first few failed requests: at the fleet's scale a per-process budget with that burst does not limit the first 30 s or so of a failure.\n")
}

func (s *simReport) fleetBare() simMetaResult {
	for li, load := range s.cfg.loads {
		for ti, trig := range s.cfg.triggers {
			if load == 0.9 && trig == 10*time.Second {
				return s.sweep["bare transport"][li][ti]
			}
		}
	}
	return simMetaResult{}
}

func (s *simReport) designsBareFleet() (bool, time.Duration) {
	b := s.fleetBare()
	return b.recovered, b.recovery
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
