package redislayer

import (
	"context"
	"testing"

	"github.com/gochannels/channels/internal/naming"
	"github.com/gochannels/channels/internal/testenv"
	"github.com/redis/rueidis"
)

// The capacity globs the group send script evaluates in Lua match exactly
// the names naming.Glob matches.
func TestGlobToLuaAgreesWithGlob(t *testing.T) {
	url := testenv.RedisURL(t)
	opt, err := rueidis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	opt.DisableCache, opt.ForceSingleClient = true, true
	c, err := rueidis.NewClient(opt)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	globs := []string{
		"http.response!*", "http.request", "*", "a?c", "[a-c]x*", "[!a]*", "[^ab]?",
		"web-socket.*", "x.y_z-[0-9]*", "a[.]b", "a[-x]b", "a[x-]b", "*.*!*", "?", "[]x]",
		"a%b", "(x)", "a+b", "a^b$",
	}
	names := []string{
		"http.response!abc", "http.response!", "http.request", "http.requests", "abc", "axc",
		"bxq", "zz", "z", "web-socket.send", "websocket.send", "x.y_z-5q", "x.y_z-q5", "a.b",
		"axb", "a-b", "a%b", "(x)", "a+b", "a^b$", "aab", "x", "", "chat.room!conn",
	}
	find := rueidis.NewLuaScript(`if string.find(ARGV[2], ARGV[1]) then return 1 end return 0`)
	converted := 0
	for _, g := range globs {
		p, ok := globToLua(g)
		if !ok {
			continue
		}
		converted++
		glob, err := naming.CompileGlob(g)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			got, err := find.Exec(context.Background(), c, nil, []string{p, n}).AsInt64()
			if err != nil {
				t.Fatalf("glob %q as Lua %q: %v", g, p, err)
			}
			if want := glob.Match(n); (got == 1) != want {
				t.Errorf("glob %q (Lua %q) on %q: Lua says %v, Glob says %v", g, p, n, got == 1, want)
			}
		}
	}
	if converted < len(globs)-1 {
		t.Errorf("only %d of %d globs converted to Lua", converted, len(globs))
	}
}
