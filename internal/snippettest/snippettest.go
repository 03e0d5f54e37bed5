// Package snippettest checks the Go code that the documentation shows: every
// ```go block of a Markdown file must be gofmt-clean and compile, and every
// Go code block of a package's doc comments must be gofmt-clean. The tests of
// the module root and of otelretryhttp use it on their READMEs and docs/.
//
// # How a block becomes a file
//
// A block is compiled in a package of its own, in a temporary module that
// requires the module under test with a replace directive to its directory
// (and the module's own requirements and replace directives), so that what
// compiles is what a user of the module would write. The convention, which
// keeps the snippets free of boilerplate:
//
//   - A block that starts with "package" is a whole file and is compiled as
//     it stands.
//   - Otherwise, leading import declarations (import "path" or an
//     import ( ... ) group) are the block's own imports. The rest is a list
//     of top-level declarations (func TestX(t *testing.T) { ... }) when it
//     parses as one, and otherwise a list of statements, which is wrapped
//     into the body of a function. Every variable the statements declare at
//     their top level is then marked used, so that a snippet may end on
//     resp, err := client.Get(url).
//   - A package that the block uses as a qualifier (http.Client,
//     retryhttp.Policy, time.Second, ...) is imported when it is in
//     Qualifiers, the table below; any other can be named in a comment line
//     "// imports: path [path ...]" in the block.
//
// Compile errors name the Markdown file and line, through //line
// directives. gofmt is checked on the block's own text: the imports and the
// rest, each formatted as go/format formats a partial source.
package snippettest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"go/ast"
	"go/doc/comment"
	"go/format"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// Qualifiers maps a package qualifier used in a snippet to the import that
// provides it, written as in an import declaration.
var Qualifiers = map[string]string{
	"bytes":         `"bytes"`,
	"context":       `"context"`,
	"errors":        `"errors"`,
	"fmt":           `"fmt"`,
	"http":          `"net/http"`,
	"httptest":      `"net/http/httptest"`,
	"io":            `"io"`,
	"log":           `"log"`,
	"math":          `"math"`,
	"os":            `"os"`,
	"slog":          `"log/slog"`,
	"strings":       `"strings"`,
	"sync":          `"sync"`,
	"syscall":       `"syscall"`,
	"testing":       `"testing"`,
	"time":          `"time"`,
	"url":           `"net/url"`,
	"assert":        `"github.com/stretchr/testify/assert"`,
	"require":       `"github.com/stretchr/testify/require"`,
	"backoff":       `"github.com/cenkalti/backoff/v4"`,
	"retryhttp":     `"github.com/b4dedce7/retryhttp"`,
	"retrytest":     `"github.com/b4dedce7/retryhttp/retrytest"`,
	"otelretryhttp": `"github.com/b4dedce7/retryhttp/otelretryhttp"`,
	"otel":          `"go.opentelemetry.io/otel"`,
	"otelhttp":      `"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"`,
	"sdktrace":      `sdktrace "go.opentelemetry.io/otel/sdk/trace"`,
	"sdkmetric":     `sdkmetric "go.opentelemetry.io/otel/sdk/metric"`,
	"trace":         `"go.opentelemetry.io/otel/trace"`,
	"metric":        `"go.opentelemetry.io/otel/metric"`,
}

// A Block is a piece of Go code shown in the documentation.
type Block struct {
	File string // the file it is in, as given to MarkdownBlocks
	Line int    // the line of its first line of code, from 1
	Code string // its text, ending in a newline
}

func (b Block) String() string { return fmt.Sprintf("%s:%d", b.File, b.Line) }

// Uses reports whether the block uses the package qualifier name, as in
// name.Something.
func (b Block) Uses(name string) bool {
	return regexp.MustCompile(`\b` + regexp.QuoteMeta(name) + `\.[A-Z]`).MatchString(b.Code)
}

// MarkdownBlocks returns the ```go blocks of the Markdown file path. A file
// that does not exist has none.
func MarkdownBlocks(path string) ([]Block, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var blocks []Block
	var cur *Block
	fence := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case cur == nil && fence == "" && strings.HasPrefix(trimmed, "```"):
			fence = "```"
			if info := strings.TrimSpace(strings.TrimPrefix(trimmed, "```")); info == "go" || strings.HasPrefix(info, "go ") {
				cur = &Block{File: path, Line: n + 1}
			}
		case fence != "" && trimmed == fence:
			if cur != nil {
				blocks = append(blocks, *cur)
			}
			cur, fence = nil, ""
		case cur != nil:
			cur.Code += line + "\n"
		}
	}
	if cur != nil {
		return nil, fmt.Errorf("%s: the ```go block from line %d is not closed", path, cur.Line)
	}
	return blocks, sc.Err()
}

// MarkdownFiles returns the Markdown files of the given paths: a file as it
// is, a directory's *.md files, and nothing for a path that does not exist.
func MarkdownFiles(paths ...string) ([]string, error) {
	var files []string
	for _, p := range paths {
		info, err := os.Stat(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if !info.IsDir() {
			files = append(files, p)
			continue
		}
		matches, err := filepath.Glob(filepath.Join(p, "*.md"))
		if err != nil {
			return nil, err
		}
		sort.Strings(matches)
		files = append(files, matches...)
	}
	return files, nil
}

// CheckFormat reports, as test errors, every block that gofmt would change.
func CheckFormat(t testing.TB, blocks []Block) {
	t.Helper()
	for _, b := range blocks {
		if err := formatted(b.Code); err != nil {
			t.Errorf("%s: the snippet is not gofmt-clean: %v", b, err)
		}
	}
}

// formatted returns an error saying how gofmt would change code, or nil.
func formatted(code string) error {
	imports, rest := splitImports(code)
	for _, part := range []string{imports, rest} {
		if strings.TrimSpace(part) == "" {
			continue
		}
		out, err := format.Source([]byte(part))
		if err != nil {
			return fmt.Errorf("gofmt cannot parse it: %w", err)
		}
		if string(out) != part {
			return fmt.Errorf("gofmt would write it as\n%s", out)
		}
	}
	return nil
}

// splitImports returns the leading import declarations of a block that is
// not a whole file, and the rest.
func splitImports(code string) (imports, rest string) {
	if isFile(code) {
		return "", code
	}
	lines := strings.SplitAfter(code, "\n")
	i := 0
	for i < len(lines) {
		trimmed := strings.TrimSpace(lines[i])
		switch {
		case trimmed == "import (":
			for i < len(lines) && strings.TrimSpace(lines[i]) != ")" {
				i++
			}
			i++
		case strings.HasPrefix(trimmed, "import "):
			i++
		case trimmed == "" && i > 0:
			i++
		default:
			return strings.Join(lines[:i], ""), strings.Join(lines[i:], "")
		}
	}
	return code, ""
}

func isFile(code string) bool {
	for _, line := range strings.Split(code, "\n") {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "//") {
			continue
		}
		return strings.HasPrefix(trimmed, "package ")
	}
	return false
}

// Source returns the Go file that b compiles as, in package pkg unless b is a
// whole file.
func Source(b Block, pkg string) (string, error) {
	abs, err := filepath.Abs(b.File)
	if err != nil {
		return "", err
	}
	if isFile(b.Code) {
		return fmt.Sprintf("//line %s:%d\n%s", abs, b.Line, b.Code), nil
	}
	importPart, rest := splitImports(b.Code)
	restLine := b.Line + strings.Count(importPart, "\n")
	specs := map[string]bool{} // import specs, as written in a declaration
	if strings.TrimSpace(importPart) != "" {
		f, err := parser.ParseFile(token.NewFileSet(), "", "package p\n"+importPart, parser.ImportsOnly)
		if err != nil {
			return "", fmt.Errorf("%s: its imports do not parse: %w", b, err)
		}
		for _, s := range f.Imports {
			spec := s.Path.Value
			if s.Name != nil {
				spec = s.Name.Name + " " + spec
			}
			specs[spec] = true
		}
	}
	for _, line := range strings.Split(rest, "\n") {
		if paths, ok := strings.CutPrefix(strings.TrimSpace(line), "// imports:"); ok {
			for _, p := range strings.Fields(paths) {
				specs[fmt.Sprintf("%q", strings.Trim(p, `"`))] = true
			}
		}
	}

	fset := token.NewFileSet()
	decls := true
	file, err := parser.ParseFile(fset, "", "package p\n"+rest, 0)
	if err != nil {
		decls = false
		file, err = parser.ParseFile(fset, "", "package p\nfunc _() {\n"+rest+"\n}\n", 0)
		if err != nil {
			return "", fmt.Errorf("%s: the snippet is neither declarations nor statements: %w", b, err)
		}
	}
	imported := map[string]bool{}
	for spec := range specs {
		imported[importName(spec)] = true
	}
	ast.Inspect(file, func(n ast.Node) bool {
		sel, ok := n.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		if id, ok := sel.X.(*ast.Ident); ok && id.Obj == nil && !imported[id.Name] {
			if spec, ok := Qualifiers[id.Name]; ok {
				specs[spec] = true
				imported[id.Name] = true
			}
		}
		return true
	})

	var src strings.Builder
	fmt.Fprintf(&src, "package %s\n\n", pkg)
	if len(specs) > 0 {
		sorted := make([]string, 0, len(specs))
		for spec := range specs {
			sorted = append(sorted, spec)
		}
		sort.Strings(sorted)
		fmt.Fprintf(&src, "import (\n\t%s\n)\n\n", strings.Join(sorted, "\n\t"))
	}
	if decls {
		fmt.Fprintf(&src, "//line %s:%d\n%s", abs, restLine, rest)
		return src.String(), nil
	}
	fmt.Fprintf(&src, "func _() {\n//line %s:%d\n%s", abs, restLine, rest)
	for _, name := range declaredVars(file) {
		fmt.Fprintf(&src, "_ = %s\n", name)
	}
	src.WriteString("}\n")
	return src.String(), nil
}

// importName returns the name an import spec binds: its alias, or the last
// element of its path that is not a major version.
func importName(spec string) string {
	if name, _, ok := strings.Cut(spec, " "); ok && !strings.HasPrefix(spec, `"`) {
		return name
	}
	elems := strings.Split(strings.Trim(spec, `"`), "/")
	last := elems[len(elems)-1]
	if len(elems) > 1 && regexp.MustCompile(`^v[0-9]+$`).MatchString(last) {
		last = elems[len(elems)-2]
	}
	return last
}

// declaredVars returns the variables declared at the top level of the body
// of the function _ in file.
func declaredVars(file *ast.File) []string {
	var names []string
	add := func(id *ast.Ident) {
		if id.Name != "_" {
			names = append(names, id.Name)
		}
	}
	for _, d := range file.Decls {
		fn, ok := d.(*ast.FuncDecl)
		if !ok || fn.Name.Name != "_" {
			continue
		}
		for _, stmt := range fn.Body.List {
			switch s := stmt.(type) {
			case *ast.AssignStmt:
				if s.Tok == token.DEFINE {
					for _, e := range s.Lhs {
						if id, ok := e.(*ast.Ident); ok {
							add(id)
						}
					}
				}
			case *ast.DeclStmt:
				if g, ok := s.Decl.(*ast.GenDecl); ok && g.Tok == token.VAR {
					for _, spec := range g.Specs {
						for _, id := range spec.(*ast.ValueSpec).Names {
							add(id)
						}
					}
				}
			}
		}
	}
	return names
}

// A Module is the module whose users the snippets are written for.
type Module struct {
	// Dir is the directory of the module's go.mod.
	Dir string
}

// CheckCompile builds every block in a temporary module that requires m
// with a replace directive to m.Dir, and reports each compile error as a
// test error that names the block's file and line. It skips the test when
// the go command is not available.
func CheckCompile(t testing.TB, m Module, blocks []Block) {
	t.Helper()
	if len(blocks) == 0 {
		return
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("the snippets are not compiled: the go command is not available (%v)", err)
	}
	dir := t.TempDir()
	if err := writeModule(dir, m); err != nil {
		t.Fatal(err)
	}
	for i, b := range blocks {
		src, err := Source(b, "snippet")
		if err != nil {
			t.Error(err)
			continue
		}
		pkgDir := filepath.Join(dir, fmt.Sprintf("snippet%03d", i+1))
		if err := os.Mkdir(pkgDir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(pkgDir, "snippet.go"), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(goCmd, "build", "./...")
	cmd.Dir = dir
	// The module cache and proxy are the caller's own; -mod=mod lets go
	// record in go.sum what the module's own go.sum lacks for the snippets.
	cmd.Env = append(os.Environ(), "GOFLAGS="+strings.TrimSpace(os.Getenv("GOFLAGS")+" -mod=mod"), "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("the documentation's Go snippets do not compile (%v):\n%s", err, out)
	}
}

// writeModule writes into dir a go.mod that requires m's module and what m
// requires, with m's replace directives and one from m's module to m.Dir,
// and m's go.sum.
func writeModule(dir string, m Module) error {
	modDir, err := filepath.Abs(m.Dir)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(filepath.Join(modDir, "go.mod"))
	if err != nil {
		return err
	}
	var path, goVersion string
	var requires, replaces []string
	block := ""
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if i := strings.Index(line, "//"); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		switch {
		case line == "":
		case line == ")":
			block = ""
		case strings.HasSuffix(line, "("):
			block = strings.TrimSpace(strings.TrimSuffix(line, "("))
		case block == "require":
			requires = append(requires, line)
		case block == "replace":
			replaces = append(replaces, absReplace(line, modDir))
		case strings.HasPrefix(line, "module "):
			path = strings.TrimSpace(strings.TrimPrefix(line, "module "))
		case strings.HasPrefix(line, "go "):
			goVersion = strings.TrimSpace(strings.TrimPrefix(line, "go "))
		case strings.HasPrefix(line, "require "):
			requires = append(requires, strings.TrimPrefix(line, "require "))
		case strings.HasPrefix(line, "replace "):
			replaces = append(replaces, absReplace(strings.TrimPrefix(line, "replace "), modDir))
		}
	}
	if path == "" {
		return fmt.Errorf("%s/go.mod names no module", modDir)
	}
	var mod strings.Builder
	fmt.Fprintf(&mod, "module snippets\n\ngo %s\n\nrequire %s v0.0.0\n\n", goVersion, path)
	for _, r := range requires {
		if !strings.HasPrefix(r, path+" ") {
			fmt.Fprintf(&mod, "require %s\n", r)
		}
	}
	fmt.Fprintf(&mod, "\nreplace %s => %s\n", path, modDir)
	for _, r := range replaces {
		fmt.Fprintf(&mod, "replace %s\n", r)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(mod.String()), 0o644); err != nil {
		return err
	}
	sum, err := os.ReadFile(filepath.Join(modDir, "go.sum"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "go.sum"), sum, 0o644)
}

// absReplace makes the directory of a replace directive absolute, relative
// to dir.
func absReplace(directive, dir string) string {
	from, to, ok := strings.Cut(directive, "=>")
	if !ok {
		return directive
	}
	to = strings.TrimSpace(to)
	if strings.HasPrefix(to, ".") {
		to = filepath.Join(dir, to)
	}
	return strings.TrimSpace(from) + " => " + to
}

// DocBlocks returns the code blocks of the doc comments in the package in
// dir (its non-test files) that are Go code: those that parse as
// declarations or statements and hold a call, a literal or an assignment.
// Diagrams, tables and sample output are left out.
func DocBlocks(dir string) ([]Block, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, err
	}
	var blocks []Block
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ParseComments)
		if err != nil {
			return nil, err
		}
		for _, cg := range f.Comments {
			var p comment.Parser
			for _, c := range p.Parse(cg.Text()).Content {
				code, ok := c.(*comment.Code)
				if !ok || !looksLikeGo(code.Text) {
					continue
				}
				blocks = append(blocks, Block{File: name, Line: fset.Position(cg.Pos()).Line, Code: code.Text})
			}
		}
	}
	return blocks, nil
}

// looksLikeGo reports whether a doc comment's code block is Go: it parses
// as Go, or it has what only Go code has (a ":=", or a line that starts a
// func, var, type or import declaration), so that a snippet broken beyond
// parsing is still checked, and fails, rather than pass for a diagram.
func looksLikeGo(code string) bool {
	if strings.Contains(code, ":=") {
		return true
	}
	for _, line := range strings.Split(code, "\n") {
		for _, kw := range []string{"func ", "var ", "type ", "import "} {
			if strings.HasPrefix(strings.TrimSpace(line), kw) {
				return true
			}
		}
	}
	if !strings.ContainsAny(code, "({=") {
		return false
	}
	_, rest := splitImports(code)
	if _, err := parser.ParseFile(token.NewFileSet(), "", "package p\n"+rest, 0); err == nil {
		return true
	}
	_, err := parser.ParseFile(token.NewFileSet(), "", "package p\nfunc _() {\n"+rest+"\n}\n", 0)
	return err == nil
}
