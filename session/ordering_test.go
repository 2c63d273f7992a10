package session_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alexedwards/scs/v2"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/channelstest"
	"github.com/gochannels/channels/inmemory"
	"github.com/gochannels/channels/session"
	"github.com/gochannels/channels/worker"
)

// orderedEcho is a strictly ordered consumer that records the orders it
// ran and echoes them.
type orderedEcho struct {
	mu  sync.Mutex
	ran []int64
}

func (e *orderedEcho) Consume(ctx context.Context, m *channels.Message) error {
	n, _ := m.Content.Int("order")
	e.mu.Lock()
	e.ran = append(e.ran, n)
	e.mu.Unlock()
	return m.Reply(ctx, channels.Content{"text": fmt.Sprint(n)})
}

func (e *orderedEcho) orders() []int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.ran)
}

func strict(t *testing.T, mgr *session.Manager, c channels.Consumer) channels.Consumer {
	t.Helper()
	mw, err := mgr.EnforceOrdering(session.StrictOrdering)
	if err != nil {
		t.Fatal(err)
	}
	return mw(c)
}

func TestB28SlightOrderingIsAnError(t *testing.T) {
	mgr := &session.Manager{Store: session.NewMemoryStore()}
	if _, err := mgr.EnforceOrdering(session.SlightOrdering); !errors.Is(err, session.ErrSlightOrdering) {
		t.Fatalf("EnforceOrdering(SlightOrdering) = %v, want ErrSlightOrdering", err)
	}
	if _, err := mgr.EnforceOrdering(session.NoOrdering); err == nil {
		t.Fatal("EnforceOrdering(NoOrdering) must be an error")
	}
}

func TestEnforceOrdering(t *testing.T) {
	setup := func(t *testing.T) (*channelstest.Client, *orderedEcho, *countingStore) {
		st := &countingStore{Store: session.NewMemoryStore()}
		mgr := &session.Manager{Store: st}
		e := &orderedEcho{}
		return channelstest.NewClient(t, strict(t, mgr, e)), e, st
	}
	waitEmpty := func(t *testing.T, c *channelstest.Client, orders ...int64) {
		t.Helper()
		for _, o := range orders {
			if m := c.GetNextMessage(session.WaitChannel(c.ReplyChannel, o)); m != nil {
				t.Fatalf("wait channel of order %d holds %v", o, m.Content)
			}
		}
	}

	t.Run("0, 1, 2 in sequence all run, once saved each (B.28)", func(t *testing.T) {
		c, e, st := setup(t)
		for i := range 3 {
			mustConsume(t, c, "websocket.receive", channels.Content{"order": i})
			if got := c.Receive().String("text"); got != fmt.Sprint(i) {
				t.Fatalf("reply %q, want %d", got, i)
			}
		}
		if !slices.Equal(e.orders(), []int64{0, 1, 2}) {
			t.Fatalf("ran %v", e.orders())
		}
		waitEmpty(t, c, 0, 1, 2, 3)
		if n := st.commits.Load(); n != 3 {
			t.Fatalf("%d session saves for 3 in-order messages, want 3", n)
		}
	})

	t.Run("0 then 2: 2 is parked on __wait__.<reply channel with ?>.2", func(t *testing.T) {
		c, e, _ := setup(t)
		mustConsume(t, c, "websocket.receive", channels.Content{"order": 0, "text": "zero"})
		mustConsume(t, c, "websocket.receive", channels.Content{"order": 2, "text": "two"})
		if !slices.Equal(e.orders(), []int64{0}) {
			t.Fatalf("ran %v, want only 0", e.orders())
		}
		wait := session.WaitChannel(c.ReplyChannel, 2)
		if want := "__wait__.test.reply?" + c.ReplyChannel[len("test.reply!"):] + ".2"; wait != want {
			t.Fatalf("wait channel %q, want %q (W7)", wait, want)
		}
		m := c.GetNextMessage(wait)
		if m == nil {
			t.Fatal("nothing parked")
		}
		if n, _ := m.Content.Int("order"); n != 2 || m.Content.String("original_channel") != "websocket.receive" || m.Content.String("text") != "two" {
			t.Fatalf("parked %v", m.Content)
		}
	})

	t.Run("1 then 0: parks 1, then runs 0 and 1", func(t *testing.T) {
		// Django Channels sent 1 back to its channel after running 0, and a
		// third consume ran it; here the consume of 0 runs 1 as well.
		c, e, _ := setup(t)
		mustConsume(t, c, "websocket.connect", channels.Content{"order": 1})
		if len(e.orders()) != 0 {
			t.Fatalf("order 1 ran before 0: %v", e.orders())
		}
		mustConsume(t, c, "websocket.connect", channels.Content{"order": 0})
		if !slices.Equal(e.orders(), []int64{0, 1}) {
			t.Fatalf("ran %v", e.orders())
		}
		waitEmpty(t, c, 1)
		if a, b := c.Receive().String("text"), c.Receive().String("text"); a != "0" || b != "1" {
			t.Fatalf("replies %q %q", a, b)
		}
		if ok, _ := c.TryConsume("websocket.connect"); ok {
			t.Fatal("a message was left to consume")
		}
	})

	t.Run("manual orders 0, 2, 1 run in order in three consumes", func(t *testing.T) {
		c, e, _ := setup(t)
		for _, o := range []int{0, 2, 1} {
			c.Send("websocket.receive", channels.Content{"order": o})
		}
		consumes := 0
		for {
			ok, err := c.TryConsume("websocket.receive")
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				break
			}
			consumes++
		}
		if consumes != 3 || !slices.Equal(e.orders(), []int64{0, 1, 2}) {
			t.Fatalf("%d consumes ran %v; want 3 consumes running 0 1 2", consumes, e.orders())
		}
		for i := range 3 {
			if got := c.Receive().String("text"); got != fmt.Sprint(i) {
				t.Fatalf("reply %d is %q", i, got)
			}
		}
	})

	t.Run("a duplicate order is dropped, not parked", func(t *testing.T) {
		c, e, _ := setup(t)
		mustConsume(t, c, "websocket.receive", channels.Content{"order": 0})
		mustConsume(t, c, "websocket.receive", channels.Content{"order": 0})
		if !slices.Equal(e.orders(), []int64{0}) {
			t.Fatalf("ran %v", e.orders())
		}
		waitEmpty(t, c, 0)
	})

	t.Run("no order is an error", func(t *testing.T) {
		c, e, _ := setup(t)
		if err := c.SendAndConsume("websocket.receive", channels.Content{"text": "x"}); !errors.Is(err, session.ErrNoOrder) {
			t.Fatalf("err = %v, want ErrNoOrder", err)
		}
		if len(e.orders()) != 0 {
			t.Fatal("consumer ran")
		}
	})

	t.Run("a failing consumer does not advance", func(t *testing.T) {
		mgr := &session.Manager{Store: session.NewMemoryStore()}
		fail := true
		var ran []int64
		c := channelstest.NewClient(t, strict(t, mgr, channels.ConsumerFunc(func(ctx context.Context, m *channels.Message) error {
			n, _ := m.Content.Int("order")
			ran = append(ran, n)
			if fail {
				return errors.New("boom")
			}
			return nil
		})))
		mustConsume(t, c, "websocket.receive", channels.Content{"order": 0}) // fails; the runner logs it
		fail = false
		mustConsume(t, c, "websocket.receive", channels.Content{"order": 1}) // parks: 0 is still due
		if !slices.Equal(ran, []int64{0}) {
			t.Fatalf("ran %v", ran)
		}
		mustConsume(t, c, "websocket.receive", channels.Content{"order": 0})
		if !slices.Equal(ran, []int64{0, 0, 1}) {
			t.Fatalf("ran %v, want 0 (failed), 0, then 1", ran)
		}
	})

	t.Run("a close advances, so the disconnect still runs", func(t *testing.T) {
		mgr := &session.Manager{Store: session.NewMemoryStore()}
		var ran []string
		c := channelstest.NewClient(t, strict(t, mgr, channels.ConsumerFunc(func(ctx context.Context, m *channels.Message) error {
			ran = append(ran, m.Channel)
			if m.Channel == "websocket.receive" {
				return &channels.CloseError{Code: 4000}
			}
			return nil
		})))
		mustConsume(t, c, "websocket.connect", channels.Content{"order": 0})
		mustConsume(t, c, "websocket.receive", channels.Content{"order": 1})
		if got := c.Receive(); got["close"] != int64(4000) {
			t.Fatalf("reply %v, want close 4000", got)
		}
		mustConsume(t, c, "websocket.disconnect", channels.Content{"order": 2})
		if !slices.Equal(ran, []string{"websocket.connect", "websocket.receive", "websocket.disconnect"}) {
			t.Fatalf("ran %v", ran)
		}
	})

	t.Run("W6: a message parked while its predecessor finishes is drained by the parker", func(t *testing.T) {
		st := session.NewMemoryStore()
		mgr := &session.Manager{Store: st}
		l := &hookLayer{Layer: inmemory.MustNew(inmemory.Config{})}
		t.Cleanup(func() { l.Close() })
		e := &orderedEcho{}
		c := channelstest.NewClientOn(t, l, strict(t, mgr, e))
		mustConsume(t, c, "websocket.receive", channels.Content{"order": 0})
		wait := session.WaitChannel(c.ReplyChannel, 2)
		// Message 2 arrives while 1 runs on another worker; 1 finishes
		// (saving next = 2 and finding the wait channel empty) exactly
		// while 2 is being parked.
		l.onSend = func(channel string, _ channels.Content) {
			if channel == wait {
				b := mustEncode(t, map[string]any{session.NextOrderKey: int64(2)})
				if err := st.CommitCtx(context.Background(), session.ChannelKey(c.ReplyChannel), b, time.Now().Add(time.Hour)); err != nil {
					t.Error(err)
				}
			}
		}
		mustConsume(t, c, "websocket.receive", channels.Content{"order": 2})
		l.onSend = nil
		if !slices.Equal(e.orders(), []int64{0, 2}) {
			t.Fatalf("ran %v, want 0 then 2 (run by its parker)", e.orders())
		}
		waitEmpty(t, c, 2)
	})

	t.Run("a message's replies are out before the next order advances", func(t *testing.T) {
		st := session.NewMemoryStore()
		mgr := &session.Manager{Store: st}
		l := &hookLayer{Layer: inmemory.MustNew(inmemory.Config{})}
		t.Cleanup(func() { l.Close() })
		e := &orderedEcho{}
		c := channelstest.NewClientOn(t, l, strict(t, mgr, e))
		var atReply []string
		l.onSend = func(channel string, content channels.Content) {
			if channel == c.ReplyChannel {
				next := stored(t, st, session.ChannelKey(c.ReplyChannel))[session.NextOrderKey]
				atReply = append(atReply, fmt.Sprintf("reply %s at next %v", content.String("text"), next))
			}
		}
		mustConsume(t, c, "websocket.receive", channels.Content{"order": 0})
		mustConsume(t, c, "websocket.receive", channels.Content{"order": 2})
		mustConsume(t, c, "websocket.receive", channels.Content{"order": 1})
		want := []string{"reply 0 at next <nil>", "reply 1 at next 1", "reply 2 at next 2"}
		if !slices.Equal(atReply, want) {
			t.Fatalf("%q, want %q", atReply, want)
		}
	})

	t.Run("a message too far ahead waits, then is consumed later", func(t *testing.T) {
		mgr := &session.Manager{Store: session.NewMemoryStore(), MaxAhead: 1, ParkTimeout: 30 * time.Millisecond}
		e := &orderedEcho{}
		c := channelstest.NewClient(t, strict(t, mgr, e))
		mustConsume(t, c, "websocket.receive", channels.Content{"order": 0})
		err := c.SendAndConsume("websocket.receive", channels.Content{"order": 3})
		if !errors.Is(err, channels.ErrConsumeLater) {
			t.Fatalf("err = %v, want ErrConsumeLater", err)
		}
		m := c.WaitMessage("websocket.receive")
		if n, _ := m.Content.Int("order"); n != 3 || m.Content.Has("original_channel") {
			t.Fatalf("requeued %v, want order 3 back on its channel as it was", m.Content)
		}
		waitEmpty(t, c, 3)
	})

	t.Run("a message too far ahead runs when its turn comes while it waits", func(t *testing.T) {
		st := &advancingStore{Store: session.NewMemoryStore()}
		mgr := &session.Manager{Store: st, MaxAhead: 1}
		e := &orderedEcho{}
		c := channelstest.NewClient(t, strict(t, mgr, e))
		mustConsume(t, c, "websocket.receive", channels.Content{"order": 0})
		// While 3 waits, other workers run 1 and 2.
		st.key = session.ChannelKey(c.ReplyChannel)
		st.next.Store(3)
		mustConsume(t, c, "websocket.receive", channels.Content{"order": 3})
		if !slices.Equal(e.orders(), []int64{0, 3}) {
			t.Fatalf("ran %v", e.orders())
		}
	})
}

// advancingStore, once armed, makes the next read of key show next order
// n, as if other workers had run the messages before it.
type advancingStore struct {
	session.Store
	key  string
	next atomic.Int64
}

func (a *advancingStore) FindCtx(ctx context.Context, key string) ([]byte, bool, error) {
	if n := a.next.Load(); n > 0 && key == a.key && a.next.CompareAndSwap(n, 0) {
		b, _ := scs.GobCodec{}.Encode(time.Now().Add(time.Hour), map[string]any{session.NextOrderKey: n})
		if err := a.Store.CommitCtx(ctx, key, b, time.Now().Add(time.Hour)); err != nil {
			return nil, false, err
		}
	}
	return a.Store.FindCtx(ctx, key)
}

// TestOrderingFourWorkers sends 1,000 messages of one connection as fast as
// the layer takes them to four independent workers (each with its own
// per-connection lanes, so only EnforceOrdering orders them across
// workers) and checks that they were consumed in order, none lost.
func TestOrderingFourWorkers(t *testing.T) {
	const n = 1000
	l := inmemory.MustNew(inmemory.Config{})
	t.Cleanup(func() { l.Close() })
	runOrderingWorkers(t, l, session.NewMemoryStore(), n)
}

func runOrderingWorkers(t *testing.T, l channels.Layer, st session.Store, n int) {
	mgr := &session.Manager{Store: st}
	e := &orderedEcho{}
	r := channels.NewRouter()
	ordered := strict(t, mgr, e)
	for _, ch := range []string{"websocket.connect", "websocket.receive", "websocket.disconnect"} {
		r.Route(ch, ordered)
	}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	workers := make([]*worker.Worker, 4)
	for i := range workers {
		workers[i] = &worker.Worker{Layer: l, Consumer: r, Concurrency: 4, Logger: quietLogger(t)}
		wg.Go(func() { _ = workers[i].Run(ctx) })
	}
	defer func() {
		cancel()
		wg.Wait()
	}()

	reply, err := l.NewChannel(ctx, "websocket.send.test!")
	if err != nil {
		t.Fatal(err)
	}
	// As a gateway does: the connect, then, once it is answered, the
	// frames as fast as the layer takes them, then the disconnect.
	send := func(ch string, i int) {
		c := channels.Content{"reply_channel": reply, "path": "/", "order": i, "text": fmt.Sprint(i)}
		for {
			err := l.Send(ctx, ch, c)
			if err == nil {
				return
			}
			if !errors.Is(err, channels.ErrChannelFull) {
				t.Fatal(err)
			}
			time.Sleep(time.Millisecond)
		}
	}
	send("websocket.connect", 0)
	rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
	_, first, err := l.Receive(rctx, reply)
	rcancel()
	if err != nil || first.String("text") != "0" {
		t.Fatalf("connect answered %v, %v", first, err)
	}
	// The replies are read as a gateway reads them, and must come in order
	// too: each message's sends are flushed before the next can run.
	replies := make(chan []string, 1)
	go func() {
		var got []string
		for len(got) < n-1 {
			_, c, err := l.Receive(ctx, reply)
			if err != nil {
				break
			}
			got = append(got, c.String("text"))
		}
		replies <- got
	}()
	for i := 1; i < n-1; i++ {
		send("websocket.receive", i)
	}
	send("websocket.disconnect", n-1)
	deadline := time.Now().Add(60 * time.Second)
	for len(e.orders()) < n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	got := e.orders()
	want := make([]int64, n)
	for i := range want {
		want[i] = int64(i)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("consumed %d messages; first out of place at %d: %v", len(got), firstDiff(got, want), got[max(0, firstDiff(got, want)-3):min(len(got), firstDiff(got, want)+3)])
	}
	gotReplies := <-replies
	for i, r := range gotReplies {
		if r != fmt.Sprint(i+1) {
			t.Fatalf("reply %d is %q, want %d: replies must come in order", i, r, i+1)
		}
	}
	var dropped uint64
	for _, w := range workers {
		dropped += w.Stats().Dropped
	}
	if dropped != 0 {
		t.Fatalf("workers dropped %d sends", dropped)
	}
}

func firstDiff(a, b []int64) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// A frame parked while its connection's connect had not run yet is run by
// the connect's catch-up directly, even though it came on another channel
// (websocket.receive): putting it back on that channel instead would lose
// it whenever the channel is full, as it is when the connection's later
// frames crowd it, and every later frame would wait for it forever.
func TestOrderingCatchUpRunsAFrameOfAnotherChannel(t *testing.T) {
	l := inmemory.MustNew(inmemory.Config{ChannelCapacity: []channels.CapacityRule{{Pattern: "websocket.receive", Capacity: 1}}})
	t.Cleanup(func() { l.Close() })
	mgr := &session.Manager{Store: session.NewMemoryStore()}
	e := &orderedEcho{}
	r := channels.NewRouter()
	ordered := strict(t, mgr, e)
	r.Route("websocket.connect", ordered)
	r.Route("websocket.receive", ordered, channels.Path(`^/room/(?P<room>[a-z]+)/$`))
	c := channelstest.NewClientOn(t, l, r)

	// Frame 1 arrives first and is parked.
	mustConsume(t, c, "websocket.receive", channels.Content{"order": 1, "path": "/room/lobby/"})
	if len(e.orders()) != 0 {
		t.Fatalf("ran %v before the connect", e.orders())
	}
	// A later frame fills websocket.receive.
	if err := l.Send(t.Context(), "websocket.receive", channels.Content{"reply_channel": c.ReplyChannel, "order": int64(2), "path": "/room/lobby/"}); err != nil {
		t.Fatal(err)
	}
	// The connect runs, then frame 1 with it, with its own path values.
	mustConsume(t, c, "websocket.connect", channels.Content{"order": 0, "path": "/room/lobby/"})
	if got := e.orders(); !slices.Equal(got, []int64{0, 1}) {
		t.Fatalf("ran %v, want [0 1]: the connect's catch-up must run the parked frame", got)
	}
}
