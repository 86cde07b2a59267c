package docs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
)

const module = "github.com/tokenbroker/tokenbroker"

// importGraph returns the module's packages (paths relative to the module)
// and, for each, the packages of the module its product code imports
// (go list's Imports: test files excluded). go list runs once per test
// binary.
func importGraph(t *testing.T) map[string][]string {
	t.Helper()
	graph, err := listImports()
	if err != nil {
		t.Fatal(err)
	}
	return graph
}

var listImports = sync.OnceValues(func() (map[string][]string, error) {
	cmd := exec.Command("go", "list", "-json=ImportPath,Imports", "./...")
	cmd.Dir = ".."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list ./...: %v\n%s", err, stderr.Bytes())
	}
	graph := map[string][]string{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p struct {
			ImportPath string
			Imports    []string
		}
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("go list output: %w", err)
		}
		pkg, ok := relative(p.ImportPath)
		if !ok {
			continue
		}
		deps := []string{}
		for _, imp := range p.Imports {
			if dep, ok := relative(imp); ok {
				deps = append(deps, dep)
			}
		}
		graph[pkg] = deps
	}
	if len(graph) == 0 {
		return nil, errors.New("go list ./... listed no package")
	}
	return graph, nil
})

// relative returns path inside the module, or false for another module's.
func relative(path string) (string, bool) {
	if path == module {
		return ".", true
	}
	return strings.CutPrefix(path, module+"/")
}

const packagesSection = "What each package owns"

// TestDesignPackageTable: every package go list ./... finds has exactly one
// row in the package table, and every row names one of them.
func TestDesignPackageTable(t *testing.T) {
	t.Parallel()
	graph := importGraph(t)
	where := designDoc + ", " + packagesSection + ", the package table"
	tb := tableWith(t, where, section(t, packagesSection), "package")
	rows := map[string]int{}
	for _, row := range tb.rows {
		names := codeSpans(row[0])
		if len(names) != 1 {
			t.Errorf("%s: row %q names %d packages, want one in backticks", where, row[0], len(names))
			continue
		}
		rows[names[0]]++
	}
	for _, pkg := range slices.Sorted(maps.Keys(graph)) {
		if rows[pkg] == 0 {
			t.Errorf("%s has no row for `%s` (go list ./... lists it): add one saying what it owns", where, pkg)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(rows)) {
		if _, ok := graph[name]; !ok {
			t.Errorf("%s has a row for `%s`, which go list ./... does not list: remove or rename it", where, name)
		}
		if rows[name] > 1 {
			t.Errorf("%s has %d rows for `%s`, want one", where, rows[name], name)
		}
	}
}

// TestDesignImportGraph: every arrow of the import graph block is an
// import of the module's product code, every such import has its arrow,
// and the packages named as leaves import nothing of the module.
//
// The block's notation: "a ─► b, c" says a imports b and c; a chain
// "a ─► b ─► c" says a imports b and b imports c; "a ◄─ b" says b imports
// a; "x/{y,z}" is x/y and x/z; statements on one line are three spaces or
// more apart; an indented line continues the line above; a name that is
// no package (gen) stands for the packages under it, and an arrow to it
// is true when one of them is imported. The "leaves:" line lists packages
// that import nothing of the module (gen/* for all under gen).
func TestDesignImportGraph(t *testing.T) {
	t.Parallel()
	graph := importGraph(t)
	where := designDoc + ", " + packagesSection + ", the import graph"
	block := codeBlockAfter(t, where, section(t, packagesSection), "Imports point down")
	g, err := parseGraph(block)
	if err != nil {
		t.Fatalf("%s: %v", where, err)
	}

	resolve := func(name string) []string {
		if _, ok := graph[name]; ok {
			return []string{name}
		}
		// A group: gen, or gen/* on the leaves line.
		prefix := strings.TrimSuffix(name, "*")
		if !strings.HasSuffix(prefix, "/") {
			prefix += "/"
		}
		var members []string
		for pkg := range graph {
			if strings.HasPrefix(pkg, prefix) {
				members = append(members, pkg)
			}
		}
		slices.Sort(members)
		return members
	}
	imports := func(from, to string) bool { return slices.Contains(graph[from], to) }

	covered := map[[2]string]bool{}
	for _, a := range g.arrows {
		froms, tos := resolve(a.from), resolve(a.to)
		if len(froms) == 0 || len(tos) == 0 {
			t.Errorf("%s: %s ─► %s (line %q) names a package go list ./... does not list", where, a.from, a.to, a.line)
			continue
		}
		found := false
		for _, f := range froms {
			for _, to := range tos {
				if imports(f, to) {
					found = true
					covered[[2]string{f, to}] = true
				}
			}
		}
		if !found {
			t.Errorf("%s: the arrow %s ─► %s (line %q) is false: %s does not import %s in its product code; remove the arrow", where, a.from, a.to, a.line, a.from, a.to)
		}
	}
	for _, leaf := range g.leaves {
		pkgs := resolve(leaf)
		if len(pkgs) == 0 {
			t.Errorf("%s: the leaf %s names no package go list ./... lists", where, leaf)
		}
		for _, pkg := range pkgs {
			if deps := graph[pkg]; len(deps) > 0 {
				t.Errorf("%s: %s is listed among the leaves, but imports %s: move it off the leaves line and give it arrows", where, pkg, strings.Join(deps, ", "))
			}
		}
	}
	for _, pkg := range slices.Sorted(maps.Keys(graph)) {
		for _, dep := range graph[pkg] {
			if !covered[[2]string{pkg, dep}] {
				t.Errorf("%s has no arrow for %s ─► %s (an import in %s's product code): add it", where, pkg, dep, pkg)
			}
		}
	}
}

// arrow is one claim of the import graph block: from imports to.
type arrow struct {
	from, to string
	line     string // the statement that says it
}

type parsedGraph struct {
	arrows []arrow
	leaves []string
}

var (
	rightArrow = regexp.MustCompile(`\s*─►\s*`)
	leftArrow  = regexp.MustCompile(`\s*◄─\s*`)
	statements = regexp.MustCompile(`\s{3,}`)
	braces     = regexp.MustCompile(`^(.*)\{([^}]*)\}(.*)$`)
)

// parseGraph reads the import graph block (notation: TestDesignImportGraph).
func parseGraph(block string) (parsedGraph, error) {
	var lines []string
	for line := range strings.Lines(block) {
		line = strings.TrimRight(line, "\n")
		switch {
		case strings.TrimSpace(line) == "":
		case strings.HasPrefix(line, " ") && len(lines) > 0:
			lines[len(lines)-1] += " " + strings.TrimSpace(line)
		default:
			lines = append(lines, line)
		}
	}
	var g parsedGraph
	for _, line := range lines {
		if rest, ok := strings.CutPrefix(line, "leaves:"); ok {
			g.leaves = append(g.leaves, names(rest)...)
			continue
		}
		line = rightArrow.ReplaceAllString(line, " ─► ")
		line = leftArrow.ReplaceAllString(line, " ◄─ ")
		for _, stmt := range statements.Split(strings.TrimSpace(line), -1) {
			parts := strings.Fields(stmt)
			// parts: names, then an arrow, names, an arrow, ...; a comma
			// list's names are separate fields.
			var segs [][]string
			var dirs []string
			cur := ""
			for _, p := range parts {
				if p == "─►" || p == "◄─" {
					segs = append(segs, names(cur))
					dirs = append(dirs, p)
					cur = ""
					continue
				}
				cur += " " + p
			}
			segs = append(segs, names(cur))
			if len(dirs) == 0 {
				return g, fmt.Errorf("statement %q has no arrow", stmt)
			}
			for i, dir := range dirs {
				left, right := segs[i], segs[i+1]
				if len(left) == 0 || len(right) == 0 {
					return g, fmt.Errorf("statement %q has an arrow without a package on each side", stmt)
				}
				if dir == "◄─" {
					left, right = right, left
				}
				for _, f := range left {
					for _, to := range right {
						g.arrows = append(g.arrows, arrow{from: f, to: to, line: stmt})
					}
				}
			}
		}
	}
	return g, nil
}

// names splits a comma list of package names and expands x/{y,z}.
func names(list string) []string {
	var out []string
	// Commas inside braces do not separate names.
	depth, start := 0, 0
	split := func(end int) {
		if name := strings.TrimSpace(list[start:end]); name != "" {
			out = append(out, expand(name)...)
		}
		start = end + 1
	}
	for i, r := range list {
		switch r {
		case '{':
			depth++
		case '}':
			depth--
		case ',':
			if depth == 0 {
				split(i)
			}
		}
	}
	split(len(list))
	return out
}

func expand(name string) []string {
	m := braces.FindStringSubmatch(name)
	if m == nil {
		return []string{name}
	}
	var out []string
	for _, alt := range strings.Split(m[2], ",") {
		out = append(out, expand(m[1]+strings.TrimSpace(alt)+m[3])...)
	}
	return out
}
