package redislayer_test

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/internal/testenv"
	"github.com/gochannels/channels/internal/wire"
	"github.com/gochannels/channels/redislayer"
	"github.com/redis/rueidis"
)

// Group sends respect each member's capacity, also for process-specific
// channels sharing one Redis key, whether the capacities are globs (read
// by the group send script) or a Regexp (resolved in Go).
func TestGroupSendCapacity(t *testing.T) {
	url := testenv.RedisURL(t)
	for _, tc := range []struct {
		name  string
		rules []channels.CapacityRule
	}{
		{"glob", []channels.CapacityRule{{Pattern: "cap.small!*", Capacity: 2}}},
		{"regexp", []channels.CapacityRule{{Regexp: regexp.MustCompile(`cap\.small!`), Capacity: 2}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLayer(t, redislayer.Config{Hosts: []string{url}, Capacity: 5, ChannelCapacity: tc.rules})
			ctx := t.Context()
			members := []string{"cap.small!a", "cap.small!b", "cap.big"}
			for _, m := range members {
				if err := l.GroupAdd(ctx, "cap-group", m); err != nil {
					t.Fatal(err)
				}
			}
			for i := range 4 {
				if err := l.GroupSend(ctx, "cap-group", channels.Content{"i": int64(i)}); err != nil {
					t.Fatalf("GroupSend %d: %v", i, err)
				}
			}
			st, err := l.Stats(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if st.GroupSkipped != 4 || st.Sent != 8 {
				t.Errorf("Stats: Sent %d, GroupSkipped %d; want 8 sent (2+2+4), 4 skipped", st.Sent, st.GroupSkipped)
			}
			for ch, want := range map[string]int{"cap.small!a": 2, "cap.small!b": 2, "cap.big": 4} {
				for i := range want {
					c := recvOne(t, l, ch)
					if n, _ := c.Int("i"); n != int64(i) {
						t.Errorf("%s: message %d has i=%d", ch, i, n)
					}
				}
				noneOn(t, l, ch)
			}
		})
	}
}

// One group send reaches all the channels of a process prefix with one
// message naming them all (as channels_redis 4 does), and each receiver
// gets its own copy.
func TestGroupSendOneMessagePerProcess(t *testing.T) {
	url := testenv.RedisURL(t)
	l := newLayer(t, redislayer.Config{Hosts: []string{url}})
	ctx := t.Context()
	var names []string
	for range 3 {
		n, _ := l.NewChannel(ctx, "gw.one!")
		names = append(names, n)
		if err := l.GroupAdd(ctx, "one-room", n); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.GroupSend(ctx, "one-room", channels.Content{"list": []any{"x"}}); err != nil {
		t.Fatal(err)
	}
	raw := rawClient(t, url)
	members, err := raw.Do(ctx, raw.B().Zrange().Key(l.Prefix()+"gw.one!").Min("0").Max("-1").Build()).AsStrSlice()
	if err != nil || len(members) != 1 {
		t.Fatalf("the process key holds %d messages (%v); want 1", len(members), err)
	}
	c, err := wire.Unmarshal([]byte(members[0][12:]))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, v := range c["__asgi_channel__"].([]any) {
		got = append(got, v.(string))
	}
	slices.Sort(got)
	want := slices.Sorted(slices.Values(names))
	if !slices.Equal(got, want) {
		t.Fatalf("__asgi_channel__ = %v; want %v", got, want)
	}
	first := recvOne(t, l, names[0])
	first["list"].([]any)[0] = "changed"
	for _, n := range names[1:] {
		if c := recvOne(t, l, n); c["list"].([]any)[0] != "x" {
			t.Fatalf("%s received %v: copies are shared", n, c)
		}
	}
}

// While a process prefix's buffer is full, the receive loop leaves its
// messages in Redis: memory stays bounded and nothing is lost or
// reordered.
func TestProcessBufferBound(t *testing.T) {
	t.Parallel()
	url := testenv.RedisURL(t)
	const bound, n = 10, 40
	l := newLayer(t, redislayer.Config{Hosts: []string{url}, ProcessBuffer: bound})
	ctx := t.Context()
	busy, _ := l.NewChannel(ctx, "buf.gw!")
	idle, _ := l.NewChannel(ctx, "buf.gw!")
	for i := range n {
		if err := l.Send(ctx, busy, channels.Content{"i": int64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	// Waiting on another channel of the prefix makes the loop pop it.
	rctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	_, _, err := l.Receive(rctx, idle)
	cancel()
	if err == nil {
		t.Fatal("received a message on a channel nobody sent to")
	}
	if b := l.Counters().Buffered; b == 0 || b > bound {
		t.Fatalf("%d messages buffered; want between 1 and %d", b, bound)
	}
	cs, err := l.ChannelStats(ctx, busy)
	if err != nil {
		t.Fatal(err)
	}
	if cs.Length != n {
		t.Errorf("ChannelStats(%s).Length = %d; want %d (buffered here plus waiting in Redis)", busy, cs.Length, n)
	}
	for i := range n {
		if c := recvOne(t, l, busy); c["i"] != int64(i) {
			t.Fatalf("message %d has i=%v", i, c["i"])
		}
	}
	noneOn(t, l, busy)
}

func recvOne(t *testing.T, l *redislayer.Layer, ch string) channels.Content {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	got, c, err := l.Receive(ctx, ch)
	if err != nil || got != ch {
		t.Fatalf("Receive(%s) = %q, %v", ch, got, err)
	}
	return c
}

func noneOn(t *testing.T, l *redislayer.Layer, ch string) {
	t.Helper()
	if got, c, err := l.Poll(t.Context(), ch); err != nil || c != nil {
		t.Fatalf("Poll(%s) = %q, %v, %v; want nothing", ch, got, c, err)
	}
}

// A Receive over ordinary and process-specific channels serves both: a
// busy channel of one kind does not starve a quiet one of the other.
func TestMixedReceiveFairness(t *testing.T) {
	url := testenv.RedisURL(t)
	l := newLayer(t, redislayer.Config{Hosts: []string{url}, Capacity: 50})
	ctx := t.Context()
	proc, _ := l.NewChannel(ctx, "fair.gw!")
	for _, tc := range []struct{ busy, quiet string }{
		{"fair.busy", proc},
		{proc, "fair.quiet"},
	} {
		for i := range 20 {
			if err := l.Send(ctx, tc.busy, channels.Content{"i": int64(i)}); err != nil {
				t.Fatal(err)
			}
		}
		if err := l.Send(ctx, tc.quiet, channels.Content{"quiet": true}); err != nil {
			t.Fatal(err)
		}
		// Let the receive loop take the process-specific messages into
		// this process's buffer (waiting on another channel of the prefix
		// makes it pop the prefix).
		rctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		_, _, _ = l.Receive(rctx, "fair.gw!other")
		cancel()
		if b := l.Counters().Buffered; b == 0 {
			t.Fatalf("no message buffered after waiting on the prefix")
		}
		got := false
		for range 10 {
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			ch, _, err := l.Receive(rctx, "fair.busy", "fair.quiet", proc)
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			if ch == tc.quiet {
				got = true
				break
			}
		}
		if !got {
			t.Errorf("10 receives with %s busy never returned the message waiting on %s", tc.busy, tc.quiet)
		}
		for { // drain
			if _, c, err := l.Poll(ctx, "fair.busy", "fair.quiet", proc); err != nil || c == nil {
				break
			}
		}
	}
}

// A process-specific member is evicted from its groups when a message
// expires unread on its channel: in Redis (its process is gone) or in this
// process's buffer (its process is alive but nobody reads that channel).
// A later GroupAdd brings it back. (With GoReceiversOnly: by default the
// key of the dead process goes with its only message, unseen.)
func TestProcessMemberEvictedOnExpiry(t *testing.T) {
	t.Parallel()
	url := testenv.RedisURL(t)
	l := newLayer(t, redislayer.Config{Hosts: []string{url}, Expiry: time.Second, GroupExpiry: time.Minute, GoReceiversOnly: true})
	ctx := t.Context()
	gone := "evict.dead!conn" // nobody ever receives this prefix
	unread, _ := l.NewChannel(ctx, "evict.gw!")
	read, _ := l.NewChannel(ctx, "evict.gw!")
	for _, ch := range []string{gone, unread, read} {
		if err := l.GroupAdd(ctx, "evict-room", ch); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.GroupSend(ctx, "evict-room", channels.Content{"n": int64(1)}); err != nil {
		t.Fatal(err)
	}
	// This process reads the gateway prefix (so the message for unread
	// is taken into its buffer) but only ever the read channel.
	if c := recvOne(t, l, read); c["n"] != int64(1) {
		t.Fatalf("read got %v", c)
	}
	time.Sleep(2500 * time.Millisecond) // expiry, plus the buffer's once-a-second check
	if err := l.GroupSend(ctx, "evict-room", channels.Content{"n": int64(2)}); err != nil {
		t.Fatal(err)
	}
	members, err := l.GroupChannels(ctx, "evict-room")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(members, []string{read}) {
		t.Fatalf("members after messages expired unread = %v; want only %s", members, read)
	}
	if c := recvOne(t, l, read); c["n"] != int64(2) {
		t.Fatalf("read got %v; want n=2", c)
	}
	noneOn(t, l, unread)
	if err := l.GroupAdd(ctx, "evict-room", unread); err != nil {
		t.Fatal(err)
	}
	if err := l.GroupSend(ctx, "evict-room", channels.Content{"n": int64(3)}); err != nil {
		t.Fatal(err)
	}
	if c := recvOne(t, l, unread); c["n"] != int64(3) {
		t.Fatalf("re-added member got %v; want n=3", c)
	}
}

// Evictions are found whether the channels whose messages expired unread
// are fewer than a group's members (the group send looks those channels
// up in the group) or more (it looks every member up among them): in
// both, exactly the members with a message that expired after they
// joined leave the group. (With GoReceiversOnly, so that the keys of the
// channels whose only message expired are still there.)
func TestEvictionFewOrManyExpiredChannels(t *testing.T) {
	t.Parallel()
	url := testenv.RedisURL(t)
	l := newLayer(t, redislayer.Config{Hosts: []string{url}, Expiry: time.Second, GroupExpiry: time.Minute, GoReceiversOnly: true})
	ctx := t.Context()
	for _, tc := range []struct {
		name  string
		other int // channels outside the group whose messages expire
		live  int // members that keep receiving
	}{{"few", 0, 6}, {"many", 8, 1}} {
		t.Run(tc.name, func(t *testing.T) {
			group := "evict-" + tc.name
			dead := "evict." + tc.name + ".dead"
			var live, others []string
			for i := range tc.live {
				live = append(live, fmt.Sprintf("evict.%s.live%d", tc.name, i))
			}
			for i := range tc.other {
				others = append(others, fmt.Sprintf("evict.%s.other%d", tc.name, i))
			}
			for _, ch := range append([]string{dead}, live...) {
				if err := l.GroupAdd(ctx, group, ch); err != nil {
					t.Fatal(err)
				}
				if err := l.GroupAdd(ctx, group+"-others", ch); err != nil {
					t.Fatal(err)
				}
			}
			for _, ch := range others {
				if err := l.GroupAdd(ctx, group+"-others", ch); err != nil {
					t.Fatal(err)
				}
			}
			// Every channel gets a message; only the live ones are read.
			if err := l.GroupSend(ctx, group+"-others", channels.Content{"n": int64(1)}); err != nil {
				t.Fatal(err)
			}
			for _, ch := range live {
				recvOne(t, l, ch)
			}
			time.Sleep(1500 * time.Millisecond)
			// This send meets the expired messages (and marks their
			// channels); the next one to the group evicts the dead member.
			if err := l.GroupSend(ctx, group+"-others", channels.Content{"n": int64(2)}); err != nil {
				t.Fatal(err)
			}
			for _, ch := range live {
				recvOne(t, l, ch)
			}
			if err := l.GroupSend(ctx, group, channels.Content{"n": int64(3)}); err != nil {
				t.Fatal(err)
			}
			members, err := l.GroupChannels(ctx, group)
			if err != nil {
				t.Fatal(err)
			}
			want := slices.Sorted(slices.Values(live))
			if !slices.Equal(members, want) {
				t.Fatalf("members = %v; want %v", members, want)
			}
			for _, ch := range live {
				if c := recvOne(t, l, ch); c["n"] != int64(3) {
					t.Fatalf("%s got %v; want n=3", ch, c)
				}
			}
			noneOn(t, l, dead)
		})
	}
}

// A group send reuses the member lists it built for the previous one (for
// a large group: here 202 members) only while the group has exactly the
// same members, whoever changed it: here another client (as
// channels_redis would) swaps one member for another, with an older score
// and the group's size unchanged, between two sends.
func TestGroupSendSeesOtherWritersChanges(t *testing.T) {
	t.Parallel()
	url := testenv.RedisURL(t)
	prefix := testenv.Prefix("rl")
	l := newLayer(t, redislayer.Config{Hosts: []string{url}, Prefix: prefix})
	raw := rawClient(t, url)
	ctx := t.Context()
	a, _ := l.NewChannel(ctx, "snap.gw!")
	b, _ := l.NewChannel(ctx, "snap.gw!")
	c, _ := l.NewChannel(ctx, "snap.gw!")
	for _, ch := range []string{a, b} {
		if err := l.GroupAdd(ctx, "snap", ch); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 200 { // on a prefix nobody receives
		if err := l.GroupAdd(ctx, "snap", fmt.Sprintf("snapfill.gw!m%03d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for n := int64(1); n <= 2; n++ { // the second send uses the stored lists
		if err := l.GroupSend(ctx, "snap", channels.Content{"n": n}); err != nil {
			t.Fatal(err)
		}
		for _, ch := range []string{a, b} {
			if got := recvOne(t, l, ch); got["n"] != n {
				t.Fatalf("%s got %v; want n=%d", ch, got, n)
			}
		}
	}
	if n, err := raw.Do(ctx, raw.B().Exists().Key(prefix+":gsnap:snap", prefix+":glists:snap").Build()).AsInt64(); err != nil || n != 2 {
		t.Fatalf("the group's lists are not kept in Redis: EXISTS = %d, %v", n, err)
	}
	gk := prefix + ":group:snap"
	score := float64(time.Now().Add(-time.Second).UnixMicro()) / 1e6
	for _, cmd := range []rueidis.Completed{
		raw.B().Zrem().Key(gk).Member(b).Build(),
		raw.B().Zadd().Key(gk).ScoreMember().ScoreMember(score, c).Build(),
	} {
		if err := raw.Do(ctx, cmd).Error(); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.GroupSend(ctx, "snap", channels.Content{"n": int64(3)}); err != nil {
		t.Fatal(err)
	}
	for _, ch := range []string{a, c} {
		if got := recvOne(t, l, ch); got["n"] != int64(3) {
			t.Fatalf("%s got %v; want n=3", ch, got)
		}
	}
	noneOn(t, l, b)
}
