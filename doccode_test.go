package channels_test

import (
	"encoding/json"
	"fmt"
	"go/ast"
	"go/doc/comment"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/gochannels/channels/internal/testenv"
)

// docPackages maps the package names that code in the documentation uses
// to their import paths.
var docPackages = map[string]string{
	"channels":     "github.com/gochannels/channels",
	"channelstest": "github.com/gochannels/channels/channelstest",
	"cli":          "github.com/gochannels/channels/cli",
	"delay":        "github.com/gochannels/channels/delay",
	"gateway":      "github.com/gochannels/channels/gateway",
	"generic":      "github.com/gochannels/channels/generic",
	"httpconsumer": "github.com/gochannels/channels/httpconsumer",
	"inmemory":     "github.com/gochannels/channels/inmemory",
	"layertest":    "github.com/gochannels/channels/layertest",
	"testing":      "testing",
	"metrics":      "github.com/gochannels/channels/metrics",
	"redislayer":   "github.com/gochannels/channels/redislayer",
	"session":      "github.com/gochannels/channels/session",
	"worker":       "github.com/gochannels/channels/worker",
	"context":      "context",
	"errors":       "errors",
	"fmt":          "fmt",
	"http":         "net/http",
	"log":          "log",
	"slog":         "log/slog",
	"os":           "os",
	"strings":      "strings",
	"time":         "time",
}

// docPreamble declares, at package level, the names that snippets in the
// documentation use without declaring them.
const docPreamble = `package main

import (
	"context"
	"io/fs"
	"net/http"
	"testing"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/channelstest"
	"github.com/gochannels/channels/gateway"
	"github.com/gochannels/channels/generic"
	"github.com/gochannels/channels/session"
	"github.com/gochannels/channels/worker"
)

var (
	ctx      context.Context
	layer    channels.Layer
	router   *channels.Router
	r        *channels.Router
	consumer channels.Consumer
	gw       *gateway.Server
	w        *worker.Worker
	mux      *http.ServeMux
	t        *testing.T
	assets   fs.FS
	mgr      *session.Manager
	user     session.User
	srv      *channelstest.Server
	echo     func(ctx context.Context, c *generic.Conn) error
)

func newMyLayer(expiry, groupExpiry time.Duration, capacity int, rules []channels.CapacityRule) channels.Layer {
	return nil
}

var _, _, _, _, _, _, _, _, _, _, _, _, _, _ = ctx, layer, router, r, consumer, gw, w, mux, t, assets, mgr, user, srv, echo
`

// docSnippet is one Go code block found in the documentation.
type docSnippet struct {
	where string // file and block number
	code  string
}

var fenceRE = regexp.MustCompile("(?s)```go\n(.*?)```")

// docSnippets returns the Go code blocks of the README and of every package
// doc comment of the module. A doc comment's code block counts as Go when it
// parses as Go statements or declarations; the others (shell commands, URL
// forms, usage text) are not Go and are left out. README blocks fenced as
// go are always Go.
func docSnippets(t *testing.T, root string) []docSnippet {
	t.Helper()
	var out []docSnippet
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range fenceRE.FindAllStringSubmatch(string(readme), -1) {
		out = append(out, docSnippet{fmt.Sprintf("README.md block %d", i+1), m[1]})
	}
	err = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ParseComments)
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		docs := []*ast.CommentGroup{f.Doc}
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				docs = append(docs, d.Doc)
			case *ast.GenDecl:
				docs = append(docs, d.Doc)
				for _, sp := range d.Specs {
					switch sp := sp.(type) {
					case *ast.TypeSpec:
						docs = append(docs, sp.Doc)
					case *ast.ValueSpec:
						docs = append(docs, sp.Doc)
					}
				}
			}
		}
		var p comment.Parser
		n := 0
		for _, doc := range docs {
			if doc == nil {
				continue
			}
			for _, b := range p.Parse(doc.Text()).Content {
				cb, ok := b.(*comment.Code)
				if !ok {
					continue
				}
				n++
				if isGo(cb.Text) {
					out = append(out, docSnippet{fmt.Sprintf("%s doc comment block %d", rel, n), cb.Text})
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// isGo reports whether code parses as Go declarations or statements, and
// is not a URL ("redis://host" parses as a labelled statement; the
// documentation's Go code has no labels).
func isGo(code string) bool {
	src, _, err := wrapSnippet(code)
	if err != nil {
		return false
	}
	f, err := parser.ParseFile(token.NewFileSet(), "s.go", src, 0)
	if err != nil {
		return false
	}
	labelled := false
	ast.Inspect(f, func(n ast.Node) bool {
		if _, ok := n.(*ast.LabeledStmt); ok {
			labelled = true
		}
		return !labelled
	})
	return !labelled
}

// wrapSnippet makes a source file of package main from code, importing the
// packages it names, and returns it with the names imported.
func wrapSnippet(code string) (string, []string, error) {
	fset := token.NewFileSet()
	var body string
	decls := strings.HasPrefix(strings.TrimSpace(code), "func ") || strings.HasPrefix(strings.TrimSpace(code), "type ") ||
		strings.HasPrefix(strings.TrimSpace(code), "var ") || strings.HasPrefix(strings.TrimSpace(code), "const ")
	if decls {
		body = code
		if !regexp.MustCompile(`(?m)^func main\(\)`).MatchString(code) {
			body += "\nfunc main() {}\n"
		}
	} else {
		body = "func main() {\n" + code + "\n" + useDeclared(code) + "}\n"
	}
	f, err := parser.ParseFile(fset, "snippet.go", "package main\n"+body, 0)
	if err != nil {
		return "", nil, err
	}
	used := map[string]bool{}
	ast.Inspect(f, func(n ast.Node) bool {
		if sel, ok := n.(*ast.SelectorExpr); ok {
			if id, ok := sel.X.(*ast.Ident); ok && docPackages[id.Name] != "" {
				used[id.Name] = true
			}
		}
		return true
	})
	var names []string
	for n := range used {
		names = append(names, n)
	}
	slices.Sort(names)
	var b strings.Builder
	b.WriteString("package main\n\nimport (\n")
	for _, n := range names {
		fmt.Fprintf(&b, "\t%s %q\n", n, docPackages[n])
	}
	b.WriteString(")\n\n")
	b.WriteString(body)
	return b.String(), names, nil
}

// useDeclared returns "_ = name" lines for the variables that the
// statements of code declare at their top level, so that a fragment's
// result left for the reader ("reply := c.Receive()") is not a compile
// error. It returns "" when code does not parse as statements.
func useDeclared(code string) string {
	f, err := parser.ParseFile(token.NewFileSet(), "s.go", "package p\nfunc f() {\n"+code+"\n}\n", 0)
	if err != nil {
		return ""
	}
	var b strings.Builder
	for _, st := range f.Decls[0].(*ast.FuncDecl).Body.List {
		var names []*ast.Ident
		switch st := st.(type) {
		case *ast.AssignStmt:
			if st.Tok == token.DEFINE {
				for _, e := range st.Lhs {
					if id, ok := e.(*ast.Ident); ok {
						names = append(names, id)
					}
				}
			}
		case *ast.DeclStmt:
			if gd, ok := st.Decl.(*ast.GenDecl); ok && gd.Tok == token.VAR {
				for _, sp := range gd.Specs {
					names = append(names, sp.(*ast.ValueSpec).Names...)
				}
			}
		}
		for _, id := range names {
			if id.Name != "_" {
				fmt.Fprintf(&b, "_ = %s\n", id.Name)
			}
		}
	}
	return b.String()
}

// The Go code in the README and in the packages' doc comments compiles:
// each block is built as a program of its own (with ctx, layer, router,
// gw, w and mux declared for it).
func TestDocumentationCodeCompiles(t *testing.T) {
	if testing.Short() {
		t.Skip("builds every documentation snippet")
	}
	root := testenv.ModuleRoot(t)
	snippets := docSnippets(t, root)
	if len(snippets) < 3 {
		t.Fatalf("found %d Go snippets; the README and the root package doc hold some", len(snippets))
	}
	t.Logf("%d Go snippets in the README and doc comments", len(snippets))
	tmp := t.TempDir()
	overlay := map[string]string{}
	var pkgs []string
	for i, s := range snippets {
		src, _, err := wrapSnippet(s.code)
		if err != nil {
			t.Errorf("%s does not parse: %v", s.where, err)
			continue
		}
		dir := filepath.Join(root, "internal", "doccode", fmt.Sprintf("snippet%d", i))
		for name, text := range map[string]string{"snippet.go": src, "preamble.go": docPreamble} {
			file := filepath.Join(tmp, fmt.Sprintf("%d-%s", i, name))
			if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			overlay[filepath.Join(dir, name)] = file
		}
		pkgs = append(pkgs, "./internal/doccode/"+fmt.Sprintf("snippet%d", i))
	}
	ov, _ := json.Marshal(map[string]any{"Replace": overlay})
	ovFile := filepath.Join(tmp, "overlay.json")
	if err := os.WriteFile(ovFile, ov, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", append([]string{"build", "-overlay", ovFile, "-o", t.TempDir() + "/"}, pkgs...)...)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err == nil {
		return
	}
	// Attribute each error to its snippet: go build heads each package's
	// errors with "# <package path>".
	byIndex := map[int][]string{}
	cur := -1
	headRE := regexp.MustCompile(`doccode/snippet(\d+)$`)
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "# ") {
			cur = -1
			if m := headRE.FindStringSubmatch(l); m != nil {
				fmt.Sscan(m[1], &cur)
			}
			continue
		}
		if cur >= 0 && l != "" {
			byIndex[cur] = append(byIndex[cur], l)
		}
	}
	if len(byIndex) == 0 {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for i, s := range snippets {
		if lines := byIndex[i]; len(lines) > 0 {
			src, _, _ := wrapSnippet(s.code)
			t.Errorf("%s does not compile:\n%s\nprogram:\n%s", s.where, strings.Join(lines, "\n"), src)
		}
	}
}
