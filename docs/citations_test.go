package docs

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// citationRules are what no comment or document of the repository may
// contain: design.md sections are cited by name ("docs/design.md, Token
// semantics"), since numbers move when a section is added; a tracker
// issue or a document outside the repository means nothing to the next
// reader.
var citationRules = []struct {
	pattern *regexp.Regexp
	why     string
}{
	{regexp.MustCompile(`design\.md,?\s+(sections?\s+|§\s*)\d`), "cites docs/design.md by section number; cite the section's name"},
	{regexp.MustCompile(`\bdesign\s+sections?\s+\d`), "cites docs/design.md by section number; cite the section's name"},
	{regexp.MustCompile(`(?i)\bissue\s+#?\d+\b`), "names a tracker issue; say what it is about instead"},
	{regexp.MustCompile(`(?i)\bour\s+documents?\b`), "names an undefined document; cite it by name or URL"},
}

// TestCitations walks the repository's sources and documents (not gen/,
// node_modules or this file) for the citations citationRules forbid.
func TestCitations(t *testing.T) {
	root := ".."
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if name == ".git" || name == "node_modules" || path == filepath.Join(root, "gen") {
				return filepath.SkipDir
			}
			return nil
		}
		if name == "citations_test.go" || name == "package-lock.json" {
			return nil
		}
		switch filepath.Ext(name) {
		case ".go", ".md", ".yaml", ".yml", ".tpl", ".txt", ".proto", ".json", ".js":
		default:
			if name != "Makefile" && name != "run" {
				return nil
			}
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		lines := strings.Split(string(raw), "\n")
		for i, line := range lines {
			// A citation may run over a line break ("docs/design.md
			// // section 4"): each line is read with the next one's text,
			// comment markers off, and a match starting on it counts.
			cur := bareText(line)
			joined := cur
			if i+1 < len(lines) {
				joined += " " + bareText(lines[i+1])
			}
			for _, r := range citationRules {
				if loc := r.pattern.FindStringIndex(joined); loc != nil && loc[0] < len(cur) {
					t.Errorf("%s:%d %s: %s", strings.TrimPrefix(path, "../"), i+1, r.why, strings.TrimSpace(line))
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// bareText is a line without indentation and comment or quote markers.
func bareText(line string) string {
	line = strings.TrimSpace(line)
	for _, marker := range []string{"//", "#", "*", ">", "-"} {
		line = strings.TrimSpace(strings.TrimPrefix(line, marker))
	}
	return line
}
