package channels_test

import (
	"errors"
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
}
