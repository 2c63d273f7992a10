package channels

import (
	"regexp"

	"github.com/gochannels/channels/internal/naming"
)

// ValidateChannelName validates a channel name with the default rules, the
// ones layers apply unless configured with another length limit.
//
// Names are ASCII letters, digits, '-', '_' and '.', shorter than 100
// characters. A channel name may contain one type marker, '?'
// (single-reader) or '!' (process-specific), followed by at least one more
// name character. The whole string must match; anything else is an error
// wrapping [ErrInvalidName].
func ValidateChannelName(name string) error { return naming.Rules{}.CheckChannel(name) }

// ValidateGroupName validates a group name with the default rules: as for
// [ValidateChannelName], but group names have no type marker.
func ValidateGroupName(name string) error { return naming.Rules{}.CheckGroup(name) }

// CapacityRule gives the capacity of the channels whose names match it:
// either a glob Pattern (whole name) or a Regexp (matched at the start of the
// name, as the reference layers do with compiled patterns). In a glob, '*'
// matches any run of characters, '?' any one character, '[abc]' and '[a-z]'
// a set ('[!...]' or '[^...]' its complement); matching is case-sensitive.
// The first rule that matches a channel gives its capacity.
type CapacityRule struct {
	Pattern  string
	Regexp   *regexp.Regexp
	Capacity int
}
