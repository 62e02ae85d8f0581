package report

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"html/template"
	"strconv"
	"strings"

	"tandem.dev/tandem/internal/safetext"
)

//go:embed report.html.tmpl
var pageText string

var page = template.Must(template.New("report").Funcs(template.FuncMap{
	"refs":     refLinks,
	"ref":      func(i uint64) template.HTML { return refLinks([]uint64{i}) },
	"txt":      safetext.Line,
	"bars":     barChart,
	"hbars":    hbarChart,
	"short":    func(s string) string { return shorten(s, 16) },
	"dash":     dash,
	"joinlist": func(s []string) string { return strings.Join(s, ", ") },
}).Parse(pageText))

// The evidence sits in one script block of its own type, which browsers
// never run; json.Marshal escapes <, > and &, so it cannot end the block.
const (
	evidenceOpen  = `<script type="application/json" id="tandem-evidence">`
	evidenceClose = `</script>`
)

// MaxFile bounds a report file verify reads.
const MaxFile = 1 << 30

// view is what the template sees.
type view struct {
	*Evidence
	Origin string
	Size   string
	Root   string
	Rows   []row
	JSON   template.JS
}

// row is one record of the appendix: what is in clear and what opened.
type row struct {
	Index                          uint64
	Time, Type                     string
	Person, Session, Host, Request string
	Closed                         bool
}

// Render returns the report page of ev. It is a pure function of ev, so
// verify renders again and compares byte for byte.
func Render(ev *Evidence) ([]byte, error) {
	opened, err := ev.open()
	if err != nil {
		return nil, err
	}
	js, err := json.Marshal(ev)
	if err != nil {
		return nil, err
	}
	v := view{Evidence: ev, JSON: template.JS(js)}
	if body, _, ok := strings.Cut(ev.Checkpoint, "\n\n"); ok {
		if l := strings.Split(body, "\n"); len(l) >= 3 {
			v.Origin, v.Size, v.Root = l[0], l[1], l[2]
		}
	}
	for _, o := range opened {
		e := o.Event
		v.Rows = append(v.Rows, row{Index: o.Index, Time: stamp(e.Time), Type: string(e.Type),
			Person: e.Person, Session: e.Session, Host: e.Host, Request: e.Request, Closed: o.Closed})
	}
	var b bytes.Buffer
	if err := page.Execute(&b, v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Extract finds the embedded evidence of a report page.
func Extract(file []byte) (*Evidence, error) {
	_, rest, ok := bytes.Cut(file, []byte(evidenceOpen))
	if !ok {
		return nil, errors.New("not a Tandem evidence report: no embedded evidence")
	}
	js, _, ok := bytes.Cut(rest, []byte(evidenceClose))
	if !ok {
		return nil, errors.New("the embedded evidence is not closed")
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	var ev Evidence
	if err := dec.Decode(&ev); err != nil {
		return nil, fmt.Errorf("the embedded evidence: %w", err)
	}
	if dec.More() {
		return nil, errors.New("the embedded evidence has trailing data")
	}
	return &ev, nil
}

// refLinks renders record indices as links to the appendix.
func refLinks(refs []uint64) template.HTML {
	var b strings.Builder
	for i, r := range refs {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, `<a class="ref" href="#r%d">#%d</a>`, r, r)
	}
	return template.HTML(b.String())
}

func dash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}

// shorten cuts a long label (a hash) for a table cell; the whole value is
// in the evidence.
func shorten(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}

// esc is person-supplied text for SVG text: terminal-safe, then
// HTML-escaped.
func esc(s string) string { return html.EscapeString(safetext.Line(s)) }

// barChart draws counts as vertical bars, one per label (sessions per
// day), as inline SVG with the numbers written on the bars, so it reads
// on paper and without colour.
func barChart(title string, cs []Count) template.HTML {
	if len(cs) == 0 {
		return ""
	}
	const h, top, bottom, left = 220, 24, 40, 36
	bw := 28
	if len(cs) > 20 {
		bw = max(8, 640/len(cs))
	}
	w := left + len(cs)*bw + 10
	peak := 1
	for _, c := range cs {
		peak = max(peak, c.Count)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" role="img" width="%d" height="%d" viewBox="0 0 %d %d"><title>%s</title>`, w, h, w, h, esc(title))
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" class="axis"/>`, left, h-bottom, w, h-bottom)
	fmt.Fprintf(&b, `<text x="2" y="%d" class="lbl">%d</text>`, top+4, peak)
	span := h - top - bottom
	for i, c := range cs {
		bh := c.Count * span / peak
		x := left + i*bw
		fmt.Fprintf(&b, `<rect class="bar" x="%d" y="%d" width="%d" height="%d"><title>%s: %d</title></rect>`, x+2, h-bottom-bh, bw-4, bh, esc(c.Label), c.Count)
		fmt.Fprintf(&b, `<text x="%d" y="%d" class="num" text-anchor="middle">%d</text>`, x+bw/2, h-bottom-bh-3, c.Count)
		label := c.Label
		if len(label) == len("2006-01-02") {
			label = label[5:]
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" class="lbl" text-anchor="end" transform="rotate(-45 %d %d)">%s</text>`, x+bw/2, h-bottom+12, x+bw/2, h-bottom+12, esc(label))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// hbarChart draws counts as horizontal bars with their labels (refusals
// by reason).
func hbarChart(title string, cs []Count) template.HTML {
	if len(cs) == 0 {
		return ""
	}
	const rowH, labelW, barW = 22, 360, 300
	h := len(cs)*rowH + 8
	peak := 1
	for _, c := range cs {
		peak = max(peak, c.Count)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" role="img" width="%d" height="%d" viewBox="0 0 %d %d"><title>%s</title>`, labelW+barW+50, h, labelW+barW+50, h, esc(title))
	for i, c := range cs {
		y := 4 + i*rowH
		bw := max(2, c.Count*barW/peak)
		fmt.Fprintf(&b, `<text x="%d" y="%d" class="lbl" text-anchor="end">%s</text>`, labelW-6, y+15, esc(shorten(c.Label, 55)))
		fmt.Fprintf(&b, `<rect class="bar" x="%d" y="%d" width="%d" height="%d"/>`, labelW, y+3, bw, rowH-6)
		fmt.Fprintf(&b, `<text x="%d" y="%d" class="num">%s</text>`, labelW+bw+4, y+15, strconv.Itoa(c.Count))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}
