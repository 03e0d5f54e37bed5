package main

import (
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

var libColors = map[string]color.Color{
	"bare transport":   color.RGBA{R: 120, G: 120, B: 120, A: 255},
	"retryhttp":        color.RGBA{R: 0, G: 114, B: 178, A: 255},
	"go-retryablehttp": color.RGBA{R: 213, G: 94, B: 0, A: 255},
	"failsafehttp":     color.RGBA{R: 0, G: 158, B: 115, A: 255},
	"resty":            color.RGBA{R: 204, G: 121, B: 167, A: 255},
	// The hedging scenarios' contenders.
	"retryhttp, fixed":           color.RGBA{R: 0, G: 114, B: 178, A: 255},
	"retryhttp, adaptive":        color.RGBA{R: 86, G: 180, B: 233, A: 255},
	"retryhttp hedged, fixed":    color.RGBA{R: 0, G: 60, B: 120, A: 255},
	"retryhttp hedged, adaptive": color.RGBA{R: 86, G: 180, B: 233, A: 255},
	"failsafehttp, fixed":        color.RGBA{R: 0, G: 158, B: 115, A: 255},
	"failsafehttp, p95":          color.RGBA{R: 120, G: 200, B: 160, A: 255},
}

// writePlots writes herd.svg/png (retry arrivals over time in the herd) and
// load.svg/png (amplification in the total outage; goodput and load in the
// overload).
func writePlots(dir string, r *report) error {
	if err := writeMetaPlots(dir, r); err != nil {
		return err
	}
	if err := writeHedgePlots(dir, r); err != nil {
		return err
	}
	if len(r.herd) == 0 || len(r.outage) == 0 || len(r.overload) == 0 {
		return nil // a partial run
	}
	if err := saveBoth(herdPlot(r), 8*vg.Inch, 4*vg.Inch, filepath.Join(dir, "herd")); err != nil {
		return err
	}
	load, err := loadPlots(r)
	if err != nil {
		return err
	}
	return saveBoth(load, 10*vg.Inch, 4*vg.Inch, filepath.Join(dir, "load"))
}

type saver interface {
	Save(w, h vg.Length, file string) error
}

func saveBoth(p saver, w, h vg.Length, base string) error {
	for _, ext := range []string{".svg", ".png"} {
		if err := p.Save(w, h, base+ext); err != nil {
			return fmt.Errorf("saving %s%s: %w", base, ext, err)
		}
	}
	return nil
}

// herdPlot draws, per contender, how many retries arrived in each 50 ms
// against the moment named.
func herdPlot(r *report) *plot.Plot {
	const bucket = 50 * time.Millisecond
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Herd: %d clients told Retry-After: 2 at once", r.cfg.herdClients)
	p.X.Label.Text = "retry arrival against the moment named (s); left of 0 is early"
	p.Y.Label.Text = "retries per 50 ms"
	p.Add(plotter.NewGrid())
	for _, h := range r.herd {
		counts := map[int64]int{}
		lo, hi := int64(0), int64(0)
		for _, o := range h.offsets {
			k := int64(o / bucket)
			if o < 0 {
				k-- // floor, not truncation, for early arrivals
			}
			counts[k]++
			lo, hi = min(lo, k), max(hi, k)
		}
		pts := plotter.XYs{}
		for k := lo - 2; k <= hi+2; k++ {
			pts = append(pts, plotter.XY{X: (time.Duration(k) * bucket).Seconds(), Y: float64(counts[k])})
		}
		line, err := plotter.NewLine(pts)
		if err != nil {
			continue
		}
		line.Color = libColors[h.lib]
		line.Width = vg.Points(1.5)
		if h.lib == "failsafehttp" {
			// It often draws on top of go-retryablehttp's line.
			line.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		}
		p.Add(line)
		p.Legend.Add(h.lib, line)
	}
	p.Legend.Top = true
	return p
}

// loadPlots draws amplification and overload bars side by side.
func loadPlots(r *report) (*plotRow, error) {
	amp := plot.New()
	amp.Title.Text = fmt.Sprintf("Total outage: attempts per request (%d requests)", r.cfg.outageClients)
	amp.Y.Label.Text = "attempts the server saw per request"
	var names []string
	vals := plotter.Values{}
	for _, o := range r.outage {
		names = append(names, o.lib)
		vals = append(vals, o.amplification)
	}
	bars, err := plotter.NewBarChart(vals, vg.Points(30))
	if err != nil {
		return nil, err
	}
	bars.Color = libColors["retryhttp"]
	amp.Add(bars)
	amp.NominalX(names...)

	over := plot.New()
	over.Title.Text = fmt.Sprintf("Overload: %.0f/s offered, capacity %.0f/s", r.cfg.overloadRPS, overloadSlots/overloadWork.Seconds())
	over.Y.Label.Text = "requests per second"
	good, load := plotter.Values{}, plotter.Values{}
	names = nil
	for _, o := range r.overload {
		names = append(names, o.lib)
		good = append(good, o.goodput)
		load = append(load, o.load)
	}
	w := vg.Points(18)
	gb, err := plotter.NewBarChart(good, w)
	if err != nil {
		return nil, err
	}
	gb.Color = plotutil.Color(2)
	gb.Offset = -w / 2
	lb, err := plotter.NewBarChart(load, w)
	if err != nil {
		return nil, err
	}
	lb.Color = plotutil.Color(1)
	lb.Offset = w / 2
	over.Add(gb, lb)
	over.Legend.Add("goodput", gb)
	over.Legend.Add("load on the server", lb)
	over.Legend.Top = true
	over.Legend.Left = true
	over.Legend.YOffs = -vg.Points(12) // below the title
	over.NominalX(names...)
	return &plotRow{amp, over}, nil
}

// plotRow saves two plots side by side in one file.
type plotRow [2]*plot.Plot

func (row *plotRow) Save(w, h vg.Length, file string) error {
	return saveTiles(row[:], w, h, file)
}

// saveTiles saves plots side by side in one file.
// plotRows saves rows of plots, one above the other, in one file.
type plotRows [][]*plot.Plot

func (g *plotRows) Save(w, h vg.Length, file string) error {
	return saveTileRows(*g, w, h, file)
}

func saveTiles(plots []*plot.Plot, w, h vg.Length, file string) error {
	return saveTileRows([][]*plot.Plot{plots}, w, h, file)
}

func saveTileRows(rows [][]*plot.Plot, w, h vg.Length, file string) error {
	var c vg.CanvasWriterTo
	switch filepath.Ext(file) {
	case ".svg":
		c = vgsvg.New(w, h)
	case ".png":
		c = vgimg.PngCanvas{Canvas: vgimg.New(w, h)}
	default:
		return fmt.Errorf("saving %s: unknown format", file)
	}
	tiles := draw.Tiles{Rows: len(rows), Cols: len(rows[0]), PadX: vg.Millimeter * 6, PadY: vg.Millimeter * 6, PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	canvases := plot.Align(rows, tiles, draw.New(c))
	for j, row := range rows {
		for i, p := range row {
			p.Draw(canvases[j][i])
		}
	}
	f, err := os.Create(file)
	if err != nil {
		return fmt.Errorf("saving %s: %w", file, err)
	}
	if _, err := c.WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("saving %s: %w", file, err)
	}
	return f.Close()
}
