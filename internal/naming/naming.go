// Package naming holds the naming rules of channels and groups, and the
// shell-style patterns that channel capacities and a worker's channel filters
// are written in. Package channels exposes the default rules as
// channels.ValidateChannelName and channels.ValidateGroupName; layers apply
// their configured length limit with Rules.
package naming

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalidName is channels.ErrInvalidName: a channel name, group name or
// NewChannel pattern breaks the naming rules.
var ErrInvalidName = errors.New("channels: invalid name")

// DefaultMaxLength is the length from which channel and group names are
// refused: names must be shorter than 100 characters, as the reference
// validator requires.
const DefaultMaxLength = 100

// Rules validates channel names, group names and NewChannel patterns.
// The zero value applies the default length limit.
//
// Names are ASCII letters, digits, '-', '_' and '.'. A channel name may
// contain one type marker, '?' (single-reader) or '!' (process-specific),
// followed by at least one more name character. Group names have no marker.
// The whole string must match; anything else is an error wrapping
// [ErrInvalidName].
type Rules struct {
	// MaxLength is the length from which names are refused. Zero means
	// DefaultMaxLength.
	MaxLength int
}

func (r Rules) max() int {
	if r.MaxLength > 0 {
		return r.MaxLength
	}
	return DefaultMaxLength
}

func nameChar(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '-' || b == '_' || b == '.'
}

// CheckChannel validates a channel name.
func (r Rules) CheckChannel(name string) error {
	if len(name) >= r.max() {
		return fmt.Errorf("%w: channel name %.40q... is %d characters long (limit %d)", ErrInvalidName, name, len(name), r.max()-1)
	}
	marker := -1
	for i := 0; i < len(name); i++ {
		b := name[i]
		if nameChar(b) {
			continue
		}
		if (b == '!' || b == '?') && marker < 0 && i > 0 && i < len(name)-1 {
			marker = i
			continue
		}
		return fmt.Errorf("%w: channel name %q (letters, digits, '-', '_', '.', and one '!' or '?' inside the name)", ErrInvalidName, name)
	}
	if name == "" {
		return fmt.Errorf("%w: empty channel name", ErrInvalidName)
	}
	return nil
}

// CheckGroup validates a group name.
func (r Rules) CheckGroup(name string) error {
	if len(name) >= r.max() {
		return fmt.Errorf("%w: group name %.40q... is %d characters long (limit %d)", ErrInvalidName, name, len(name), r.max()-1)
	}
	if name == "" {
		return fmt.Errorf("%w: empty group name", ErrInvalidName)
	}
	for i := 0; i < len(name); i++ {
		if !nameChar(name[i]) {
			return fmt.Errorf("%w: group name %q (letters, digits, '-', '_' and '.' only)", ErrInvalidName, name)
		}
	}
	return nil
}

// CheckPattern validates a NewChannel pattern: name characters ending in
// exactly one '!' or '?'.
func (r Rules) CheckPattern(pattern string) error {
	n := len(pattern)
	if n < 2 || (pattern[n-1] != '!' && pattern[n-1] != '?') {
		return fmt.Errorf("%w: new channel pattern %q must end in '!' or '?'", ErrInvalidName, pattern)
	}
	if n >= r.max() {
		return fmt.Errorf("%w: new channel pattern %.40q... is too long", ErrInvalidName, pattern)
	}
	for i := 0; i < n-1; i++ {
		if !nameChar(pattern[i]) {
			return fmt.Errorf("%w: new channel pattern %q", ErrInvalidName, pattern)
		}
	}
	return nil
}

// ProcessPrefix returns the part of a process-specific channel name up to and
// including its '!' ("websocket.send.abc!" for "websocket.send.abc!xyz"), or
// "" when the name has no '!'.
func ProcessPrefix(name string) string {
	if i := strings.IndexByte(name, '!'); i >= 0 {
		return name[:i+1]
	}
	return ""
}

// Glob is a compiled shell-style pattern, as used for channel capacities and
// a worker's channel filters: '*' matches any run of characters, '?' any one
// character, '[abc]' and '[a-z]' a set ('[!...]' or '[^...]' its complement).
// The pattern must match the whole name. Matching is case-sensitive.
type Glob struct {
	pattern string
}

// CompileGlob checks a glob pattern.
func CompileGlob(pattern string) (Glob, error) {
	for i := 0; i < len(pattern); i++ {
		if pattern[i] == '[' && strings.IndexByte(pattern[i+1:], ']') < 0 {
			return Glob{}, fmt.Errorf("channels: glob %q: unclosed '['", pattern)
		}
	}
	return Glob{pattern}, nil
}

// String returns the pattern.
func (g Glob) String() string { return g.pattern }

// Match reports whether name matches the whole pattern.
func (g Glob) Match(name string) bool {
	p, s := g.pattern, name
	// Iterative wildcard matching with a single backtrack point.
	starP, starS := -1, 0
	pi, si := 0, 0
	for si < len(s) {
		if pi < len(p) {
			switch c := p[pi]; c {
			case '*':
				starP, starS = pi, si
				pi++
				continue
			case '?':
				pi++
				si++
				continue
			case '[':
				if end, ok := matchClass(p[pi:], s[si]); ok {
					pi += end
					si++
					continue
				}
			default:
				if c == s[si] {
					pi++
					si++
					continue
				}
			}
		}
		if starP < 0 {
			return false
		}
		starS++
		pi, si = starP+1, starS
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

// matchClass matches b against the class at the start of p ("[...]") and
// returns the class's length.
func matchClass(p string, b byte) (int, bool) {
	end := strings.IndexByte(p[1:], ']')
	if end == 0 { // "[]...]": a ']' first is literal
		end = strings.IndexByte(p[2:], ']') + 1
	}
	if end < 0 {
		return 0, false
	}
	class := p[1 : end+1]
	negate := false
	if len(class) > 0 && (class[0] == '!' || class[0] == '^') {
		negate, class = true, class[1:]
	}
	in := false
	for i := 0; i < len(class); i++ {
		if i+2 < len(class) && class[i+1] == '-' {
			if b >= class[i] && b <= class[i+2] {
				in = true
			}
			i += 2
			continue
		}
		if class[i] == b {
			in = true
		}
	}
	return end + 2, in != negate
}
