package channels

import (
	"context"
	"fmt"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"
)

// Filter restricts a route to messages whose Key value matches Pattern. The
// pattern is a regular expression matched at the start of the value (add $
// to match the whole value). Its named groups, like (?P<room>[^/]+), are read
// by the consumer with Message.PathValue; unnamed capturing groups are not
// allowed. Bytes values are matched as ASCII text. A message without the key
// does not match.
type Filter struct {
	Key     string
	Pattern string
}

// Path returns a filter on the "path" key.
func Path(pattern string) Filter { return Filter{Key: "path", Pattern: pattern} }

// Key returns a filter on any key of the message content.
func Key(key, pattern string) Filter { return Filter{Key: key, Pattern: pattern} }

type compiledFilter struct {
	key   string
	re    *regexp.Regexp
	names []string
	// lit is set when the pattern is a literal string: the value must
	// equal it (exact) or start with it, which is checked without the
	// regexp engine.
	lit   string
	isLit bool
	exact bool
}

// literalPattern reports whether pattern, anchored at the start, matches
// exactly the strings equal to lit (exact) or starting with it: a run of
// literal characters, optionally between ^ and $, with no groups and no
// case folding.
func literalPattern(pattern string) (lit string, exact, ok bool) {
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return "", false, false
	}
	re = re.Simplify()
	parts := []*syntax.Regexp{re}
	if re.Op == syntax.OpConcat {
		parts = re.Sub
	}
	var b strings.Builder
	for i, p := range parts {
		switch {
		case p.Op == syntax.OpBeginText && b.Len() == 0:
		case p.Op == syntax.OpLiteral && p.Flags&syntax.FoldCase == 0 && !exact:
			b.WriteString(string(p.Rune))
		case p.Op == syntax.OpEndText && i == len(parts)-1:
			exact = true
		case p.Op == syntax.OpEmptyMatch:
		default:
			return "", false, false
		}
	}
	return b.String(), exact, true
}

func compileFilters(filters []Filter) ([]compiledFilter, error) {
	out := make([]compiledFilter, 0, len(filters))
	for _, f := range filters {
		re, err := regexp.Compile(`^(?:` + f.Pattern + `)`)
		if err != nil {
			return nil, fmt.Errorf("channels: route filter %s=%q: %w", f.Key, f.Pattern, err)
		}
		names := re.SubexpNames()
		for i, n := range names {
			if i > 0 && n == "" {
				return nil, fmt.Errorf("channels: route filter %s=%q has an unnamed group; use (?P<name>...) or (?:...)", f.Key, f.Pattern)
			}
		}
		cf := compiledFilter{key: f.Key, re: re, names: names}
		cf.lit, cf.exact, cf.isLit = literalPattern(f.Pattern)
		out = append(out, cf)
	}
	return out, nil
}

// Router routes messages to consumers by channel name and content filters;
// the first route that matches wins. A *Router is itself a ChannelConsumer:
// its Channels method lists what a worker must receive on, and routers
// nest. Routes are normally added before the router is used; adding them
// later is safe but not ordered with concurrent Consume calls.
type Router struct {
	// AcceptUnrouted makes WithDefaults accept the WebSocket connections
	// whose path no route of this router handles, as versions before 0.1.0
	// did. By default, when the router routes any WebSocket channel,
	// WithDefaults rejects them with 403, as Django Channels' URL router
	// does, so a typo in a route's path is told at once instead of giving a
	// socket that never answers.
	AcceptUnrouted bool

	mu      sync.RWMutex
	entries []routeEntry
}

type routeEntry struct {
	// A route has channels and a consumer; an include has a sub-router.
	channels []string
	consumer Consumer
	name     string
	sub      *Router
	filters  []compiledFilter
}

// NewRouter returns an empty router.
func NewRouter() *Router { return &Router{} }

// Route routes messages on channel that pass every filter to c. It panics
// if the channel name is invalid or a filter does not compile, as
// regexp.MustCompile does; routing tables are program text.
func (r *Router) Route(channel string, c Consumer, filters ...Filter) {
	if err := ValidateChannelName(channel); err != nil {
		panic(fmt.Sprintf("channels: Route: %v", err))
	}
	r.add(routeEntry{channels: []string{channel}, consumer: c, name: ConsumerName(c)}, filters)
}

// RouteFunc routes to a function; see Route.
func (r *Router) RouteFunc(channel string, f func(ctx context.Context, m *Message) error, filters ...Filter) {
	r.Route(channel, ConsumerFunc(f), filters...)
}

// Handle routes every channel c lists to c, like Route for each of them
// (route_class in Django Channels).
func (r *Router) Handle(c ChannelConsumer, filters ...Filter) {
	chs := c.Channels()
	if len(chs) == 0 {
		panic(fmt.Sprintf("channels: Handle: %s lists no channels", ConsumerName(c)))
	}
	for _, ch := range chs {
		if err := ValidateChannelName(ch); err != nil {
			panic(fmt.Sprintf("channels: Handle: %v", err))
		}
	}
	r.add(routeEntry{channels: slices.Clone(chs), consumer: c, name: ConsumerName(c)}, filters)
}

// Include adds the routes of sub, tried in place. Each prefix filter must
// match at the start of its value; the matched part is removed from the
// value that sub's filters see, and its named groups are added to those of
// the inner route (the inner route's win on a clash). Consumers still see
// the whole, unchanged message.
func (r *Router) Include(sub *Router, prefix ...Filter) {
	if sub == r {
		panic("channels: Include: a router cannot include itself")
	}
	r.add(routeEntry{sub: sub}, prefix)
}

func (r *Router) add(e routeEntry, filters []Filter) {
	cf, err := compileFilters(filters)
	if err != nil {
		panic(err.Error())
	}
	e.filters = cf
	r.mu.Lock()
	r.entries = append(r.entries, e)
	r.mu.Unlock()
}

// Channels returns the sorted names of every channel routed to.
func (r *Router) Channels() []string {
	set := make(map[string]struct{})
	r.collect(set)
	out := make([]string, 0, len(set))
	for ch := range set {
		out = append(out, ch)
	}
	slices.Sort(out)
	return out
}

func (r *Router) collect(set map[string]struct{}) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, e := range r.entries {
		if e.sub != nil {
			e.sub.collect(set)
			continue
		}
		for _, ch := range e.channels {
			set[ch] = struct{}{}
		}
	}
}

// Match returns the consumer the router would run for m and the values its
// filters captured, without running it.
func (r *Router) Match(m *Message) (Consumer, map[string]string, bool) {
	e, values, ok := r.match(m, nil)
	if !ok {
		return nil, nil, false
	}
	return e.consumer, values, true
}

// Consume runs the consumer of the first matching route, after making the
// captured values available through m.PathValue. With no match it returns an
// error wrapping ErrNoRoute.
func (r *Router) Consume(ctx context.Context, m *Message) error {
	e, values, ok := r.match(m, nil)
	if !ok {
		return fmt.Errorf("%w: channel %q", ErrNoRoute, m.Channel)
	}
	for k, v := range values {
		m.SetPathValue(k, v)
	}
	m.consumer = e.name
	return e.consumer.Consume(ctx, m)
}

// Name implements Namer.
func (r *Router) Name() string { return "Router" }

// match tries the entries in order. overrides holds values already stripped
// by enclosing includes.
func (r *Router) match(m *Message, overrides map[string]string) (routeEntry, map[string]string, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, e := range r.entries {
		if e.sub == nil && !slices.Contains(e.channels, m.Channel) {
			continue
		}
		values, inner, ok := matchFilters(e.filters, m, overrides, e.sub != nil)
		if !ok {
			continue
		}
		if e.sub == nil {
			return e, values, true
		}
		ie, ivalues, ok := e.sub.match(m, inner)
		if !ok {
			continue
		}
		if values == nil && len(ivalues) > 0 {
			values = make(map[string]string, len(ivalues))
		}
		for k, v := range ivalues {
			values[k] = v
		}
		return ie, values, true
	}
	return routeEntry{}, nil, false
}

// matchFilters checks every filter; for includes it also returns the values
// with the matched prefixes removed.
func matchFilters(filters []compiledFilter, m *Message, overrides map[string]string, strip bool) (map[string]string, map[string]string, bool) {
	var values map[string]string // made on the first captured value
	inner := overrides
	if strip && len(filters) > 0 {
		inner = make(map[string]string, len(overrides)+len(filters))
		for k, v := range overrides {
			inner[k] = v
		}
	}
	for _, f := range filters {
		s, ok := overrides[f.key]
		if !ok {
			s, ok = textValue(m.Content[f.key])
			if !ok {
				return nil, nil, false
			}
		}
		var loc []int
		switch {
		case !f.isLit:
			loc = f.re.FindStringSubmatchIndex(s)
		case f.exact && s == f.lit, !f.exact && strings.HasPrefix(s, f.lit):
			loc = []int{0, len(f.lit)}
		}
		if loc == nil {
			return nil, nil, false
		}
		for i, name := range f.names {
			if i > 0 && loc[2*i] >= 0 {
				if values == nil {
					values = make(map[string]string, len(f.names))
				}
				values[name] = s[loc[2*i]:loc[2*i+1]]
			}
		}
		if strip {
			inner[f.key] = s[loc[1]:]
		}
	}
	return values, inner, true
}

func textValue(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case []byte:
		for _, b := range v {
			if b >= utf8.RuneSelf {
				return "", false
			}
		}
		return string(v), true
	}
	return "", false
}
