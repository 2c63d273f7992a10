package redislayer_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/internal/testenv"
	"github.com/gochannels/channels/redislayer"
)

// Many concurrent Sends to one channel share batches; capacity still
// holds exactly: of 200 sends to channels of capacity 30 that nobody
// reads, 30 succeed per channel, the others fail with ErrChannelFull, and
// each channel then holds 30 messages, for ordinary channels and the
// process prefix of a process-specific one alike.
func TestConcurrentSendsRespectCapacity(t *testing.T) {
	t.Parallel()
	url := testenv.RedisURL(t)
	const capacity, senders = 30, 200
	l := newLayer(t, redislayer.Config{Hosts: []string{url}, Capacity: capacity, ProcessCapacity: capacity})
	ctx := t.Context()
	proc, _ := l.NewChannel(ctx, "cap.gw!")
	for _, ch := range []string{"cap.work", proc} {
		var ok, full atomic.Int64
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range senders {
			wg.Go(func() {
				<-start
				err := l.Send(ctx, ch, channels.Content{"i": int64(i)})
				switch {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, channels.ErrChannelFull):
					full.Add(1)
				default:
					t.Errorf("Send: %v", err)
				}
			})
		}
		close(start)
		wg.Wait()
		if ok.Load() != capacity || full.Load() != senders-capacity {
			t.Errorf("%s: %d sends succeeded and %d found the channel full; want %d and %d", ch, ok.Load(), full.Load(), capacity, senders-capacity)
		}
		cs, err := l.ChannelStats(ctx, ch)
		if err != nil {
			t.Fatal(err)
		}
		if cs.Length != capacity {
			t.Errorf("%s holds %d messages; want %d", ch, cs.Length, capacity)
		}
		seen := map[int64]bool{}
		for range capacity {
			c := recvOne(t, l, ch)
			i, _ := c.Int("i")
			if seen[i] {
				t.Fatalf("%s: message %d received twice", ch, i)
			}
			seen[i] = true
		}
		noneOn(t, l, ch)
	}
}

// A process pops ahead of its Receive calls when Redis has a backlog.
// What it popped and does not receive goes back to Redis, for another
// process, within moments; nothing is lost or delivered twice.
func TestPoppedAheadGoesBack(t *testing.T) {
	t.Parallel()
	url := testenv.RedisURL(t)
	prefix := testenv.Prefix("ahead")
	a := newLayer(t, redislayer.Config{Hosts: []string{url}, Prefix: prefix})
	b := newLayer(t, redislayer.Config{Hosts: []string{url}, Prefix: prefix})
	ctx := t.Context()
	const n = 40
	for i := range n {
		if err := a.Send(ctx, "ahead.work", channels.Content{"i": int64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	got := map[int64]int{}
	for _, c := range receiveUntilAhead(t, a, "ahead.work") {
		i, _ := c.Int("i")
		got[i]++
	}
	// Another process receives everything else, the messages a popped
	// ahead included once a gives them back.
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < n && time.Now().Before(deadline) {
		ch, c, err := b.Poll(ctx, "ahead.work")
		if err != nil {
			t.Fatal(err)
		}
		if ch == "" {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		i, _ := c.Int("i")
		got[i]++
	}
	for i := range int64(n) {
		if got[i] != 1 {
			t.Errorf("message %d received %d times", i, got[i])
		}
	}
	// a counts what it put back when Redis confirms it, which can be
	// just after b has already received those messages.
	c := a.Counters()
	for c.PushedBack == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		c = a.Counters()
	}
	if c.PushedBack == 0 || c.Buffered != 0 || c.Lost != 0 {
		t.Errorf("counters of the process that popped ahead: %+v; want messages put back, none held or lost", c)
	}
}

// Close puts back what the layer popped ahead.
func TestClosePutsBackPoppedAhead(t *testing.T) {
	t.Parallel()
	url := testenv.RedisURL(t)
	prefix := testenv.Prefix("closeback")
	ctx := t.Context()
	a, err := redislayer.New(ctx, redislayer.Config{Hosts: []string{url}, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	b := newLayer(t, redislayer.Config{Hosts: []string{url}, Prefix: prefix})
	const n = 20
	for i := range n {
		if err := a.Send(ctx, "back.work?q", channels.Content{"i": int64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	first := receiveUntilAhead(t, a, "back.work?q")
	for i, c := range first {
		if got, _ := c.Int("i"); got != int64(i) {
			t.Fatalf("message %d has i=%d", i, got)
		}
	}
	held := a.Counters().Buffered
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if c := a.Counters(); c.PushedBack != uint64(held) || c.Buffered != 0 {
		t.Fatalf("after Close: %+v; want the %d messages held put back", c, held)
	}
	// In order, for the next reader of the single-reader channel.
	for i := len(first); i < n; i++ {
		c := recvOne(t, b, "back.work?q")
		if got, _ := c.Int("i"); got != int64(i) {
			t.Fatalf("after Close, message %d has i=%d", i, got)
		}
	}
	noneOn(t, b, "back.work?q")
}

// With ReceiveBuffer < 0 the layer pops only for the calls waiting, and
// the buffer never exceeds ReceiveBuffer otherwise.
func TestReceiveBufferBound(t *testing.T) {
	t.Parallel()
	url := testenv.RedisURL(t)
	for _, tc := range []struct {
		buffer int
		max    int64
	}{{-1, 0}, {5, 5}} {
		t.Run(fmt.Sprint(tc.buffer), func(t *testing.T) {
			l := newLayer(t, redislayer.Config{Hosts: []string{url}, ReceiveBuffer: tc.buffer, Capacity: 1000})
			ctx := t.Context()
			for i := range 200 {
				if err := l.Send(ctx, "bound.work", channels.Content{"i": int64(i)}); err != nil {
					t.Fatal(err)
				}
			}
			var most int64
			for i := range 200 {
				c := recvOne(t, l, "bound.work")
				if got, _ := c.Int("i"); got != int64(i) {
					t.Fatalf("message %d has i=%d", i, got)
				}
				most = max(most, l.Counters().Buffered)
			}
			if most > tc.max {
				t.Fatalf("up to %d messages held with ReceiveBuffer %d; want at most %d", most, tc.buffer, tc.max)
			}
		})
	}
}

// A message popped ahead that expires in the buffer is never delivered,
// and is counted as expired. (GoReceiversOnly keeps the channel key past
// the expiry, so that those left in Redis are met, and counted, too.)
func TestPoppedAheadExpires(t *testing.T) {
	t.Parallel()
	url := testenv.RedisURL(t)
	l := newLayer(t, redislayer.Config{Hosts: []string{url}, Expiry: time.Second, GoReceiversOnly: true})
	ctx := t.Context()
	for i := range 10 {
		if err := l.Send(ctx, "exp.q?x", channels.Content{"i": int64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	received := len(receiveUntilAhead(t, l, "exp.q?x"))
	time.Sleep(1200 * time.Millisecond)
	if _, c, err := l.Poll(ctx, "exp.q?x"); err != nil || c != nil {
		t.Fatalf("Poll after expiry = %v, %v; want nothing", c, err)
	}
	st, err := l.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Expired != uint64(10-received) || st.Received != uint64(received) {
		t.Fatalf("Stats: %d expired, %d received; want %d and %d", st.Expired, st.Received, 10-received, received)
	}
}

// Receive calls waiting on overlapping sets of channels share what is
// popped: a message popped for one set reaches a call waiting on another
// set that holds its channel.
func TestOverlappingReceives(t *testing.T) {
	t.Parallel()
	url := testenv.RedisURL(t)
	l := newLayer(t, redislayer.Config{Hosts: []string{url}})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	got := map[string]int{}
	sets := [][]string{{"ov.a", "ov.b"}, {"ov.b", "ov.c"}, {"ov.c"}, {"ov.a"}}
	const per = 25
	for _, set := range sets {
		wg.Go(func() {
			for {
				_, c, err := l.Receive(ctx, set...)
				if err != nil {
					return
				}
				mu.Lock()
				got[c.String("id")]++
				n := len(got)
				mu.Unlock()
				if n == 3*per {
					cancel()
				}
			}
		})
	}
	for i := range per {
		for _, ch := range []string{"ov.a", "ov.b", "ov.c"} {
			if err := l.Send(t.Context(), ch, channels.Content{"id": fmt.Sprintf("%s-%d", ch, i)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	wg.Wait()
	if len(got) != 3*per {
		t.Fatalf("received %d distinct messages of %d", len(got), 3*per)
	}
	for id, n := range got {
		if n != 1 {
			t.Errorf("%s received %d times", id, n)
		}
	}
}

// receiveUntilAhead receives from ch until the layer holds messages popped
// ahead (a few receives in a row with a backlog make it pop more than
// asked), and returns what it received.
func receiveUntilAhead(t *testing.T, l *redislayer.Layer, ch string) []channels.Content {
	t.Helper()
	var out []channels.Content
	for range 8 {
		out = append(out, recvOne(t, l, ch))
		if l.Counters().Buffered > 0 {
			return out
		}
	}
	t.Fatalf("nothing popped ahead after %d receives with a backlog: %+v", len(out), l.Counters())
	return nil
}
