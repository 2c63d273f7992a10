package redislayer_test

import (
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/internal/testenv"
	"github.com/gochannels/channels/redislayer"
)

// The process-specific channels of one process prefix are bounded
// together, as channels_redis bounds them: ProcessCapacity for the whole
// prefix, or the first capacity rule matching the prefix. A full prefix
// refuses sends to every channel under it and leaves other prefixes
// alone; a receive makes room again. Nothing is counted per channel: the
// only keys are the channel keys (and no count hashes).
func TestProcessCapacityPerPrefix(t *testing.T) {
	url := testenv.RedisURL(t)
	const procCap = 4
	l := newLayer(t, redislayer.Config{
		Hosts:           []string{url},
		Capacity:        2,
		ProcessCapacity: procCap,
		ChannelCapacity: []channels.CapacityRule{{Pattern: "pc.ruled!*", Capacity: 3}},
	})
	ctx := t.Context()
	a, _ := l.NewChannel(ctx, "pc.gw!")
	b, _ := l.NewChannel(ctx, "pc.gw!")
	other, _ := l.NewChannel(ctx, "pc.other!")
	ruled, _ := l.NewChannel(ctx, "pc.ruled!")

	// Each channel alone is over the ordinary capacity (2); together they
	// fill the prefix.
	for i := range procCap {
		ch := a
		if i%2 == 1 {
			ch = b
		}
		if err := l.Send(ctx, ch, channels.Content{"i": int64(i)}); err != nil {
			t.Fatalf("send %d under a prefix of capacity %d: %v", i+1, procCap, err)
		}
	}
	for _, ch := range []string{a, b} {
		if err := l.Send(ctx, ch, channels.Content{}); !errors.Is(err, channels.ErrChannelFull) {
			t.Fatalf("send to %s with its prefix holding %d = %v; want ErrChannelFull", ch, procCap, err)
		}
	}
	if err := l.Send(ctx, other, channels.Content{}); err != nil {
		t.Fatalf("send to another prefix: %v", err)
	}
	for i := range 3 {
		if err := l.Send(ctx, ruled, channels.Content{}); err != nil {
			t.Fatalf("send %d to a prefix a rule gives capacity 3: %v", i+1, err)
		}
	}
	if err := l.Send(ctx, ruled, channels.Content{}); !errors.Is(err, channels.ErrChannelFull) {
		t.Fatalf("send 4 to a prefix a rule gives capacity 3 = %v; want ErrChannelFull", err)
	}
	for ch, want := range map[string]int{a: procCap, ruled: 3, "pc.normal": 2} {
		cs, err := l.ChannelStats(ctx, ch)
		if err != nil {
			t.Fatal(err)
		}
		if cs.Capacity != want {
			t.Errorf("ChannelStats(%s).Capacity = %d; want %d", ch, cs.Capacity, want)
		}
	}
	// A receive on one channel makes room for a send to the other.
	if c := recvOne(t, l, a); c["i"] != int64(0) {
		t.Fatalf("first message of %s has i=%v", a, c["i"])
	}
	if err := l.Send(ctx, b, channels.Content{"i": int64(4)}); err != nil {
		t.Fatalf("send after a receive freed room under the prefix: %v", err)
	}

	// (The receive loop may have emptied pc.gw!, and Redis deletes an
	// empty key.)
	raw := rawClient(t, url)
	want := []string{"pc.gw!", "pc.other!", "pc.ruled!", ":epoch"} // the epoch: see OnDataLoss
	for _, k := range scanKeys(t, raw, l.Prefix()) {
		if name := strings.TrimPrefix(k, l.Prefix()); !slices.Contains(want, name) {
			t.Errorf("key %q under the prefix; want only the process keys %v", k, want)
		}
	}
}

// A group send to members of one process prefix checks the prefix's
// capacity once and adds one message for all of them, or skips them all
// when the prefix is full; with the capacities resolved by the group send
// script (globs) or in Go (a Regexp rule).
func TestGroupSendProcessCapacity(t *testing.T) {
	url := testenv.RedisURL(t)
	for _, tc := range []struct {
		name  string
		rules []channels.CapacityRule
	}{
		{"script", nil},
		{"go", []channels.CapacityRule{{Regexp: regexp.MustCompile(`^unrelated$`), Capacity: 7}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const procCap = 3
			l := newLayer(t, redislayer.Config{Hosts: []string{url}, Capacity: 1, ProcessCapacity: procCap, ChannelCapacity: tc.rules})
			ctx := t.Context()
			var members []string
			for range 5 {
				n, _ := l.NewChannel(ctx, "gpc.gw!")
				members = append(members, n)
				if err := l.GroupAdd(ctx, "gpc-room", n); err != nil {
					t.Fatal(err)
				}
			}
			// Five members, each over the ordinary capacity (1) after the
			// second send: the prefix's bound (3 messages) decides.
			for i := range procCap + 2 {
				if err := l.GroupSend(ctx, "gpc-room", channels.Content{"i": int64(i)}); err != nil {
					t.Fatalf("GroupSend %d: %v", i, err)
				}
			}
			st, err := l.Stats(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if st.Sent != procCap*5 || st.GroupSkipped != 2*5 {
				t.Errorf("Stats: Sent %d, GroupSkipped %d; want %d sent and %d skipped", st.Sent, st.GroupSkipped, procCap*5, 2*5)
			}
			cs, err := l.ChannelStats(ctx, members[0])
			if err != nil {
				t.Fatal(err)
			}
			if cs.Length != procCap {
				t.Errorf("the prefix holds %d messages; want %d (one per group send)", cs.Length, procCap)
			}
			for _, m := range members {
				for i := range procCap {
					if c := recvOne(t, l, m); c["i"] != int64(i) {
						t.Fatalf("%s: message %d has i=%v", m, i, c["i"])
					}
				}
				noneOn(t, l, m)
			}
		})
	}
}

// Over two hosts an ordinary channel's messages go to the hosts in turn,
// each holding up to the capacity: ChannelStats reports the capacity of
// both, as its Length counts both, and the channel takes that many
// messages before a send is refused.
func TestChannelStatsCapacityOverHosts(t *testing.T) {
	t.Parallel()
	a, b := testenv.StartRedis(t), testenv.StartRedis(t)
	const capacity = 2
	l := newLayer(t, redislayer.Config{Hosts: []string{a.URL, b.URL}, Capacity: capacity})
	ctx := t.Context()
	for i := range 2 * capacity {
		if err := l.Send(ctx, "cap.hosts", channels.Content{"i": int64(i)}); err != nil {
			t.Fatalf("send %d of %d over two hosts of capacity %d: %v", i+1, 2*capacity, capacity, err)
		}
	}
	if err := l.Send(ctx, "cap.hosts", channels.Content{}); !errors.Is(err, channels.ErrChannelFull) {
		t.Fatalf("send with both hosts full = %v; want ErrChannelFull", err)
	}
	cs, err := l.ChannelStats(ctx, "cap.hosts")
	if err != nil {
		t.Fatal(err)
	}
	if cs.Length != 2*capacity || cs.Capacity != 2*capacity {
		t.Errorf("ChannelStats = length %d, capacity %d; want %d and %d", cs.Length, cs.Capacity, 2*capacity, 2*capacity)
	}
	// A process-specific channel goes to one host: its prefix's capacity.
	name, err := l.NewChannel(ctx, "cap.proc!")
	if err != nil {
		t.Fatal(err)
	}
	if cs, err := l.ChannelStats(ctx, name); err != nil || cs.Capacity != redislayer.DefaultProcessCapacity {
		t.Errorf("ChannelStats(%s) = capacity %d, %v; want %d (the default process capacity, on one host)", name, cs.Capacity, err, redislayer.DefaultProcessCapacity)
	}
}
