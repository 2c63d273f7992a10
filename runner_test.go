package channels_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gochannels/channels/internal/testenv"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/inmemory"
)

func newLayer(t *testing.T, cfg inmemory.Config) *inmemory.Layer {
	t.Helper()
	l := inmemory.MustNew(cfg)
	t.Cleanup(func() { l.Close() })
	return l
}

func poll(t *testing.T, l channels.Layer, ch string) channels.Content {
	t.Helper()
	_, c, err := channels.Poll(context.Background(), l, ch)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type logBuffer = testenv.Output

func newRunner() (*channels.Runner, *logBuffer) {
	var buf logBuffer
	return &channels.Runner{Logger: slog.New(slog.NewTextHandler(&buf, nil)), FlushTimeout: 100 * time.Millisecond, FlushInterval: 10 * time.Millisecond}, &buf
}

// A2.11: sends wait until the consumer returns.
func TestA2_11_RunnerHoldsSendsUntilReturn(t *testing.T) {
	l := newLayer(t, inmemory.Config{})
	r, _ := newRunner()
	var during channels.Content
	c := channels.ConsumerFunc(func(ctx context.Context, m *channels.Message) error {
		if err := (channels.Channel{Name: "x"}).Send(ctx, channels.Content{"v": int64(1)}); err != nil {
			return err
		}
		during = poll(t, l, "x")
		return nil
	})
	if err := r.Run(context.Background(), c, channels.NewMessage(l, "in", channels.Content{})); err != nil {
		t.Fatal(err)
	}
	if during != nil {
		t.Fatalf("message on x was visible while the consumer ran: %v", during)
	}
	if got := poll(t, l, "x"); got == nil {
		t.Fatal("message on x not sent after the consumer returned")
	}
}

// A2.12 and A2.14: sent in order, also when the consumer fails or panics.
func TestA2_12_14_FlushedInOrderAfterErrorAndPanic(t *testing.T) {
	for name, end := range map[string]func() error{
		"return": func() error { return nil },
		"error":  func() error { return errors.New("boom") },
		"panic":  func() error { panic("boom") },
	} {
		t.Run(name, func(t *testing.T) {
			l := newLayer(t, inmemory.Config{})
			r, logs := newRunner()
			c := channels.ConsumerFunc(func(ctx context.Context, m *channels.Message) error {
				for _, v := range []string{"A", "B", "C"} {
					if err := (channels.Channel{Name: "out"}).Send(ctx, channels.Content{"v": v}); err != nil {
						return err
					}
				}
				return end()
			})
			err := r.Run(context.Background(), c, channels.NewMessage(l, "in", channels.Content{}))
			if name != "return" && err == nil {
				t.Fatal("Run hid the consumer's failure")
			}
			var got []string
			for {
				c := poll(t, l, "out")
				if c == nil {
					break
				}
				got = append(got, c.String("v"))
			}
			if strings.Join(got, "") != "ABC" {
				t.Fatalf("sent %v; want A B C in order", got)
			}
			if name == "panic" {
				var pe *channels.PanicError
				if !errors.As(err, &pe) || r.Stats().Panics != 1 {
					t.Fatalf("panic: err %v, stats %+v", err, r.Stats())
				}
				if !strings.Contains(logs.String(), "consumer panicked") || !strings.Contains(logs.String(), "channel=in") {
					t.Fatalf("panic not logged with its channel: %s", logs)
				}
			}
		})
	}
}

// A2.15: Immediately bypasses the outbox; outside a consumer sends are immediate.
func TestA2_15_Immediately(t *testing.T) {
	l := newLayer(t, inmemory.Config{})
	r, _ := newRunner()
	var during channels.Content
	c := channels.ConsumerFunc(func(ctx context.Context, m *channels.Message) error {
		if err := (channels.Channel{Name: "x"}).Send(ctx, channels.Content{"v": int64(1)}, channels.Immediately); err != nil {
			return err
		}
		during = poll(t, l, "x")
		return nil
	})
	if err := r.Run(context.Background(), c, channels.NewMessage(l, "in", channels.Content{})); err != nil {
		t.Fatal(err)
	}
	if during == nil {
		t.Fatal("Immediately: message not visible while the consumer ran")
	}
	if err := (channels.Channel{Name: "y", Layer: l}).Send(context.Background(), channels.Content{}); err != nil {
		t.Fatal(err)
	}
	if poll(t, l, "y") == nil {
		t.Fatal("send outside a consumer was not immediate")
	}
	if err := (channels.Channel{Name: "y"}).Send(context.Background(), channels.Content{}); !errors.Is(err, channels.ErrNoLayer) {
		t.Fatalf("send with no layer outside a consumer = %v; want ErrNoLayer", err)
	}
}

func TestRunnerGroupSendAndReply(t *testing.T) {
	l := newLayer(t, inmemory.Config{})
	r, _ := newRunner()
	ctx := context.Background()
	if err := l.GroupAdd(ctx, "room", "member"); err != nil {
		t.Fatal(err)
	}
	c := channels.ConsumerFunc(func(ctx context.Context, m *channels.Message) error {
		if err := m.Group("room").Send(ctx, channels.Content{"g": true}); err != nil {
			return err
		}
		if poll(t, l, "member") != nil {
			t.Error("group send not held")
		}
		return m.Reply(ctx, channels.Content{"r": true})
	})
	m := channels.NewMessage(l, "in", channels.Content{"reply_channel": "reply!abc"})
	if err := r.Run(ctx, c, m); err != nil {
		t.Fatal(err)
	}
	if got := poll(t, l, "member"); !got.Bool("g") {
		t.Fatalf("group member got %v", got)
	}
	if got := poll(t, l, "reply!abc"); !got.Bool("r") {
		t.Fatalf("reply channel got %v", got)
	}
	if err := channels.NewMessage(l, "in", channels.Content{}).Reply(ctx, channels.Content{}); !errors.Is(err, channels.ErrNoReplyChannel) {
		t.Fatalf("Reply without reply channel = %v", err)
	}
}

// An invalid value is reported at Send, inside the consumer, not at the flush.
func TestBufferedSendChecksContent(t *testing.T) {
	l := newLayer(t, inmemory.Config{})
	r, _ := newRunner()
	var sendErr error
	c := channels.ConsumerFunc(func(ctx context.Context, m *channels.Message) error {
		sendErr = (channels.Channel{Name: "x"}).Send(ctx, channels.Content{"t": time.Now()})
		return nil
	})
	_ = r.Run(context.Background(), c, channels.NewMessage(l, "in", channels.Content{}))
	if !errors.Is(sendErr, channels.ErrInvalidContent) {
		t.Fatalf("buffered Send of a time.Time = %v; want ErrInvalidContent", sendErr)
	}
}

// A full channel during the flush is retried, then dropped and counted; the
// rest of the outbox still goes out.
func TestRunnerFlushFullChannel(t *testing.T) {
	l := newLayer(t, inmemory.Config{Capacity: 1})
	r, logs := newRunner()
	ctx := context.Background()
	if err := l.Send(ctx, "full", channels.Content{}); err != nil {
		t.Fatal(err)
	}
	c := channels.ConsumerFunc(func(ctx context.Context, m *channels.Message) error {
		_ = channels.Channel{Name: "full"}.Send(ctx, channels.Content{"n": int64(1)})
		return channels.Channel{Name: "after"}.Send(ctx, channels.Content{"n": int64(2)})
	})
	start := time.Now()
	if err := r.Run(ctx, c, channels.NewMessage(l, "in", channels.Content{})); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 80*time.Millisecond {
		t.Errorf("flush gave up after %v; want about FlushTimeout (100ms) of retries", el)
	}
	if r.Stats().Dropped != 1 {
		t.Errorf("Dropped = %d; want 1", r.Stats().Dropped)
	}
	if !strings.Contains(logs.String(), "dropped a message") {
		t.Errorf("drop not logged: %s", logs)
	}
	if poll(t, l, "after") == nil {
		t.Error("the send after the dropped one was not flushed")
	}

	// A channel that drains during the retries gets its message.
	go func() {
		time.Sleep(30 * time.Millisecond)
		poll(t, l, "full")
	}()
	r2, _ := newRunner()
	if err := r2.Run(ctx, c, channels.NewMessage(l, "in", channels.Content{})); err != nil {
		t.Fatal(err)
	}
	if r2.Stats().Dropped != 0 {
		t.Errorf("a channel with room after 30ms still dropped the message")
	}
}

func TestRunnerCloseError(t *testing.T) {
	l := newLayer(t, inmemory.Config{})
	r, _ := newRunner()
	ctx := context.Background()
	for _, tc := range []struct {
		err  error
		want any
	}{
		{&channels.CloseError{Code: 4000}, int64(4000)},
		{channels.ErrDenyConnection, true},
	} {
		c := channels.ConsumerFunc(func(ctx context.Context, m *channels.Message) error {
			_ = m.Reply(ctx, channels.Content{"text": "bye"})
			return tc.err
		})
		_ = r.Run(ctx, c, channels.NewMessage(l, "websocket.receive", channels.Content{"reply_channel": "websocket.send!a"}))
		if got := poll(t, l, "websocket.send!a"); got.String("text") != "bye" {
			t.Fatalf("first reply %v; want the text frame first", got)
		}
		if got := poll(t, l, "websocket.send!a"); got["close"] != tc.want {
			t.Fatalf("second reply %v; want close %v", got, tc.want)
		}
	}
}

func TestRunnerPanicClosesSocket(t *testing.T) {
	l := newLayer(t, inmemory.Config{})
	r, _ := newRunner()
	ctx := context.Background()
	c := channels.ConsumerFunc(func(ctx context.Context, m *channels.Message) error { panic("bug") })
	_ = r.Run(ctx, c, channels.NewMessage(l, "websocket.receive", channels.Content{"reply_channel": "websocket.send!p"}))
	if got := poll(t, l, "websocket.send!p"); got["close"] != int64(1011) {
		t.Fatalf("after a panic the socket got %v; want close 1011", got)
	}
	_ = r.Run(ctx, c, channels.NewMessage(l, "http.request", channels.Content{"reply_channel": "http.response!p"}))
	if got := poll(t, l, "http.response!p"); got["status"] != int64(500) {
		t.Fatalf("after a panic the HTTP request got %v; want status 500", got)
	}
}

func TestRunnerConsumeLater(t *testing.T) {
	l := newLayer(t, inmemory.Config{})
	r, _ := newRunner()
	r.MaxRetries = 2
	ctx := context.Background()
	calls := 0
	c := channels.ConsumerFunc(func(ctx context.Context, m *channels.Message) error {
		calls++
		return channels.ErrConsumeLater
	})
	m := channels.NewMessage(l, "later", channels.Content{"v": "x"})
	for range 3 {
		_ = r.Run(ctx, c, m)
		_, content, _ := channels.Poll(ctx, l, "later")
		if content == nil {
			break
		}
		m = channels.NewMessage(l, "later", content)
	}
	if calls != 3 || r.Stats().Requeued != 2 || r.Stats().Dropped != 1 {
		t.Fatalf("calls %d, stats %+v; want 3 calls, 2 requeues, then dropped", calls, r.Stats())
	}
}

// One channel that stays full costs the flush FlushTimeout once, not once per
// message sent to it: after the first message's retries, the others to the
// same channel are dropped without another attempt.
func TestRunnerFlushStuckChannelOnce(t *testing.T) {
	l := &countingLayer{Layer: newLayer(t, inmemory.Config{Capacity: 1})}
	r, _ := newRunner() // FlushTimeout 100ms, FlushInterval 10ms
	ctx := context.Background()
	if err := l.Send(ctx, "stuck", channels.Content{}); err != nil {
		t.Fatal(err)
	}
	l.sends.Store(0)
	c := channels.ConsumerFunc(func(ctx context.Context, m *channels.Message) error {
		for i := range 20 {
			_ = channels.Channel{Name: "stuck"}.Send(ctx, channels.Content{"n": int64(i)})
		}
		return channels.Channel{Name: "after"}.Send(ctx, channels.Content{})
	})
	if err := r.Run(ctx, c, channels.NewMessage(l, "in", channels.Content{})); err != nil {
		t.Fatal(err)
	}
	if got := r.Stats().Dropped; got != 20 {
		t.Fatalf("Dropped = %d; want 20", got)
	}
	// The first message is tried about FlushTimeout/FlushInterval times; the
	// other 19 are not tried at all, and "after" once.
	if n := l.sends.Load(); n > 15 {
		t.Fatalf("%d sends reached the layer; want the retries of the first message only (about 10) and the last send", n)
	}
	if poll(t, l, "after") == nil {
		t.Fatal("the send after the stuck channel was not flushed")
	}
}

// countingLayer counts the sends that reach the layer.
type countingLayer struct {
	*inmemory.Layer
	sends atomic.Int64
}

func (c *countingLayer) Send(ctx context.Context, ch string, m channels.Content) error {
	c.sends.Add(1)
	return c.Layer.Send(ctx, ch, m)
}

type ctxKey struct{}

// The consumer's context is its parent's: values, deadline and
// cancellation come through, contexts made from it work, and it is the
// consumer's (InConsumer) while the parent is not.
func TestRunnerConsumerContext(t *testing.T) {
	l := newLayer(t, inmemory.Config{})
	parent, cancel := context.WithTimeout(context.WithValue(t.Context(), ctxKey{}, "v"), time.Minute)
	want, _ := parent.Deadline()
	var checked bool
	consumer := channels.ConsumerFunc(func(ctx context.Context, m *channels.Message) error {
		checked = true
		if !channels.InConsumer(ctx) {
			t.Error("InConsumer is false in the consumer")
		}
		if ctx.Value(ctxKey{}) != "v" {
			t.Error("the parent's value is missing")
		}
		if d, ok := ctx.Deadline(); !ok || !d.Equal(want) {
			t.Errorf("deadline %v, %v; want the parent's %v", d, ok, want)
		}
		child, stop := context.WithCancel(ctx)
		defer stop()
		cancel() // the parent's cancellation reaches the consumer's context and its children
		select {
		case <-child.Done():
		case <-time.After(5 * time.Second):
			t.Error("a context made from the consumer's was not cancelled with the parent")
		}
		if !errors.Is(ctx.Err(), context.Canceled) {
			t.Errorf("ctx.Err() = %v, want context.Canceled", ctx.Err())
		}
		return channels.Channel{Name: "out"}.Send(ctx, channels.Content{"n": int64(1)})
	})
	r := &channels.Runner{}
	if err := r.Run(parent, consumer, channels.NewMessage(l, "in", channels.Content{})); err != nil {
		t.Fatal(err)
	}
	if !checked {
		t.Fatal("the consumer did not run")
	}
	if channels.InConsumer(parent) {
		t.Error("InConsumer is true outside the consumer")
	}
	if c := poll(t, l, "out"); c == nil {
		t.Error("the consumer's send was not flushed")
	}
}
