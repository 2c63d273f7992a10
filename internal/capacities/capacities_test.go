package capacities_test

import (
	"regexp"
	"testing"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/internal/capacities"
)

func TestTable(t *testing.T) {
	// The spec's example: default 42.
	c, err := capacities.New(42, []channels.CapacityRule{
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
	if _, err := capacities.New(0, nil); err == nil {
		t.Error("New accepted a default of 0")
	}
	if _, err := capacities.New(1, []channels.CapacityRule{{Capacity: 3}}); err == nil {
		t.Error("New accepted a rule with no pattern")
	}
}
