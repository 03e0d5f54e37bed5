package main

import (
	"fmt"
	"image/color"
	"path/filepath"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// writeMetaPlots writes metastable.svg/png (goodput and load over time in
// the loopback run, the trigger shaded) and stability.svg/png (the map of
// the simulation's sweep).
func writeMetaPlots(dir string, r *report) error {
	if len(r.meta) > 0 {
		if err := saveBoth(metaPlots(r.meta), 12*vg.Inch, 4.5*vg.Inch, filepath.Join(dir, "metastable")); err != nil {
			return err
		}
	}
	if r.sim != nil {
		if err := saveBoth(stabilityPlots(r.sim), 14*vg.Inch, vg.Length(len(r.sim.cfg.fleets))*4*vg.Inch, filepath.Join(dir, "stability")); err != nil {
			return err
		}
	}
	return nil
}

func shade(p *plot.Plot, from, to, top float64) {
	poly, err := plotter.NewPolygon(plotter.XYs{{X: from, Y: 0}, {X: to, Y: 0}, {X: to, Y: top}, {X: from, Y: top}})
	if err != nil {
		return
	}
	poly.Color = color.RGBA{R: 250, G: 215, B: 160, A: 255}
	poly.LineStyle.Width = 0
	p.Add(poly)
}

func metaPlots(results []metaResult) *plotRow {
	const bucket = 500 * time.Millisecond
	prm := results[0].params
	from, to := prm.warmup.Seconds(), (prm.warmup + prm.trigger).Seconds()
	good := plot.New()
	good.Title.Text = fmt.Sprintf("Goodput: %.0f%% of %.0f/s offered, capacity ÷10 during the trigger (shaded)", 100*prm.load, prm.capacity)
	good.X.Label.Text = "time (s)"
	good.Y.Label.Text = "successful answers per second"
	load := plot.New()
	load.Title.Text = fmt.Sprintf("Load on the server (%d clients, 1 s per attempt)", prm.clients)
	load.X.Label.Text = "time (s)"
	load.Y.Label.Text = "attempts received per second"
	top := 0.0
	for _, r := range results {
		for _, v := range perSecond(r.load[:ticks(prm.runFor())], bucket) {
			top = max(top, v)
		}
	}
	shade(good, from, to, prm.capacity*1.1)
	shade(load, from, to, top*1.05)
	good.Add(plotter.NewGrid())
	load.Add(plotter.NewGrid())
	for _, r := range results {
		for i, series := range [][]int{r.goodput, r.load} {
			vals := perSecond(series[:ticks(prm.runFor())], bucket)
			pts := make(plotter.XYs, len(vals))
			for k, v := range vals {
				pts[k] = plotter.XY{X: (time.Duration(k)*bucket + bucket/2).Seconds(), Y: v}
			}
			line, err := plotter.NewLine(pts)
			if err != nil {
				continue
			}
			line.Color = libColors[r.lib]
			line.Width = vg.Points(1.3)
			if r.lib == "failsafehttp" {
				line.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
			}
			if i == 0 {
				good.Add(line)
				good.Legend.Add(r.lib, line)
			} else {
				load.Add(line)
			}
		}
	}
	good.Legend.Top = true
	good.Legend.Left = true
	good.Y.Min, good.Y.Max = 0, prm.capacity*1.1
	load.Y.Min = 0
	return &plotRow{good, load}
}

// stabilityPlots draws one row per fleet size and, in it, one map per
// client kind, one cell per load and trigger length: green when the fleet
// recovered by the end, darker the later, red when it was stuck.
func stabilityPlots(rep *simReport) *plotRows {
	var rows plotRows
	cfg := rep.cfg
	for _, n := range cfg.fleets {
		var row []*plot.Plot
		for _, c := range cfg.mapClients() {
			p := plot.New()
			p.Title.Text = fmt.Sprintf("%s, %d processes", clientLabel(c), n)
			p.X.Label.Text = "trigger length (s)"
			p.Y.Label.Text = "offered load (% of capacity)"
			grid := rep.sweep[n][c.name]
			var xticks, yticks []plot.Tick
			for ti, trig := range cfg.triggers {
				xticks = append(xticks, plot.Tick{Value: float64(ti) + 0.5, Label: fmt.Sprint(trig.Seconds())})
			}
			for li, load := range cfg.loads {
				yticks = append(yticks, plot.Tick{Value: float64(li) + 0.5, Label: fmt.Sprintf("%.0f", 100*load)})
				for ti := range cfg.triggers {
					cell := grid[li][ti]
					x, y := float64(ti), float64(li)
					poly, err := plotter.NewPolygon(plotter.XYs{{X: x, Y: y}, {X: x + 1, Y: y}, {X: x + 1, Y: y + 1}, {X: x, Y: y + 1}})
					if err != nil {
						continue
					}
					poly.Color = cellColor(cell, cfg.fleet.after)
					poly.LineStyle.Color = color.White
					poly.LineStyle.Width = vg.Points(1)
					p.Add(poly)
				}
			}
			p.X.Tick.Marker = plot.ConstantTicks(xticks)
			p.Y.Tick.Marker = plot.ConstantTicks(yticks)
			p.X.Min, p.X.Max = 0, float64(len(cfg.triggers))
			p.Y.Min, p.Y.Max = 0, float64(len(cfg.loads))
			row = append(row, p)
		}
		rows = append(rows, row)
	}
	return &rows
}

func cellColor(c simMetaResult, after time.Duration) color.Color {
	if !c.recovered {
		return color.RGBA{R: 200, G: 40, B: 40, A: 255}
	}
	// Light green for at once, dark green for at the very end.
	f := min(1, c.recovery.Seconds()/after.Seconds())
	return color.RGBA{R: uint8(170 - 150*f), G: uint8(225 - 110*f), B: uint8(170 - 150*f), A: 255}
}
