package naming_test

import (
	"strings"
	"testing"

	"github.com/gochannels/channels/internal/naming"
)

func TestPatternsAndLength(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		valid   bool
	}{
		{"http.response!", true},
		{"test.foo?", true},
		{"test!foo", false},
		{"test.foo", false},
		{"!", false},
		{"a!!", false},
	} {
		if err := (naming.Rules{}).CheckPattern(tc.pattern); tc.valid != (err == nil) {
			t.Errorf("CheckPattern(%q) = %v; want valid=%v", tc.pattern, err, tc.valid)
		}
	}
	long := naming.Rules{MaxLength: 200}
	if err := long.CheckChannel(strings.Repeat("a", 150)); err != nil {
		t.Errorf("MaxLength 200: %v", err)
	}
}

func TestGlob(t *testing.T) {
	for _, tc := range []struct {
		pattern, name string
		want          bool
	}{
		{"http.response!*", "http.response!abcdefgh", true},
		{"http.response!*", "http.response!", true},
		{"http.response!*", "http.request", false},
		{"http.request", "http.request", true},
		{"http.request", "http.request.body", false},
		{"yes.*", "yes.1", true},
		{"yes.*", "yes", false},
		{"y?s.[0-9]", "yes.1", true},
		{"y?s.[!0-9]", "yes.1", false},
		{"y?s.[^0-9]", "yes.a", true},
		{"*.*.*", "a.b.c", true},
		{"*a*b", "xxaxxbxb", true},
		{"*a*b", "xxaxxbxc", false},
		{"", "", true},
		{"*", "", true},
	} {
		g, err := naming.CompileGlob(tc.pattern)
		if err != nil {
			t.Fatal(err)
		}
		if got := g.Match(tc.name); got != tc.want {
			t.Errorf("Glob(%q).Match(%q) = %v; want %v", tc.pattern, tc.name, got, tc.want)
		}
	}
	if _, err := naming.CompileGlob("a[bc"); err == nil {
		t.Error("CompileGlob accepted an unclosed '['")
	}
}

func TestProcessPrefix(t *testing.T) {
	if p := naming.ProcessPrefix("websocket.send.abc!xyz"); p != "websocket.send.abc!" {
		t.Errorf("ProcessPrefix = %q", p)
	}
	if p := naming.ProcessPrefix("http.request"); p != "" {
		t.Errorf("ProcessPrefix of a normal name = %q", p)
	}
}
