package redislayer_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/internal/testenv"
	"github.com/gochannels/channels/redislayer"
	"github.com/google/go-cmp/cmp"
	"github.com/redis/rueidis"
)

// reference is the message testdata/interop.py holds as REFERENCE.
func reference() channels.Content {
	return channels.Content{
		"bytes":  []byte{0x00, 0xff, 0xc2, 0xa3},
		"text":   "£ ✓ 漢字 🙂",
		"int":    int64(42),
		"neg":    int64(-7),
		"big":    int64(math.MaxInt64),
		"min":    int64(math.MinInt64),
		"float":  3.25,
		"nil":    nil,
		"true":   true,
		"false":  false,
		"empty":  "",
		"emptyb": []byte{},
		"list":   []any{int64(1), "two", []byte("three"), []any{}, map[string]any{}},
		"nested": map[string]any{
			"a": map[string]any{"b": []any{[]byte{0xc2, 0xa3}, "£", nil}},
			"h": []any{[]any{[]byte("host"), []byte("example.com")}},
		},
	}
}

// python is a running testdata/interop.py.
type python struct {
	t   *testing.T
	in  io.WriteCloser
	out *bufio.Scanner
}

// startPython runs interop.py on url (hosts separated by commas) with
// prefix and, when given, a capacity.
func startPython(t *testing.T, url, prefix string, capacity ...int) *python {
	t.Helper()
	bin := testenv.Python(t, "channels_redis.core")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	args := []string{"testdata/interop.py", url, prefix, "60"}
	for _, c := range capacity {
		args = append(args, fmt.Sprint(c))
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		in.Close()
		_ = cmd.Wait()
		cancel()
		if stderr.Len() > 0 {
			t.Logf("interop.py stderr:\n%s", stderr.String())
		}
	})
	return &python{t: t, in: in, out: bufio.NewScanner(out)}
}

// on returns p reporting failures to t (a subtest).
func (p *python) on(t *testing.T) *python { return &python{t: t, in: p.in, out: p.out} }

// do sends one command and returns the answer after "ok".
func (p *python) do(format string, args ...any) string {
	p.t.Helper()
	cmd := fmt.Sprintf(format, args...)
	if _, err := fmt.Fprintln(p.in, cmd); err != nil {
		p.t.Fatalf("python %q: %v", cmd, err)
	}
	if !p.out.Scan() {
		p.t.Fatalf("python %q: no answer (%v)", cmd, p.out.Err())
	}
	line := p.out.Text()
	if line != "ok" && !strings.HasPrefix(line, "ok ") {
		p.t.Fatalf("python %q: %s", cmd, line)
	}
	return strings.TrimPrefix(strings.TrimPrefix(line, "ok"), " ")
}

// Python's channels_redis and this layer share channels and groups on one
// Redis: each receives what the other sends, to ordinary channels,
// process-specific channels and groups, with every value type intact.
func TestInteropWithChannelsRedis(t *testing.T) {
	t.Parallel()
	url := testenv.RedisURL(t)
	prefix := testenv.Prefix("interop")
	l := newLayer(t, redislayer.Config{Hosts: []string{url}, Prefix: prefix})
	py := startPython(t, url, prefix)
	ctx := t.Context()
	want := reference()

	recv := func(names ...string) (string, channels.Content) {
		t.Helper()
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		ch, c, err := l.Receive(rctx, names...)
		if err != nil {
			t.Fatalf("Receive(%q): %v", names, err)
		}
		return ch, c
	}
	check := func(what string, got channels.Content) {
		t.Helper()
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s: Python's message changed on the way (-sent +received):\n%s", what, diff)
		}
	}

	t.Run("PythonToGo", func(t *testing.T) {
		// An ordinary channel.
		py.do("send interop.normal")
		if _, got := recv("interop.normal"); got != nil {
			check("ordinary channel", got)
		}
		// Process-specific channels created by Go, directly and through a
		// group: two of them share a process prefix, so channels_redis
		// sends the group message once, naming both.
		a, _ := l.NewChannel(ctx, "interop.go!")
		b, _ := l.NewChannel(ctx, "interop.go!")
		py.do("send %s", a)
		ch, got := recv(a)
		if ch != a {
			t.Fatalf("Receive(%s) returned channel %s", a, ch)
		}
		check("process-specific channel", got)
		for _, c := range []string{a, b, "interop.member"} {
			if err := l.GroupAdd(ctx, "interop-group", c); err != nil {
				t.Fatal(err)
			}
		}
		py.do("group_send interop-group")
		for _, c := range []string{a, b, "interop.member"} {
			ch, got := recv(c)
			if ch != c {
				t.Fatalf("Receive(%s) returned channel %s", c, ch)
			}
			check("group message on "+c, got)
		}
		// The same through ReceivePrefix, as a gateway reads.
		py.do("send %s", b)
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		ch, got, err := l.ReceivePrefix(pctx, "interop.go!")
		if err != nil || ch != b {
			t.Fatalf("ReceivePrefix = %q, %v; want a message for %s", ch, err, b)
		}
		check("ReceivePrefix", got)
	})

	t.Run("GoToPython", func(t *testing.T) {
		if err := l.Send(ctx, "interop.normal2", want); err != nil {
			t.Fatal(err)
		}
		py.do("receive interop.normal2")
		name := py.do("new_channel interop.py")
		if !strings.Contains(name, "!") {
			t.Fatalf("channels_redis new_channel returned %q", name)
		}
		if err := l.Send(ctx, name, want); err != nil {
			t.Fatal(err)
		}
		py.do("receive %s", name)
		py.do("group_add interop-pygroup %s", name)
		if err := l.GroupSend(ctx, "interop-pygroup", want); err != nil {
			t.Fatal(err)
		}
		py.do("receive %s", name)
		// Group membership made by Go, message sent by Go, received by
		// Python.
		if err := l.GroupAdd(ctx, "interop-pygroup2", name); err != nil {
			t.Fatal(err)
		}
		if err := l.GroupSend(ctx, "interop-pygroup2", want); err != nil {
			t.Fatal(err)
		}
		py.do("receive %s", name)
		// Go keeps counts of messages per process-specific channel;
		// channels_redis's receiver does not take them away. Sending many
		// more than the capacity, one at a time, must keep working.
		for i := range 3 * redislayer.DefaultCapacity {
			if err := l.Send(ctx, name, want); err != nil {
				t.Fatalf("send %d to a Python channel that is being read: %v", i, err)
			}
			py.do("receive %s", name)
		}
	})
	py.do("quit")
}

// With two hosts, channels_redis 4.0 sends to a process-specific channel on
// the host of its full name's hash, not of its prefix's (where it
// receives). This layer places such channels by their prefix, and its
// receive loops read every host, so what channels_redis sends there still
// arrives; group sends (which channels_redis places by prefix) too.
func TestInteropTwoHosts(t *testing.T) {
	t.Parallel()
	a, b := testenv.StartRedis(t), testenv.StartRedis(t)
	prefix := testenv.Prefix("interop2")
	hosts := []string{a.URL, b.URL}
	l := newLayer(t, redislayer.Config{Hosts: hosts, Prefix: prefix})
	py := startPython(t, a.URL+","+b.URL, prefix)
	ctx := t.Context()
	// A channel whose full name and prefix hash to different hosts: the
	// case channels_redis gets wrong.
	var name string
	for range 100 {
		n, err := l.NewChannel(ctx, "interop.two!")
		if err != nil {
			t.Fatal(err)
		}
		if redislayer.ConsistentHash(n, 2) != redislayer.ConsistentHash("interop.two!", 2) {
			name = n
			break
		}
	}
	if name == "" {
		t.Fatal("no channel name hashing away from its prefix in 100 tries")
	}
	py.do("send %s", name)
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ch, got, err := l.Receive(rctx, name)
	if err != nil || ch != name {
		t.Fatalf("Receive(%s) = %q, %v", name, ch, err)
	}
	if diff := cmp.Diff(reference(), got); diff != "" {
		t.Fatalf("message changed (-sent +received):\n%s", diff)
	}
	if err := l.GroupAdd(ctx, "two-room", name); err != nil {
		t.Fatal(err)
	}
	py.do("group_send two-room")
	if ch, _, err := l.Receive(rctx, name); err != nil || ch != name {
		t.Fatalf("Receive(%s) after a Python group send = %q, %v", name, ch, err)
	}
	// And an ordinary channel, which channels_redis sends to the hosts in
	// turn: every message arrives.
	for range 4 {
		py.do("send interop.two.normal")
	}
	for range 4 {
		if _, _, err := l.Receive(rctx, "interop.two.normal"); err != nil {
			t.Fatalf("Receive(interop.two.normal): %v", err)
		}
	}
	py.do("quit")
}

// Two hosts, both ways, as a mixed Go and Python deployment runs them,
// with the default configuration: Go sends ordinary channels' messages to
// the hosts in turn so that channels_redis receivers, which read one host
// per receive, get every one; group sends reach the members of the other
// language, and Go evicts a member Python added whose message expired
// unread; both count a channel's capacity the same way; and the values
// one side can write but the other could not read are handled: text that
// is not UTF-8 is refused at Go's Send, integers above 2^63-1 from Python
// arrive as uint64. Go's channel keys expire with their messages, as
// channels_redis's do, and expired messages are delivered to neither side.
func TestInteropTwoHostsBothWays(t *testing.T) {
	t.Parallel()
	a, b := testenv.StartRedis(t), testenv.StartRedis(t)
	prefix := testenv.Prefix("interop2w")
	const (
		capacity = 4
		expiry   = 2 * time.Second
	)
	l := newLayer(t, redislayer.Config{Hosts: []string{a.URL, b.URL}, Prefix: prefix, Capacity: capacity, Expiry: expiry})
	raws := []rueidis.Client{rawClient(t, a.URL), rawClient(t, b.URL)}
	py := startPython(t, a.URL+","+b.URL, prefix, capacity)
	ctx := t.Context()
	want := reference()
	recv := func(t *testing.T, name string) channels.Content {
		t.Helper()
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_, c, err := l.Receive(rctx, name)
		if err != nil {
			t.Fatalf("Receive(%s): %v", name, err)
		}
		return c
	}

	t.Run("GoToPythonOrdinary", func(t *testing.T) {
		py := py.on(t)
		// channels_redis receives each message from the next host in
		// turn, waiting there until one comes.
		for range 4 {
			if err := l.Send(ctx, "interop.gopy", want); err != nil {
				t.Fatal(err)
			}
		}
		for range 4 {
			py.do("receive interop.gopy")
		}
	})

	t.Run("GoToNewPythonReceivers", func(t *testing.T) {
		py := py.on(t)
		// One message to each of several channels, each received by a
		// new channels_redis layer, whose first receive waits on the
		// first host: the message must be there. The channels' names hash
		// to either host, four of each (placed by hash, half of the
		// messages would be on the host nobody reads).
		var names []string
		perHost := [2]int{}
		for i := 0; len(names) < 8; i++ {
			n := fmt.Sprintf("interop.fresh%d", i)
			if h := redislayer.ConsistentHash(n, 2); perHost[h] < 4 {
				perHost[h]++
				names = append(names, n)
			}
		}
		for _, n := range names {
			if err := l.Send(ctx, n, want); err != nil {
				t.Fatal(err)
			}
			if got := py.do("receive_fresh %s 1", n); got != "" {
				t.Errorf("a new channels_redis receiver of %s (hashed to host %d) got no message within 1 s (%q)", n, redislayer.ConsistentHash(n, 2), got)
			}
		}
	})

	t.Run("GoToPythonInterleaved", func(t *testing.T) {
		py := py.on(t)
		// Sends to two channels interleave; each channel's messages still
		// alternate between the hosts, so the Python receiver, reading
		// the hosts in turn, finds one at every receive.
		for range 4 {
			for _, n := range []string{"interop.il.a", "interop.il.b"} {
				if err := l.Send(ctx, n, want); err != nil {
					t.Fatal(err)
				}
			}
		}
		for _, n := range []string{"interop.il.a", "interop.il.b"} {
			for range 4 {
				py.do("receive %s", n)
			}
		}
	})

	t.Run("GroupsAcrossLanguages", func(t *testing.T) {
		py := py.on(t)
		pyCh := py.do("new_channel interop.py")
		goCh, err := l.NewChannel(ctx, "interop.go!")
		if err != nil {
			t.Fatal(err)
		}
		// Members added by each language, group sent by each.
		py.do("group_add mixed %s", pyCh)
		if err := l.GroupAdd(ctx, "mixed", goCh); err != nil {
			t.Fatal(err)
		}
		if err := l.GroupSend(ctx, "mixed", want); err != nil {
			t.Fatal(err)
		}
		py.do("receive %s", pyCh)
		if diff := cmp.Diff(want, recv(t, goCh)); diff != "" {
			t.Errorf("Go group send to a Go member (-sent +received):\n%s", diff)
		}
		py.do("group_send mixed")
		py.do("receive %s", pyCh)
		if diff := cmp.Diff(want, recv(t, goCh)); diff != "" {
			t.Errorf("Python group send to a Go member (-sent +received):\n%s", diff)
		}
	})

	t.Run("EvictsPythonMember", func(t *testing.T) {
		py := py.on(t)
		// A member Python added whose channel had a message expire
		// unread is evicted by Go's group send, as Go's own members are,
		// when the channel's key is still there (a later message kept it
		// alive); a member Python reads stays.
		gone := py.do("new_channel interop.pygone")
		live := py.do("new_channel interop.pylive")
		py.do("group_add pyevict %s", gone)
		py.do("group_add pyevict %s", live)
		send := func(n int64) {
			t.Helper()
			if err := l.GroupSend(ctx, "pyevict", channels.Content{"n": n}); err != nil {
				t.Fatal(err)
			}
			if got := py.do("receive_none %s 2", live); got != "got" {
				t.Fatalf("Python's member got no group message %d: %q", n, got)
			}
		}
		send(1)
		time.Sleep(expiry * 6 / 10)
		send(2)
		time.Sleep(expiry / 2) // the first message has expired, the second not
		send(3)
		members, err := l.GroupChannels(ctx, "pyevict")
		if err != nil {
			t.Fatal(err)
		}
		if len(members) != 1 || members[0] != live {
			t.Fatalf("members after %s's first message expired unread = %v; want only %s", gone, members, live)
		}
	})

	t.Run("Capacity", func(t *testing.T) {
		py := py.on(t)
		// Go fills the channel on both hosts; Python finds it full on
		// each; Go receives everything that was accepted.
		sent := 0
		for ; sent < 4*capacity; sent++ {
			err := l.Send(ctx, "interop.cap", want)
			if errors.Is(err, channels.ErrChannelFull) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if sent != 2*capacity {
			t.Fatalf("Go sent %d messages before ErrChannelFull; want %d (capacity %d on each of 2 hosts)", sent, 2*capacity, capacity)
		}
		for range 2 {
			if got := py.do("try_send interop.cap"); got != "full" {
				t.Fatalf("Python's send to a channel Go filled: %q; want full", got)
			}
		}
		for range sent {
			if diff := cmp.Diff(want, recv(t, "interop.cap")); diff != "" {
				t.Fatalf("(-sent +received):\n%s", diff)
			}
		}
		if got := py.do("try_send interop.cap"); got != "sent" {
			t.Fatalf("Python's send once Go emptied the channel: %q; want sent", got)
		}
		recv(t, "interop.cap")
	})

	t.Run("EdgeValues", func(t *testing.T) {
		py := py.on(t)
		err := l.Send(ctx, "interop.edge", channels.Content{"text": "caf\xe9"})
		if !errors.Is(err, channels.ErrInvalidContent) {
			t.Fatalf("Send of text that is not UTF-8 = %v; want ErrInvalidContent", err)
		}
		err = l.GroupSend(ctx, "mixed", channels.Content{"list": []any{"ok", "\xff"}})
		if !errors.Is(err, channels.ErrInvalidContent) {
			t.Fatalf("GroupSend of text that is not UTF-8 = %v; want ErrInvalidContent", err)
		}
		py.do("send_big interop.edge")
		got := recv(t, "interop.edge")
		wantBig := channels.Content{"big": uint64(math.MaxUint64), "edge": uint64(1 << 63), "low": int64(math.MinInt64)}
		if diff := cmp.Diff(wantBig, got); diff != "" {
			t.Fatalf("Python's big integers (-sent +received):\n%s", diff)
		}
	})

	t.Run("ExpiredNotDelivered", func(t *testing.T) {
		py := py.on(t)
		py.do("send interop.old")
		// One message on each host: the channel keys expire with them,
		// as channels_redis's do, so a Python receiver (which does not
		// look at their age) cannot get them afterwards.
		for range 2 {
			if err := l.Send(ctx, "interop.goold", want); err != nil {
				t.Fatal(err)
			}
		}
		// Their keys expire with them, after Expiry, as channels_redis
		// sets them.
		for h, c := range raws {
			ttl, err := c.Do(ctx, c.B().Pttl().Key(prefix+"interop.goold").Build()).AsInt64()
			if err != nil || ttl <= 0 || ttl > expiry.Milliseconds() {
				t.Errorf("PTTL of the Go channel key on host %d = %d ms (%v); want at most the expiry, %v", h, ttl, err, expiry)
			}
		}
		time.Sleep(expiry + 100*time.Millisecond)
		rctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		if _, c, err := l.Receive(rctx, "interop.old"); err == nil {
			t.Fatalf("received a message past the expiry: %v", c)
		}
		for range 2 { // each host in turn
			if got := py.do("receive_none interop.goold 0.5"); got != "none" {
				t.Fatalf("Python received a Go message past its expiry")
			}
		}
	})
	py.do("quit")
}
