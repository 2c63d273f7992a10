package channels_test

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/gochannels/channels"
)

func TestNameRules(t *testing.T) {
	for _, tc := range []struct {
		name  string
		valid bool
	}{
		{"http.request", true},
		{"http.response!ab0def", true},
		{"http.request.body?ab0def", true},
		{"0.a_b-c?d_e-f.1", true},
		{strings.Repeat("a", 99), true},
		{"http.request£", false},
		{"one?two?three", false},
		{"four!five!six", false},
		{"some+other!thing", false},
		{"a!b?c", false},
		{strings.Repeat("a", 100), false},
		{strings.Repeat("a", 120), false},
		{"", false},
		{"http.response!", false},
		{"!abc", false},
		{"été", false},
		{"a\x00b", false},
	} {
		err := channels.ValidateChannelName(tc.name)
		if tc.valid != (err == nil) {
			t.Errorf("ValidateChannelName(%q) = %v; want valid=%v", tc.name, err, tc.valid)
		}
		if err != nil && !errors.Is(err, channels.ErrInvalidName) {
			t.Errorf("ValidateChannelName(%q) = %v; want ErrInvalidName", tc.name, err)
		}
	}
	for _, tc := range []struct {
		name  string
		valid bool
	}{
		{"chat", true},
		{"chat-room_1.x", true},
		{"foo.bar?baz", false},
		{"foo.bar!baz", false},
		{"", false},
		{strings.Repeat("g", 100), false},
	} {
		if err := channels.ValidateGroupName(tc.name); tc.valid != (err == nil) {
			t.Errorf("ValidateGroupName(%q) = %v; want valid=%v", tc.name, err, tc.valid)
		}
	}
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
		if err := (channels.NameRules{}).CheckPattern(tc.pattern); tc.valid != (err == nil) {
			t.Errorf("CheckPattern(%q) = %v; want valid=%v", tc.pattern, err, tc.valid)
		}
	}
	long := channels.NameRules{MaxLength: 200}
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
		g, err := channels.CompileGlob(tc.pattern)
		if err != nil {
			t.Fatal(err)
		}
		if got := g.Match(tc.name); got != tc.want {
			t.Errorf("Glob(%q).Match(%q) = %v; want %v", tc.pattern, tc.name, got, tc.want)
		}
	}
	if _, err := channels.CompileGlob("a[bc"); err == nil {
		t.Error("CompileGlob accepted an unclosed '['")
	}
}

func TestCapacities(t *testing.T) {
	// The spec's example: default 42.
	c, err := channels.NewCapacities(42, []channels.CapacityRule{
		{Pattern: "http.response!*", Capacity: 10},
		{Pattern: "http.request", Capacity: 100},
		{Regexp: regexp.MustCompile(`ws\.`), Capacity: 7},
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]int{
		"http.disconnect":        42,
		"http.request":           100,
		"http.response!abcdefgh": 10,
		"ws.anything":            7,
		"not.ws.anything":        42, // a regexp is anchored at the start
	} {
		if got := c.For(name); got != want {
			t.Errorf("capacity of %s = %d; want %d", name, got, want)
		}
	}
	if _, err := channels.NewCapacities(0, nil); err == nil {
		t.Error("NewCapacities accepted a default of 0")
	}
	if _, err := channels.NewCapacities(1, []channels.CapacityRule{{Capacity: 3}}); err == nil {
		t.Error("NewCapacities accepted a rule with no pattern")
	}
}

func TestProcessPrefix(t *testing.T) {
	if p := channels.ProcessPrefix("websocket.send.abc!xyz"); p != "websocket.send.abc!" {
		t.Errorf("ProcessPrefix = %q", p)
	}
	if p := channels.ProcessPrefix("http.request"); p != "" {
		t.Errorf("ProcessPrefix of a normal name = %q", p)
	}
}
