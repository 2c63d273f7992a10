package channels

import (
	"regexp"
	"testing"
)

// Filters that are plain strings are matched without the regexp engine;
// they must match exactly what the regexp would, captures and the rest
// that includes hand down included.
func TestLiteralFiltersMatchLikeRegexps(t *testing.T) {
	cases := []struct {
		pattern string
		literal bool
	}{
		{`^/echo/$`, true},
		{`/echo/$`, true},
		{`^/chat/`, true},
		{`\A/a\.b\z`, true},
		{``, true},
		{`(?i)^/echo/$`, false},
		{`^/echo/?$`, false},
		{`(?m)^/echo/$`, false},
		{`^/(?P<room>[a-z]+)/$`, false},
		{`^/a$|^/b$`, false},
	}
	values := []string{"/echo/", "/echo", "/echo/x", "/ECHO/", "x/echo/", "/chat/", "/chat/room/", "/chat", "/a.b", "/axb", "", "/a", "/b", "/echo/\n"}
	for _, tc := range cases {
		_, _, ok := literalPattern(tc.pattern)
		if ok != tc.literal {
			t.Errorf("literalPattern(%q) literal = %v, want %v", tc.pattern, ok, tc.literal)
		}
		fs, err := compileFilters([]Filter{Path(tc.pattern)})
		if err != nil {
			t.Fatal(err)
		}
		re := regexp.MustCompile(`^(?:` + tc.pattern + `)`)
		for _, v := range values {
			m := &Message{Channel: "websocket.receive", Content: Content{"path": v}}
			_, inner, got := matchFilters(fs, m, nil, true)
			loc := re.FindStringIndex(v)
			if got != (loc != nil) {
				t.Errorf("pattern %q, path %q: matched %v, the regexp %v", tc.pattern, v, got, loc != nil)
				continue
			}
			if got && inner["path"] != v[loc[1]:] {
				t.Errorf("pattern %q, path %q: rest %q, the regexp's %q", tc.pattern, v, inner["path"], v[loc[1]:])
			}
		}
	}
}
