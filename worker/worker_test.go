package worker_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gochannels/channels/internal/testenv"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/inmemory"
	"github.com/gochannels/channels/worker"
	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type syncBuffer = testenv.Output

// start runs w until the test ends.
func start(t *testing.T, w *worker.Worker) (stop func()) {
	t.Helper()
	if w.Logger == nil {
		w.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func receive(t *testing.T, l channels.Layer, ch string) channels.Content {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, c, err := l.Receive(ctx, ch)
	if err != nil {
		t.Fatalf("receive on %s: %v", ch, err)
	}
	return c
}

func send(t *testing.T, l channels.Layer, ch string, c channels.Content) {
	t.Helper()
	if err := l.Send(context.Background(), ch, c); err != nil {
		t.Fatal(err)
	}
}

// Checklist A2.11: a watcher sees nothing on x until the consumer has ended.
func TestA2_11_ConsumerAtomicityWatcher(t *testing.T) {
	l := inmemory.MustNew(inmemory.Config{})
	var finished atomic.Bool
	r := channels.NewRouter()
	r.RouteFunc("trigger", func(ctx context.Context, m *channels.Message) error {
		if err := (channels.Channel{Name: "x"}).Send(ctx, channels.Content{"v": int64(1)}); err != nil {
			return err
		}
		time.Sleep(300 * time.Millisecond)
		finished.Store(true)
		return nil
	})
	start(t, &worker.Worker{Layer: l, Consumer: r})
	send(t, l, "trigger", channels.Content{})
	c := receive(t, l, "x")
	if !finished.Load() {
		t.Fatalf("x received %v before the consumer finished", c)
	}
}

// Checklist A2.15 through a worker: Immediately is visible during the consumer.
func TestA2_15_ImmediatelyThroughWorker(t *testing.T) {
	l := inmemory.MustNew(inmemory.Config{})
	var finished atomic.Bool
	r := channels.NewRouter()
	r.RouteFunc("trigger", func(ctx context.Context, m *channels.Message) error {
		if err := (channels.Channel{Name: "x"}).Send(ctx, channels.Content{}, channels.Immediately); err != nil {
			return err
		}
		time.Sleep(300 * time.Millisecond)
		finished.Store(true)
		return nil
	})
	start(t, &worker.Worker{Layer: l, Consumer: r})
	send(t, l, "trigger", channels.Content{})
	receive(t, l, "x")
	if finished.Load() {
		t.Fatal("an immediate send was only visible after the consumer finished")
	}
}

// laneRecorder is a websocket.receive consumer that records, per reply
// channel, the order values of the messages it ran, whether two messages of
// one connection ran at once, and the most messages that ran at once. pause
// runs in the middle of each message.
type laneRecorder struct {
	pause   func()
	mu      sync.Mutex
	seen    map[string][]int64
	running map[string]int
	overlap atomic.Bool
	now     atomic.Int64
	most    atomic.Int64
}

func newLaneRecorder(pause func()) *laneRecorder {
	return &laneRecorder{pause: pause, seen: map[string][]int64{}, running: map[string]int{}}
}

func (r *laneRecorder) consume(ctx context.Context, m *channels.Message) error {
	n := r.now.Add(1)
	defer r.now.Add(-1)
	for old := r.most.Load(); n > old && !r.most.CompareAndSwap(old, n); old = r.most.Load() {
	}
	r.mu.Lock()
	r.running[m.ReplyChannel]++
	if r.running[m.ReplyChannel] > 1 {
		r.overlap.Store(true)
	}
	r.mu.Unlock()
	r.pause()
	order, _ := m.Content.Int("order")
	r.mu.Lock()
	r.running[m.ReplyChannel]--
	r.seen[m.ReplyChannel] = append(r.seen[m.ReplyChannel], order)
	r.mu.Unlock()
	return nil
}

// last reports whether the last message run for reply had order i.
func (r *laneRecorder) last(reply string, i int64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.seen[reply]
	return len(s) > 0 && s[len(s)-1] == i
}

// check waits, for at most 10 seconds, until conns connections' per
// messages each have run, then fails the test unless each connection's ran
// in order (0 to per-1) and one at a time.
func (r *laneRecorder) check(t *testing.T, conns, per int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r.mu.Lock()
		total := 0
		for _, s := range r.seen {
			total += len(s)
		}
		r.mu.Unlock()
		if total == conns*per || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	want := make([]int64, per)
	for i := range want {
		want[i] = int64(i)
	}
	for c, got := range r.seen {
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("connection %s consumed out of order (-want +got):\n%s", c, diff)
		}
	}
	if len(r.seen) != conns {
		t.Errorf("saw %d connections; want %d", len(r.seen), conns)
	}
	if r.overlap.Load() {
		t.Error("two messages of one connection ran at the same time")
	}
}

// Messages of one connection run one at a time, in arrival order, while other
// connections run concurrently.
func TestOrderingPerReplyChannel(t *testing.T) {
	l := inmemory.MustNew(inmemory.Config{Capacity: 1000})
	rec := newLaneRecorder(func() { time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond) })
	r := channels.NewRouter()
	r.RouteFunc("websocket.receive", rec.consume)
	start(t, &worker.Worker{Layer: l, Consumer: r, Concurrency: 8})
	const conns, per = 4, 200
	for i := range per {
		for c := range conns {
			send(t, l, "websocket.receive", channels.Content{"reply_channel": "websocket.send!c" + string(rune('a'+c)), "order": int64(i)})
		}
	}
	rec.check(t, conns, per)
	if rec.most.Load() < 2 {
		t.Errorf("at most %d consumer ran at once; different connections should run concurrently", rec.most.Load())
	}
}

// A panicking consumer is logged with its channel and consumer, its socket is
// closed with 1011, and the worker keeps going.
func TestPanicRecovered(t *testing.T) {
	l := inmemory.MustNew(inmemory.Config{})
	var logs syncBuffer
	r := channels.NewRouter()
	r.RouteFunc("websocket.receive", func(ctx context.Context, m *channels.Message) error {
		if m.Content.String("text") == "boom" {
			panic("consumer bug")
		}
		return m.Reply(ctx, channels.Content{"text": "ok"})
	})
	w := &worker.Worker{Layer: l, Consumer: r, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	start(t, w)
	send(t, l, "websocket.receive", channels.Content{"reply_channel": "websocket.send!p1", "text": "boom"})
	if got := receive(t, l, "websocket.send!p1"); got["close"] != int64(1011) {
		t.Fatalf("panicking consumer's socket got %v; want close 1011", got)
	}
	send(t, l, "websocket.receive", channels.Content{"reply_channel": "websocket.send!p2", "text": "hi"})
	if got := receive(t, l, "websocket.send!p2"); got.String("text") != "ok" {
		t.Fatalf("worker did not keep going after a panic: %v", got)
	}
	if s := w.Stats(); s.Panics != 1 || s.Consumed != 2 {
		t.Errorf("stats %+v; want 1 panic, 2 consumed", s)
	}
	out := logs.String()
	for _, want := range []string{"consumer panicked", "channel=websocket.receive", "consumer=", "consumer bug"} {
		if !bytes.Contains([]byte(out), []byte(want)) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

// Cancelling Run waits for the consumers in progress.
func TestGracefulStop(t *testing.T) {
	l := inmemory.MustNew(inmemory.Config{})
	started := make(chan struct{})
	var finished atomic.Bool
	r := channels.NewRouter()
	r.RouteFunc("slow", func(ctx context.Context, m *channels.Message) error {
		close(started)
		time.Sleep(200 * time.Millisecond)
		if ctx.Err() != nil {
			t.Error("the consumer's context was cancelled by the worker's")
		}
		finished.Store(true)
		return channels.Channel{Name: "done"}.Send(ctx, channels.Content{})
	})
	stop := start(t, &worker.Worker{Layer: l, Consumer: r})
	send(t, l, "slow", channels.Content{})
	<-started
	stop()
	if !finished.Load() {
		t.Fatal("Run returned before the consumer in progress finished")
	}
	if receive(t, l, "done") == nil {
		t.Fatal("the consumer's sends were not flushed")
	}
}

func TestFilterChannels(t *testing.T) {
	names := []string{"yes.1", "no.1", "maybe.2", "yes"}
	for _, tc := range []struct {
		only, exclude, want []string
	}{
		{[]string{"yes.*", "maybe.*"}, nil, []string{"yes.1", "maybe.2"}},
		{nil, []string{"no.*", "maybe.*"}, []string{"yes.1", "yes"}},
		{[]string{"yes.*"}, []string{"no.*"}, []string{"yes.1"}},
		{nil, nil, names},
	} {
		got, err := worker.FilterChannels(names, tc.only, tc.exclude)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("only %v exclude %v (-want +got):\n%s", tc.only, tc.exclude, diff)
		}
	}
}

func TestRunErrors(t *testing.T) {
	l := inmemory.MustNew(inmemory.Config{})
	r := channels.NewRouter()
	r.RouteFunc("a", func(context.Context, *channels.Message) error { return nil })
	if err := (&worker.Worker{Layer: l, Consumer: r, Only: []string{"b*"}}).Run(context.Background()); err == nil {
		t.Error("Run with nothing to listen on succeeded")
	}
	if err := (&worker.Worker{Layer: l, Consumer: channels.ConsumerFunc(nil)}).Run(context.Background()); err == nil {
		t.Error("Run with a consumer that lists no channels succeeded")
	}
	l.Close()
	if err := (&worker.Worker{Layer: l, Consumer: r}).Run(context.Background()); !errors.Is(err, channels.ErrLayerClosed) {
		t.Errorf("Run on a closed layer = %v", err)
	}
}

// flaky fails its first receives, as a layer does while its server is down.
type flaky struct {
	*inmemory.Layer
	fails atomic.Int32
}

func (f *flaky) Receive(ctx context.Context, names ...string) (string, channels.Content, error) {
	if f.fails.Add(-1) >= 0 {
		return "", nil, errors.New("connection refused")
	}
	return f.Layer.Receive(ctx, names...)
}

func TestReceiveErrorsCountedAndRetried(t *testing.T) {
	l := &flaky{Layer: inmemory.MustNew(inmemory.Config{})}
	l.fails.Store(3)
	r := channels.NewRouter()
	r.RouteFunc("in", func(ctx context.Context, m *channels.Message) error {
		return channels.Channel{Name: "out"}.Send(ctx, channels.Content{})
	})
	w := &worker.Worker{Layer: l, Consumer: r, Logger: slog.New(slog.NewTextHandler(&syncBuffer{}, nil))}
	start(t, w)
	send(t, l, "in", channels.Content{})
	receive(t, l.Layer, "out")
	if got := w.Stats().ReceiveErrors; got != 3 {
		t.Errorf("ReceiveErrors = %d; want 3", got)
	}
}

func TestUnroutedMessageCounted(t *testing.T) {
	l := inmemory.MustNew(inmemory.Config{})
	r := channels.NewRouter()
	r.RouteFunc("in", func(ctx context.Context, m *channels.Message) error {
		return channels.Channel{Name: "out"}.Send(ctx, channels.Content{})
	}, channels.Path("^/ok/$"))
	var logs syncBuffer
	w := &worker.Worker{Layer: l, Consumer: r, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	start(t, w)
	send(t, l, "in", channels.Content{"path": "/nope/"})
	send(t, l, "in", channels.Content{"path": "/ok/"})
	receive(t, l, "out")
	for deadline := time.Now().Add(5 * time.Second); w.Stats().Unrouted == 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if w.Stats().Unrouted != 1 {
		t.Errorf("Unrouted = %d; want 1", w.Stats().Unrouted)
	}
	if !bytes.Contains([]byte(logs.String()), []byte("check your routing")) {
		t.Errorf("unrouted message not logged:\n%s", logs.String())
	}
}
