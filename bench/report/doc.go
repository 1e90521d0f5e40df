// Package report renders benchmark results for people: a Markdown file (the
// one committed under bench/results/), the same content as a standalone HTML
// page with the plots inline, and the plots as SVG files (and PNG, when a
// headless Chromium is installed to rasterise them). Every figure in a
// report comes from result data; nothing is typed in by hand.
//
// A report is built as a small document (headings, paragraphs, tables,
// figures) and written in both formats from that one source, so the two
// never disagree.
package report

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"unicode/utf8"
)

// Doc is a report document.
type Doc struct {
	Title  string
	Blocks []Block
}

// Block is one element of a document.
type Block interface{ block() }

// Heading is a section title (level 2 or 3; the title is level 1).
type Heading struct {
	Level int
	Text  string
}

// Para is a paragraph. `code` spans and **bold** are understood.
type Para struct{ Text string }

// List is a bulleted list of paragraphs.
type List struct{ Items []string }

// Code is a preformatted block.
type Code struct{ Text string }

// Table is a table; Right marks right-aligned (numeric) columns.
type Table struct {
	Header []string
	Rows   [][]string
	Right  []bool
}

// Figure is a chart, written as Name.svg next to the report.
type Figure struct {
	Name  string
	Chart *Chart
}

func (Heading) block() {}
func (Para) block()    {}
func (List) block()    {}
func (Code) block()    {}
func (Table) block()   {}
func (Figure) block()  {}

func (d *Doc) add(b ...Block) { d.Blocks = append(d.Blocks, b...) }

// Files names what Write produces.
type Files struct {
	Markdown string // the report
	HTML     string
	FigDir   string   // SVG (and PNG) figures
	PNGs     []string // rasterised figures, when a renderer was found
}

// Write writes base.md, base.html and the figures into base/ (so
// bench/results/2026-01-02-host.md has its plots in
// bench/results/2026-01-02-host/). With png set, figures are also rasterised
// by a headless Chromium if one is installed.
func (d *Doc) Write(base string, png bool) (Files, error) {
	f := Files{Markdown: base + ".md", HTML: base + ".html", FigDir: base}
	if err := os.MkdirAll(f.FigDir, 0o755); err != nil {
		return f, err
	}
	rel := filepath.Base(f.FigDir)
	var md, page strings.Builder
	fmt.Fprintf(&md, "# %s\n\n", d.Title)
	fmt.Fprintf(&page, "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>%s</title>\n<style>%s</style></head><body>\n<h1>%s</h1>\n", esc(d.Title), css, esc(d.Title))
	var svgs []string
	for _, b := range d.Blocks {
		switch b := b.(type) {
		case Heading:
			fmt.Fprintf(&md, "%s %s\n\n", strings.Repeat("#", b.Level), b.Text)
			id := anchor(b.Text)
			fmt.Fprintf(&page, "<h%d id=\"%s\">%s</h%d>\n", b.Level, id, inline(b.Text), b.Level)
		case Para:
			fmt.Fprintf(&md, "%s\n\n", b.Text)
			fmt.Fprintf(&page, "<p>%s</p>\n", inline(b.Text))
		case List:
			page.WriteString("<ul>\n")
			for _, it := range b.Items {
				fmt.Fprintf(&md, "- %s\n", it)
				fmt.Fprintf(&page, "<li>%s</li>\n", inline(it))
			}
			md.WriteString("\n")
			page.WriteString("</ul>\n")
		case Code:
			fmt.Fprintf(&md, "```\n%s\n```\n\n", strings.TrimRight(b.Text, "\n"))
			fmt.Fprintf(&page, "<pre>%s</pre>\n", esc(strings.TrimRight(b.Text, "\n")))
		case Table:
			writeMarkdownTable(&md, b)
			writeHTMLTable(&page, b)
		case Figure:
			svg := b.Chart.SVG()
			path := filepath.Join(f.FigDir, b.Name+".svg")
			if err := os.WriteFile(path, []byte(svg), 0o644); err != nil {
				return f, err
			}
			svgs = append(svgs, path)
			fmt.Fprintf(&md, "![%s](%s/%s.svg)\n\n", b.Chart.Title, rel, b.Name)
			fmt.Fprintf(&page, "<figure>%s</figure>\n", svg)
		}
	}
	page.WriteString("</body></html>\n")
	if err := os.WriteFile(f.Markdown, []byte(md.String()), 0o644); err != nil {
		return f, err
	}
	if err := os.WriteFile(f.HTML, []byte(page.String()), 0o644); err != nil {
		return f, err
	}
	if png {
		f.PNGs = Rasterize(svgs)
	}
	return f, nil
}

const css = `body{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222;line-height:1.4}
table{border-collapse:collapse;margin:0.5em 0 1.2em;font-size:13px}th,td{border:1px solid #ccc;padding:3px 8px}th{background:#f3f3f3}
td.r{text-align:right;font-variant-numeric:tabular-nums}code,pre{background:#f6f6f6;font-size:12px}pre{padding:8px;overflow-x:auto}
figure{margin:0.5em 0}h2{border-bottom:1px solid #ddd;padding-bottom:3px;margin-top:1.6em}`

func writeMarkdownTable(b *strings.Builder, t Table) {
	cell := func(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
	b.WriteString("|")
	for _, h := range t.Header {
		fmt.Fprintf(b, " %s |", cell(h))
	}
	b.WriteString("\n|")
	for i := range t.Header {
		if i < len(t.Right) && t.Right[i] {
			b.WriteString(" ---: |")
		} else {
			b.WriteString(" --- |")
		}
	}
	b.WriteString("\n")
	for _, row := range t.Rows {
		b.WriteString("|")
		for _, c := range row {
			fmt.Fprintf(b, " %s |", cell(c))
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")
}

func writeHTMLTable(b *strings.Builder, t Table) {
	b.WriteString("<table><tr>")
	for _, h := range t.Header {
		fmt.Fprintf(b, "<th>%s</th>", inline(h))
	}
	b.WriteString("</tr>\n")
	for _, row := range t.Rows {
		b.WriteString("<tr>")
		for i, c := range row {
			class := ""
			if i < len(t.Right) && t.Right[i] {
				class = ` class="r"`
			}
			fmt.Fprintf(b, "<td%s>%s</td>", class, inline(c))
		}
		b.WriteString("</tr>\n")
	}
	b.WriteString("</table>\n")
}

var (
	codeSpan = regexp.MustCompile("`([^`]+)`")
	boldSpan = regexp.MustCompile(`\*\*([^*]+)\*\*`)
	linkSpan = regexp.MustCompile(`\[([^\]]+)\]\(([^)]+)\)`)
)

// inline turns the Markdown subset used in reports into HTML.
func inline(s string) string {
	s = esc(s)
	s = codeSpan.ReplaceAllString(s, "<code>$1</code>")
	s = boldSpan.ReplaceAllString(s, "<b>$1</b>")
	s = linkSpan.ReplaceAllString(s, `<a href="$2">$1</a>`)
	return s
}

func anchor(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		case r == ' ' || r == '-':
			b.WriteByte('-')
		}
	}
	return b.String()
}

// chromium returns a headless Chromium binary, or "".
func chromium() string {
	for _, name := range []string{"chromium-headless-shell", "chromium", "chromium-browser", "google-chrome", "headless_shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// Rasterize renders each SVG to a PNG beside it with a headless Chromium,
// if one is installed, and returns the PNGs written.
func Rasterize(svgs []string) []string {
	bin := chromium()
	if bin == "" {
		return nil
	}
	var (
		mu  sync.Mutex
		out []string
		wg  sync.WaitGroup
	)
	sem := make(chan struct{}, 2)
	for _, svg := range svgs {
		data, err := os.ReadFile(svg)
		if err != nil {
			continue
		}
		w, h := 760, 320
		fmt.Sscanf(svgSize.FindString(string(data)), `width="%d" height="%d"`, &w, &h)
		png := strings.TrimSuffix(svg, ".svg") + ".png"
		abs, _ := filepath.Abs(svg)
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			cmd := exec.Command(bin, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
				fmt.Sprintf("--window-size=%d,%d", w, h), "--screenshot="+png, "file://"+abs)
			if err := cmd.Run(); err == nil {
				mu.Lock()
				out = append(out, png)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return out
}

var svgSize = regexp.MustCompile(`width="\d+" height="\d+"`)

// WriteText prints a table for a terminal, columns aligned.
func WriteText(out io.Writer, t Table) {
	widths := make([]int, len(t.Header))
	measure := func(row []string) {
		for i, c := range row {
			if i < len(widths) {
				widths[i] = max(widths[i], utf8.RuneCountInString(c))
			}
		}
	}
	measure(t.Header)
	for _, r := range t.Rows {
		measure(r)
	}
	line := func(row []string) {
		var b strings.Builder
		for i, c := range row {
			pad := strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c))
			if i < len(t.Right) && t.Right[i] {
				b.WriteString(pad + c)
			} else {
				b.WriteString(c + pad)
			}
			b.WriteString("  ")
		}
		fmt.Fprintln(out, strings.TrimRight(b.String(), " "))
	}
	line(t.Header)
	for _, r := range t.Rows {
		line(r)
	}
}
