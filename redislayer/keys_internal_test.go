package redislayer

import (
	"strconv"
	"testing"
)

// Scores are Unix seconds with exactly six decimals, as channels_redis
// writes them, and parse back to the same microsecond.
func TestFormatMicros(t *testing.T) {
	for _, tc := range []struct {
		us   int64
		want string
	}{
		{0, "0.000000"},
		{1, "0.000001"},
		{999999, "0.999999"},
		{1000000, "1.000000"},
		{1712345678123456, "1712345678.123456"},
		{1712345678000001, "1712345678.000001"},
		{-1, "-0.000001"},
		{-1500000, "-1.500000"},
	} {
		got := formatMicros(tc.us)
		if got != tc.want {
			t.Errorf("formatMicros(%d) = %q; want %q", tc.us, got, tc.want)
		}
		f, err := strconv.ParseFloat(got, 64)
		if err != nil {
			t.Fatal(err)
		}
		if back := scoreTime(f).UnixMicro(); back != tc.us {
			t.Errorf("scoreTime(%s) = %d µs; want %d", got, back, tc.us)
		}
	}
}

// The clock never repeats or goes back, so one sender's messages keep
// their order in a sorted set.
func TestClockStrictlyIncreasing(t *testing.T) {
	var c clock
	last := c.next()
	for range 100000 {
		n := c.next()
		if n <= last {
			t.Fatalf("clock went from %d to %d", last, n)
		}
		last = n
	}
}
