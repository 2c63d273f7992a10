// Package capacities resolves the capacity of a channel from a layer's
// configured channels.CapacityRule list.
package capacities

import (
	"fmt"
	"regexp"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/internal/naming"
)

// Table resolves a channel's capacity: the first rule that matches wins,
// otherwise the default.
type Table struct {
	def   int
	rules []capacityRule
}

type capacityRule struct {
	glob     naming.Glob
	re       *regexp.Regexp
	capacity int
}

// New compiles capacity rules. A rule with neither pattern nor
// regexp, or a capacity below 1, is an error.
func New(def int, rules []channels.CapacityRule) (*Table, error) {
	if def < 1 {
		return nil, fmt.Errorf("channels: default capacity %d must be at least 1", def)
	}
	c := &Table{def: def}
	for _, r := range rules {
		if r.Capacity < 1 {
			return nil, fmt.Errorf("channels: capacity %d for %q must be at least 1", r.Capacity, r.Pattern)
		}
		cr := capacityRule{capacity: r.Capacity, re: r.Regexp}
		switch {
		case r.Regexp != nil:
		case r.Pattern != "":
			g, err := naming.CompileGlob(r.Pattern)
			if err != nil {
				return nil, err
			}
			cr.glob = g
		default:
			return nil, fmt.Errorf("channels: capacity rule has no pattern")
		}
		c.rules = append(c.rules, cr)
	}
	return c, nil
}

// For returns the capacity of the named channel.
func (c *Table) For(name string) int {
	if n, ok := c.Rule(name); ok {
		return n
	}
	return c.def
}

// Rule returns the capacity the first matching rule gives the named
// channel, and false when no rule matches.
func (c *Table) Rule(name string) (int, bool) {
	for _, r := range c.rules {
		if r.re != nil {
			if loc := r.re.FindStringIndex(name); loc != nil && loc[0] == 0 {
				return r.capacity, true
			}
			continue
		}
		if r.glob.Match(name) {
			return r.capacity, true
		}
	}
	return 0, false
}

// Default returns the capacity of channels no rule matches.
func (c *Table) Default() int { return c.def }
