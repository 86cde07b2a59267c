package docs

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// designDoc is the document under test, relative to this package.
const designDoc = "design.md"

// section returns the text of design.md's "## " section whose title,
// after its number, starts with title, up to the next "## " heading.
// Sections are found by name, so renumbering them breaks no test.
func section(t *testing.T, title string) string {
	t.Helper()
	raw, err := os.ReadFile(designDoc)
	if err != nil {
		t.Fatal(err)
	}
	heading := regexp.MustCompile(`(?m)^## (?:\d+\. )?` + regexp.QuoteMeta(title) + `.*\n`)
	loc := heading.FindIndex(raw)
	if loc == nil {
		t.Fatalf("%s has no section %q", designDoc, title)
	}
	rest := string(raw[loc[1]:])
	if end := strings.Index(rest, "\n## "); end >= 0 {
		rest = rest[:end+1]
	}
	return rest
}

// table is a Markdown table: its header cells and its rows' cells.
type table struct {
	header []string
	rows   [][]string
}

// tableWith returns the table of text whose first header cell is first.
func tableWith(t *testing.T, where, text, first string) table {
	t.Helper()
	var found []table
	var cur *table
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "|") {
			cur = nil
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		switch {
		case cur == nil:
			found = append(found, table{header: cells})
			cur = &found[len(found)-1]
		case strings.Trim(cells[0], "-: ") == "":
			// the |---| line under the header
		default:
			cur.rows = append(cur.rows, cells)
		}
	}
	var match []table
	for _, tb := range found {
		if tb.header[0] == first {
			match = append(match, tb)
		}
	}
	if len(match) != 1 {
		t.Fatalf("%s: %d tables whose first column is %q, want 1", where, len(match), first)
	}
	return match[0]
}

var backticked = regexp.MustCompile("`([^`]+)`")

// codeSpans returns the `...` spans of a table cell, in order.
func codeSpans(cell string) []string {
	var spans []string
	for _, m := range backticked.FindAllStringSubmatch(cell, -1) {
		spans = append(spans, m[1])
	}
	return spans
}

// codeBlockAfter returns the first ``` block of text after the line that
// contains marker.
func codeBlockAfter(t *testing.T, where, text, marker string) string {
	t.Helper()
	_, rest, ok := strings.Cut(text, marker)
	if !ok {
		t.Fatalf("%s: no %q", where, marker)
	}
	_, rest, ok = strings.Cut(rest, "```")
	if !ok {
		t.Fatalf("%s: no code block after %q", where, marker)
	}
	_, rest, _ = strings.Cut(rest, "\n")
	block, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatalf("%s: the code block after %q does not end", where, marker)
	}
	return block
}
