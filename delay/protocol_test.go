package delay_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/delay"
	"github.com/gochannels/channels/inmemory"
	"github.com/google/go-cmp/cmp"
)

func TestRequest(t *testing.T) {
	cases := []struct {
		name    string
		channel string
		after   time.Duration
		want    channels.Content
		wantErr error
	}{
		{"whole ms", "out", 1500 * time.Millisecond, channels.Content{"channel": "out", "content": map[string]any{"k": "v"}, "delay": int64(1500)}, nil},
		{"rounded up", "out", 1500*time.Millisecond + time.Nanosecond, channels.Content{"channel": "out", "content": map[string]any{"k": "v"}, "delay": int64(1501)}, nil},
		{"zero", "out", 0, channels.Content{"channel": "out", "content": map[string]any{"k": "v"}, "delay": int64(0)}, nil},
		{"maximum", "out", delay.DefaultMaxDelay, channels.Content{"channel": "out", "content": map[string]any{"k": "v"}, "delay": delay.DefaultMaxDelay.Milliseconds()}, nil},
		{"negative", "out", -time.Millisecond, nil, delay.ErrInvalidDelay},
		{"too long", "out", delay.DefaultMaxDelay + time.Millisecond, nil, delay.ErrInvalidDelay},
		{"bad channel", "no spaces", time.Second, nil, channels.ErrInvalidName},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := delay.Request(tc.channel, channels.Content{"k": "v"}, tc.after)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("error = %v, want %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("request (-want +got):\n%s", diff)
			}
		})
	}
}

// Send puts a well-formed request on asgi.delay; outside a consumer at once.
func TestSendOutsideConsumer(t *testing.T) {
	l := newLayer(t, inmemory.Config{})
	if err := delay.Send(t.Context(), l, "out", channels.Content{"b": []byte("x")}, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	got := receive(t, l, delay.Channel, time.Second)
	want := channels.Content{"channel": "out", "content": map[string]any{"b": []byte("x")}, "delay": int64(10000)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("asgi.delay message (-want +got):\n%s", diff)
	}
	if err := delay.Send(t.Context(), l, "out", nil, -time.Second); !errors.Is(err, delay.ErrInvalidDelay) {
		t.Errorf("negative delay: %v, want ErrInvalidDelay", err)
	}
	if err := delay.Send(t.Context(), nil, "out", nil, time.Second); !errors.Is(err, channels.ErrNoLayer) {
		t.Errorf("no layer outside a consumer: %v, want ErrNoLayer", err)
	}
}

// Inside a consumer Send is held in the outbox until the consumer returns
// (consumer atomicity), unless channels.Immediately is given; a nil layer
// means the message's layer.
func TestSendInsideConsumer(t *testing.T) {
	cases := []struct {
		name     string
		opts     []channels.SendOption
		duringOK bool // the request is on asgi.delay while the consumer runs
	}{
		{"held until the consumer returns", nil, false},
		{"immediately", []channels.SendOption{channels.Immediately}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := newLayer(t, inmemory.Config{})
			var during bool
			consumer := channels.ConsumerFunc(func(ctx context.Context, m *channels.Message) error {
				if err := delay.Send(ctx, nil, "later", channels.Content{"n": 1}, time.Second, tc.opts...); err != nil {
					return err
				}
				st, _ := l.ChannelStats(ctx, delay.Channel)
				during = st.Length == 1
				return nil
			})
			r := &channels.Runner{Logger: testLogger(t)}
			if err := r.Run(t.Context(), consumer, channels.NewMessage(l, "work", channels.Content{})); err != nil {
				t.Fatal(err)
			}
			if during != tc.duringOK {
				t.Errorf("request on %s while the consumer ran = %v, want %v", delay.Channel, during, tc.duringOK)
			}
			got := receive(t, l, delay.Channel, time.Second)
			if got.String("channel") != "later" {
				t.Errorf("request = %v", got)
			}
		})
	}
}

// SendConfirmed returns once the message is committed, with the ID it will
// be delivered under.
func TestSendConfirmed(t *testing.T) {
	forEachBackend(t, func(t *testing.T, cfg func(*testing.T) delay.StoreConfig) {
		l := newLayer(t, inmemory.Config{})
		store := openStore(t, cfg(t))
		srv := startServer(t, &delay.Server{Layer: l, Store: store})

		// The delay leaves the record in the store for a while after the
		// confirmation, even on a loaded machine (with 200 ms, the record
		// was once delivered and gone before it was counted).
		id, err := delay.SendConfirmed(t.Context(), l, "out", channels.Content{"n": 7}, 1500*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if n := pending(t, store); n != 1 {
			t.Fatalf("records when SendConfirmed returned = %d, want 1 (committed)", n)
		}
		got := receive(t, l, "out", 10*time.Second)
		if got.String(delay.IDKey) != id {
			t.Errorf("delivered ID %q, SendConfirmed returned %q", got.String(delay.IDKey), id)
		}
		if st := srv.Stats(); st.Confirmed != 1 {
			t.Errorf("Confirmed = %d, want 1", st.Confirmed)
		}
	})
}

// A server's refusal reaches SendConfirmed as a *RejectError.
func TestSendConfirmedRejected(t *testing.T) {
	l := newLayer(t, inmemory.Config{})
	store := openStore(t, sqliteConfig(t))
	startServer(t, &delay.Server{Layer: l, Store: store, MaxDelay: time.Minute})

	_, err := delay.SendConfirmed(t.Context(), l, "out", channels.Content{}, time.Hour)
	var rej *delay.RejectError
	if !errors.As(err, &rej) || rej.Reason != delay.ReasonDelayTooLarge || !errors.Is(err, delay.ErrRejected) {
		t.Fatalf("error = %v, want a *RejectError for delay_too_large matching ErrRejected", err)
	}
	if n := pending(t, store); n != 0 {
		t.Errorf("records = %d, want 0", n)
	}
}

// Without a delay server, SendConfirmed gives up when its context is done.
func TestSendConfirmedWithoutServer(t *testing.T) {
	l := newLayer(t, inmemory.Config{})
	ctx, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
	defer cancel()
	_, err := delay.SendConfirmed(ctx, l, "out", channels.Content{}, 0)
	if !errors.Is(err, delay.ErrNotConfirmed) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error = %v, want ErrNotConfirmed and DeadlineExceeded", err)
	}
	// It sent the request again (same ID) after the first second.
	first := receive(t, l, delay.Channel, time.Second)
	second := receive(t, l, delay.Channel, time.Second)
	if first.String("id") == "" || first.String("id") != second.String("id") {
		t.Errorf("retries carry IDs %q and %q, want the same non-empty ID", first.String("id"), second.String("id"))
	}
	if d1, _ := first.Int("delay"); d1 != 0 {
		t.Errorf("delay = %d, want 0", d1)
	}
}

// A request repeated with the same ID (a producer that did not get the
// confirmation) is stored and delivered once, also when the repeat arrives
// after the delivery.
func TestRepeatedIDIsDeliveredOnce(t *testing.T) {
	forEachBackend(t, func(t *testing.T, cfg func(*testing.T) delay.StoreConfig) {
		l := newLayer(t, inmemory.Config{})
		store := openStore(t, cfg(t))
		srv := startServer(t, &delay.Server{Layer: l, Store: store})

		req := channels.Content{"channel": "out", "content": map[string]any{"n": int64(1)}, "delay": int64(0), "id": "producer-id-1"}
		sendRaw(t, l, req)
		sendRaw(t, l, req)
		got := receive(t, l, "out", 5*time.Second)
		if got.String(delay.IDKey) != "producer-id-1" {
			t.Errorf("delivered with ID %q, want the producer's", got.String(delay.IDKey))
		}
		eventually(t, "both requests to be handled", func() bool { st := srv.Stats(); return st.Stored+st.Duplicates == 2 })
		sendRaw(t, l, req) // after delivery
		eventually(t, "the late repeat to be handled", func() bool { return srv.Stats().Duplicates == 2 })
		time.Sleep(50 * time.Millisecond)
		nothingOn(t, l, "out")
		if st := srv.Stats(); st.Stored != 1 || st.Sent != 1 {
			t.Errorf("stats = %+v, want stored once and sent once", st)
		}
	})
}
