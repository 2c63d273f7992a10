package delay_test

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/delay"
	"github.com/gochannels/channels/inmemory"
	"github.com/google/go-cmp/cmp"
)

// Checklist A5.22: rundelay consumes asgi.delay and re-sends content to
// channel after delay ms. Also spec §5: after the message is received there
// is exactly one record and nothing has been sent; when due, the record is
// deleted and the content arrives.
func TestA5_22_DelayedMessageArrivesAfterDelay(t *testing.T) {
	forEachBackend(t, func(t *testing.T, cfg func(*testing.T) delay.StoreConfig) {
		l := newLayer(t, inmemory.Config{})
		store := openStore(t, cfg(t))
		srv := startServer(t, &delay.Server{Layer: l, Store: store})

		start := time.Now()
		sendRaw(t, l, channels.Content{"channel": "test", "delay": int64(1000), "content": map[string]any{"test": "value"}})
		eventually(t, "the message to be stored", func() bool { return srv.Stats().Stored == 1 })
		if n := pending(t, store); n != 1 {
			t.Fatalf("records after intake = %d, want 1", n)
		}
		nothingOn(t, l, "test")

		got := receive(t, l, "test", 5*time.Second)
		elapsed := time.Since(start)
		if elapsed < time.Second {
			t.Errorf("message arrived %s after it was sent, before its 1000 ms delay", elapsed)
		}
		if got.String("test") != "value" {
			t.Errorf("delivered content = %v, want test=value", got)
		}
		// The record is removed when the send's transaction commits.
		eventually(t, "the record to be removed", func() bool { return pending(t, store) == 0 })
		if s := srv.Stats(); s.Sent != 1 || s.Lateness.Count != 1 {
			t.Errorf("stats = %+v, want Sent 1 and one lateness sample", s)
		}
	})
}

// Checklist A5.23: delayed messages persist in the database and survive a
// restart of the delay server: schedule, stop the server, restart it after
// the due time, and the message is delivered once.
func TestA5_23_MessageSurvivesRestart(t *testing.T) {
	forEachBackend(t, func(t *testing.T, cfg func(*testing.T) delay.StoreConfig) {
		l := newLayer(t, inmemory.Config{})
		sc := cfg(t)
		store1 := openStore(t, sc)
		srv1 := startServer(t, &delay.Server{Layer: l, Store: store1})

		if err := delay.Send(t.Context(), l, "reminders", channels.Content{"n": 1}, 300*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the message to be stored", func() bool { return srv1.Stats().Stored == 1 })
		if err := srv1.stop(); err != nil {
			t.Fatalf("Run: %v", err)
		}
		store1.Close()
		time.Sleep(500 * time.Millisecond) // past the due time, no server running
		nothingOn(t, l, "reminders")

		store2 := openStore(t, sc)
		srv2 := startServer(t, &delay.Server{Layer: l, Store: store2})
		got := receive(t, l, "reminders", 5*time.Second)
		if n, _ := got.Int("n"); n != 1 {
			t.Errorf("delivered %v, want n=1", got)
		}
		eventually(t, "the record to be removed", func() bool { return pending(t, store2) == 0 })
		nothingOn(t, l, "reminders")
		if s := srv2.Stats(); s.Sent != 1 {
			t.Errorf("restarted server sent %d messages, want 1", s.Sent)
		}
	})
}

// Bad "asgi.delay" messages are logged, counted by reason and skipped; the
// server keeps serving (spec flaw X1), and nothing is stored for them.
func TestInvalidMessagesAreSkipped(t *testing.T) {
	good := map[string]any{"x": int64(1)}
	cases := []struct {
		name   string
		msg    channels.Content
		reason delay.Reason
	}{
		{"spec example without keys", channels.Content{"test": "value"}, delay.ReasonMissingChannel},
		{"empty", channels.Content{}, delay.ReasonMissingChannel},
		{"missing channel", channels.Content{"content": good, "delay": int64(10)}, delay.ReasonMissingChannel},
		{"missing content", channels.Content{"channel": "out", "delay": int64(10)}, delay.ReasonMissingContent},
		{"missing delay", channels.Content{"channel": "out", "content": good}, delay.ReasonMissingDelay},
		{"channel not text", channels.Content{"channel": []byte("out"), "content": good, "delay": int64(10)}, delay.ReasonBadChannel},
		{"channel number", channels.Content{"channel": int64(5), "content": good, "delay": int64(10)}, delay.ReasonBadChannel},
		{"channel with space", channels.Content{"channel": "no spaces", "content": good, "delay": int64(10)}, delay.ReasonBadChannel},
		{"channel too long", channels.Content{"channel": string(make([]byte, 120)), "content": good, "delay": int64(10)}, delay.ReasonBadChannel},
		{"empty channel", channels.Content{"channel": "", "content": good, "delay": int64(10)}, delay.ReasonBadChannel},
		{"content text", channels.Content{"channel": "out", "content": "hello", "delay": int64(10)}, delay.ReasonBadContent},
		{"content list", channels.Content{"channel": "out", "content": []any{int64(1)}, "delay": int64(10)}, delay.ReasonBadContent},
		{"content null", channels.Content{"channel": "out", "content": nil, "delay": int64(10)}, delay.ReasonBadContent},
		{"negative delay", channels.Content{"channel": "out", "content": good, "delay": int64(-1)}, delay.ReasonNegativeDelay},
		{"fractional delay", channels.Content{"channel": "out", "content": good, "delay": 1.5}, delay.ReasonBadDelay},
		{"text delay", channels.Content{"channel": "out", "content": good, "delay": "1000"}, delay.ReasonBadDelay},
		{"bool delay", channels.Content{"channel": "out", "content": good, "delay": true}, delay.ReasonBadDelay},
		{"null delay", channels.Content{"channel": "out", "content": good, "delay": nil}, delay.ReasonBadDelay},
		{"huge delay", channels.Content{"channel": "out", "content": good, "delay": int64(math.MaxInt64)}, delay.ReasonDelayTooLarge},
		{"delay over 30 days", channels.Content{"channel": "out", "content": good, "delay": (delay.DefaultMaxDelay + time.Millisecond).Milliseconds()}, delay.ReasonDelayTooLarge},
		{"huge float delay", channels.Content{"channel": "out", "content": good, "delay": 1e300}, delay.ReasonDelayTooLarge},
		{"huge negative float delay", channels.Content{"channel": "out", "content": good, "delay": -1e300}, delay.ReasonNegativeDelay},
		{"NaN delay", channels.Content{"channel": "out", "content": good, "delay": math.NaN()}, delay.ReasonBadDelay},
		{"id not text", channels.Content{"channel": "out", "content": good, "delay": int64(10), "id": int64(7)}, delay.ReasonBadID},
		{"id with space", channels.Content{"channel": "out", "content": good, "delay": int64(10), "id": "a b"}, delay.ReasonBadID},
		{"reply channel invalid", channels.Content{"channel": "out", "content": good, "delay": int64(10), "reply_channel": "a b"}, delay.ReasonBadReplyChannel},
	}
	forEachBackend(t, func(t *testing.T, cfg func(*testing.T) delay.StoreConfig) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				l := newLayer(t, inmemory.Config{})
				store := openStore(t, cfg(t))
				srv := startServer(t, &delay.Server{Layer: l, Store: store})

				sendRaw(t, l, tc.msg)
				eventually(t, "the message to be rejected", func() bool { return srv.Stats().RejectedTotal() == 1 })
				st := srv.Stats()
				if diff := cmp.Diff(map[delay.Reason]uint64{tc.reason: 1}, st.Rejected); diff != "" {
					t.Errorf("Rejected (-want +got):\n%s", diff)
				}
				if st.Stored != 0 {
					t.Errorf("Stored = %d, want 0", st.Stored)
				}
				if n := pending(t, store); n != 0 {
					t.Errorf("records = %d, want 0", n)
				}

				// The server still serves a good message.
				sendRaw(t, l, channels.Content{"channel": "out", "content": good, "delay": int64(0)})
				got := receive(t, l, "out", 5*time.Second)
				if n, _ := got.Int("x"); n != 1 {
					t.Errorf("good message after the bad one: got %v", got)
				}
			})
		}
	})
}

// Delays given as whole floats (as JSON decoders produce) and zero are
// accepted.
func TestAcceptedDelayForms(t *testing.T) {
	l := newLayer(t, inmemory.Config{})
	store := openStore(t, sqliteConfig(t))
	srv := startServer(t, &delay.Server{Layer: l, Store: store})
	for i, d := range []any{int64(0), float64(20), int64(1)} {
		sendRaw(t, l, channels.Content{"channel": "out", "content": map[string]any{"i": int64(i)}, "delay": d})
	}
	for range 3 {
		receive(t, l, "out", 5*time.Second)
	}
	// The counter moves just after the send returns, so a receiver may be
	// a moment ahead of it.
	eventually(t, "three sends to be counted", func() bool { return srv.Stats().Sent == 3 })
	if st := srv.Stats(); st.RejectedTotal() != 0 || st.Sent != 3 {
		t.Errorf("stats = %+v, want 3 sent and none rejected", st)
	}
}

// Content goes through the store type-preservingly (spec flaw X4): bytes
// stay bytes, text stays text, numbers keep their kind; and the delivered
// content carries the message ID under IDKey.
func TestContentTypesPreservedAndIDAdded(t *testing.T) {
	forEachBackend(t, func(t *testing.T, cfg func(*testing.T) delay.StoreConfig) {
		l := newLayer(t, inmemory.Config{})
		store := openStore(t, cfg(t))
		startServer(t, &delay.Server{Layer: l, Store: store})

		content := channels.Content{
			"bytes":  []byte{0, 1, 0xff},
			"text":   "héllo",
			"int":    int64(-7),
			"float":  2.5,
			"bool":   true,
			"null":   nil,
			"list":   []any{[]byte("b"), "t", int64(1)},
			"nested": map[string]any{"k": []byte("v")},
			"empty":  []byte{},
		}
		if err := delay.Send(t.Context(), l, "out", content, 0); err != nil {
			t.Fatal(err)
		}
		got := receive(t, l, "out", 5*time.Second)
		id := got.String(delay.IDKey)
		if len(id) != 32 {
			t.Errorf("%s = %q, want a 32-character ID", delay.IDKey, id)
		}
		delete(got, delay.IDKey)
		if diff := cmp.Diff(content, got); diff != "" {
			t.Errorf("delivered content (-sent +got):\n%s", diff)
		}
	})
}

// A due message whose channel is full is rescheduled and sent later, never
// dropped, and the server keeps running (spec flaw X3). Messages to one
// channel keep their order.
func TestFullChannelIsRescheduled(t *testing.T) {
	forEachBackend(t, func(t *testing.T, cfg func(*testing.T) delay.StoreConfig) {
		l := newLayer(t, inmemory.Config{ChannelCapacity: []channels.CapacityRule{{Pattern: "narrow", Capacity: 1}}})
		store := openStore(t, cfg(t))
		srv := startServer(t, &delay.Server{Layer: l, Store: store, RetryFull: 50 * time.Millisecond})

		for i := range 3 {
			if err := delay.Send(t.Context(), l, "narrow", channels.Content{"i": i}, 0); err != nil {
				t.Fatal(err)
			}
		}
		eventually(t, "a send to be refused as full", func() bool { return srv.Stats().Rescheduled > 0 })
		for i := range 3 {
			got := receive(t, l, "narrow", 5*time.Second)
			if n, _ := got.Int("i"); n != int64(i) {
				t.Errorf("message %d: got i=%d, want %d", i, n, i)
			}
		}
		eventually(t, "the records to be removed", func() bool { return pending(t, store) == 0 })
		// Still serving.
		if err := delay.Send(t.Context(), l, "other", channels.Content{}, 0); err != nil {
			t.Fatal(err)
		}
		receive(t, l, "other", 5*time.Second)
		eventually(t, "four sends to be counted", func() bool { return srv.Stats().Sent == 4 })
		if st := srv.Stats(); st.Sent != 4 || st.Dropped != 0 {
			t.Errorf("stats = %+v, want 4 sent, none dropped", st)
		}
	})
}

// A message that falls due while an earlier one to the same channel waits
// for a retry (the channel was full) goes after it, even when the channel
// has room by then: one channel's messages leave in due order across
// rounds, not only within one.
func TestLaterMessageWaitsBehindRescheduled(t *testing.T) {
	forEachBackend(t, func(t *testing.T, cfg func(*testing.T) delay.StoreConfig) {
		l := newLayer(t, inmemory.Config{ChannelCapacity: []channels.CapacityRule{{Pattern: "narrow", Capacity: 1}}})
		store := openStore(t, cfg(t))
		srv := startServer(t, &delay.Server{Layer: l, Store: store, RetryFull: 300 * time.Millisecond})

		send := func(name string) {
			t.Helper()
			if err := delay.Send(t.Context(), l, "narrow", channels.Content{"name": name}, 0); err != nil {
				t.Fatal(err)
			}
		}
		send("a") // fills the channel
		eventually(t, "a to be sent", func() bool { return srv.Stats().Sent == 1 })
		send("b") // refused as full, rescheduled
		eventually(t, "b to be rescheduled", func() bool { return srv.Stats().Rescheduled == 1 })
		if got := receive(t, l, "narrow", 5*time.Second).String("name"); got != "a" {
			t.Fatalf("first message %q, want a", got)
		}
		send("c") // the channel has room now, but b is due first
		for _, want := range []string{"b", "c"} {
			if got := receive(t, l, "narrow", 5*time.Second).String("name"); got != want {
				t.Fatalf("got %q, want %q", got, want)
			}
		}
		eventually(t, "the records to be removed", func() bool { return pending(t, store) == 0 })
	})
}

// The timer is moved earlier when a message due sooner arrives: with the
// safety poll at one hour, a short delay stored after a long one is still
// delivered on time.
func TestEarlierMessageWakesTheServer(t *testing.T) {
	forEachBackend(t, func(t *testing.T, cfg func(*testing.T) delay.StoreConfig) {
		l := newLayer(t, inmemory.Config{})
		store := openStore(t, cfg(t))
		srv := startServer(t, &delay.Server{Layer: l, Store: store, PollInterval: time.Hour})

		if err := delay.Send(t.Context(), l, "late", channels.Content{}, time.Hour); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the late message to be stored", func() bool { return srv.Stats().Stored == 1 })
		time.Sleep(20 * time.Millisecond) // let the server go to sleep until the hour is up
		if err := delay.Send(t.Context(), l, "soon", channels.Content{}, 100*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		receive(t, l, "soon", 10*time.Second)
		eventually(t, "only the late record to be left", func() bool { return pending(t, store) == 1 })
	})
}

// Run checks its configuration, refuses to run twice at once, returns nil
// after its context is done and an error when the layer is closed.
func TestRunLifecycle(t *testing.T) {
	store := openStore(t, sqliteConfig(t))
	l := newLayer(t, inmemory.Config{})

	if err := (&delay.Server{Store: store}).Run(t.Context()); err == nil {
		t.Error("Run without a layer: no error")
	}
	if err := (&delay.Server{Layer: l}).Run(t.Context()); err == nil {
		t.Error("Run without a store: no error")
	}

	srv := startServer(t, &delay.Server{Layer: l, Store: store})
	sendRaw(t, l, channels.Content{"channel": "out", "content": map[string]any{}, "delay": int64(0)})
	receive(t, l, "out", 5*time.Second) // Run is running
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	if err := srv.Run(ctx); err == nil || err.Error() != "delay: Server.Run is already running" {
		t.Errorf("second Run while running = %v, want the already-running error", err)
	}
	if err := srv.stop(); err != nil {
		t.Errorf("Run after cancel = %v, want nil", err)
	}

	l2 := inmemory.MustNew(inmemory.Config{})
	done := make(chan error, 1)
	go func() {
		done <- (&delay.Server{Layer: l2, Store: store, Logger: testLogger(t)}).Run(context.Background())
	}()
	time.Sleep(20 * time.Millisecond)
	l2.Close()
	select {
	case err := <-done:
		if !errors.Is(err, channels.ErrLayerClosed) {
			t.Errorf("Run on a closed layer = %v, want ErrLayerClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after the layer was closed")
	}
}

// Closing the store stops Run with ErrStoreClosed instead of losing every
// message received afterwards.
func TestRunStopsWhenStoreCloses(t *testing.T) {
	l := newLayer(t, inmemory.Config{})
	store := openStore(t, sqliteConfig(t))
	done := make(chan error, 1)
	go func() { done <- (&delay.Server{Layer: l, Store: store, Logger: testLogger(t)}).Run(t.Context()) }()
	sendRaw(t, l, channels.Content{"channel": "out", "content": map[string]any{}, "delay": int64(0)})
	receive(t, l, "out", 5*time.Second)
	store.Close()
	sendRaw(t, l, channels.Content{"channel": "out", "content": map[string]any{}, "delay": int64(0)})
	select {
	case err := <-done:
		if !errors.Is(err, delay.ErrStoreClosed) {
			t.Errorf("Run after the store closed = %v, want ErrStoreClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after the store was closed")
	}
}

// Messages received just before Run's context is done are still stored.
func TestStopStoresWhatWasReceived(t *testing.T) {
	l := newLayer(t, inmemory.Config{Capacity: 1000})
	store := openStore(t, sqliteConfig(t))
	for i := range 500 {
		sendRaw(t, l, channels.Content{"channel": "out", "content": map[string]any{"i": int64(i)}, "delay": int64(60_000)})
	}
	srv := startServer(t, &delay.Server{Layer: l, Store: store})
	eventually(t, "intake to start", func() bool { return srv.Stats().Received > 0 })
	if err := srv.stop(); err != nil {
		t.Fatal(err)
	}
	st := srv.Stats()
	if n := pending(t, store); uint64(n) != st.Received || st.Lost != 0 {
		t.Errorf("received %d, stored %d, lost %d: every received message must be stored", st.Received, n, st.Lost)
	}
	// The rest is still on the channel for the next server.
	left := 0
	for {
		_, c, _ := l.Poll(t.Context(), delay.Channel)
		if c == nil {
			break
		}
		left++
	}
	if uint64(left)+st.Received != 500 {
		t.Errorf("received %d + left %d != 500 sent", st.Received, left)
	}
}
