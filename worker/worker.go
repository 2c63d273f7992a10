// Package worker runs consumers over a channel layer: it receives from the
// channels a router lists, runs the matching consumer for each message, and
// flushes what the consumer sent (consumer atomicity, see channels.Runner).
//
// Workers are stateless: run as many as the load needs, in as many processes
// as the layer reaches (the in-memory layer only reaches one process).
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/internal/inline"
	"github.com/gochannels/channels/internal/naming"
)

// Worker receives messages from a layer and runs a consumer on each.
//
// Messages run concurrently, up to Concurrency at once, except that messages
// sharing a reply_channel (one connection's messages) run one at a time in
// the order they arrived. Each of the Concurrency goroutines receives for
// itself, one at a time, and runs what it received: a message goes from the
// layer to its consumer without a hand-off between goroutines. On an
// in-process layer (the in-memory layer of runserver) a message sent with
// the layer's SendInline, as the gateway sends WebSocket frames, may run
// in its sender's goroutine when a slot is free at once; Concurrency
// counts those runs too. Set the fields before calling Run; a Worker must
// not be copied after first use.
type Worker struct {
	// Layer is the channel layer to receive from. Required.
	Layer channels.Layer
	// Consumer runs every message, usually a *channels.Router. Required.
	Consumer channels.Consumer
	// Channels are the channels to receive on. Nil means the channels
	// Consumer lists (it must then be a channels.ChannelConsumer).
	Channels []string
	// Only keeps, of those channels, the ones matching any of these glob
	// patterns; Exclude then drops those matching any of its patterns.
	Only, Exclude []string
	// Concurrency is the most messages consumed at once. Zero means
	// 4 × GOMAXPROCS.
	Concurrency int
	// Backlog is how many received messages may wait for a busy connection
	// (messages that share a reply channel run one at a time). Zero means
	// 4 × Concurrency.
	Backlog int
	// Logger receives the worker's logs. Nil means slog.Default().
	Logger *slog.Logger
	// Runner runs each message. Nil means a Runner using Logger.
	Runner *channels.Runner

	receiveErrors atomic.Uint64
	received      atomic.Uint64
	inFlight      atomic.Int64
	initOnce      sync.Once
	runner        *channels.Runner
}

// Stats are a worker's counters.
type Stats struct {
	channels.RunnerStats
	Received      uint64 // messages received from the layer
	InFlight      int64  // messages received and not yet finished
	ReceiveErrors uint64 // failed Receive calls (layer unreachable, ...)
}

// Stats returns the worker's counters. It may be called at any time.
func (w *Worker) Stats() Stats {
	w.init()
	return Stats{
		RunnerStats:   w.runner.Stats(),
		Received:      w.received.Load(),
		InFlight:      w.inFlight.Load(),
		ReceiveErrors: w.receiveErrors.Load(),
	}
}

func (w *Worker) init() {
	w.initOnce.Do(func() {
		w.runner = w.Runner
		if w.runner == nil {
			w.runner = &channels.Runner{Logger: w.Logger}
		}
	})
}

func (w *Worker) logger() *slog.Logger {
	if w.Logger != nil {
		return w.Logger
	}
	return slog.Default()
}

// ListenChannels returns the channels Run receives on, after Only and
// Exclude.
func (w *Worker) ListenChannels() ([]string, error) {
	names := w.Channels
	if names == nil {
		cc, ok := w.Consumer.(channels.ChannelConsumer)
		if !ok {
			return nil, fmt.Errorf("worker: consumer %s does not list its channels; set Worker.Channels", channels.ConsumerName(w.Consumer))
		}
		names = cc.Channels()
	}
	return FilterChannels(names, w.Only, w.Exclude)
}

// FilterChannels keeps the names matching any pattern of only (all of them
// when only is empty), then drops those matching any pattern of exclude.
// Patterns are case-sensitive shell globs.
func FilterChannels(names, only, exclude []string) ([]string, error) {
	compile := func(ps []string) ([]naming.Glob, error) {
		var gs []naming.Glob
		for _, p := range ps {
			g, err := naming.CompileGlob(p)
			if err != nil {
				return nil, fmt.Errorf("worker: %w", err)
			}
			gs = append(gs, g)
		}
		return gs, nil
	}
	og, err := compile(only)
	if err != nil {
		return nil, err
	}
	eg, err := compile(exclude)
	if err != nil {
		return nil, err
	}
	matches := func(gs []naming.Glob, n string) bool {
		return slices.ContainsFunc(gs, func(g naming.Glob) bool { return g.Match(n) })
	}
	var out []string
	for _, n := range names {
		if len(og) > 0 && !matches(og, n) {
			continue
		}
		if matches(eg, n) {
			continue
		}
		out = append(out, n)
	}
	return out, nil
}

// Run receives and consumes messages until ctx is done, then waits for the
// messages already received to finish and returns nil. Consumers run with a
// context that is not cancelled by ctx, so that they can finish. Run returns
// an error at once if there is nothing to listen on, and if the layer is
// closed. Errors from Receive are logged and counted, and Run retries with a
// growing pause (up to 2 s).
func (w *Worker) Run(ctx context.Context) error {
	w.init()
	if w.Layer == nil || w.Consumer == nil {
		return errors.New("worker: Layer and Consumer are required")
	}
	names, err := w.ListenChannels()
	if err != nil {
		return err
	}
	if len(names) == 0 {
		return errors.New("worker: no channels to listen on (check the routes and the only/exclude filters)")
	}
	conc := w.Concurrency
	if conc <= 0 {
		conc = 4 * runtime.GOMAXPROCS(0)
	}
	backlog := w.Backlog
	if backlog <= 0 {
		backlog = 4 * conc
	}
	log := w.logger()
	log.Info("Listening on channels", "channels", names, "concurrency", conc, "layer", fmt.Sprint(w.Layer))

	var (
		wg     sync.WaitGroup
		recvMu sync.Mutex // held by the one goroutine receiving
		hold   = make(chan struct{}, conc+backlog)
		mu     sync.Mutex
		lanes  = make(map[string][]*channels.Message) // reply channel → messages waiting behind the running one
		fatal  error                                  // the error that stops every goroutine (layer closed); under recvMu
	)
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	cctx := context.WithoutCancel(ctx)
	debug := log.Enabled(ctx, slog.LevelDebug)
	// process runs m, then the messages queued behind it on its lane.
	process := func(m *channels.Message) {
		key := m.ReplyChannel
		for {
			if debug {
				log.Debug("consuming", "channel", m.Channel, "reply_channel", key)
			}
			_ = w.runner.Run(cctx, w.Consumer, m)
			w.inFlight.Add(-1)
			<-hold
			if key == "" {
				return
			}
			mu.Lock()
			q := lanes[key]
			if len(q) == 0 {
				delete(lanes, key)
				mu.Unlock()
				return
			}
			m = q[0]
			q[0] = nil
			lanes[key] = q[1:]
			mu.Unlock()
		}
	}
	// receive is the layer's Receive, or the attachment's when the worker
	// is attached to an in-process layer (see offer).
	var (
		receive  = w.Layer.Receive
		att      inline.Attached
		running  chan struct{}
		inlineMu sync.RWMutex
		stopping bool
	)
	// next receives one message, under recvMu, and returns it to run, or
	// nil when it joined the lane of a busy connection (or nothing came);
	// ok is false when the goroutine must stop.
	var backoff time.Duration
	next := func() (m *channels.Message, ok bool) {
		select {
		case hold <- struct{}{}:
		case <-rctx.Done():
			return nil, false
		}
		recvMu.Lock()
		defer recvMu.Unlock()
		if rctx.Err() != nil {
			<-hold
			return nil, false
		}
		ch, c, err := receive(rctx, names...)
		if err != nil {
			<-hold
			if rctx.Err() != nil {
				return nil, false
			}
			if errors.Is(err, channels.ErrLayerClosed) {
				fatal = err
				stop()
				return nil, false
			}
			w.receiveErrors.Add(1)
			// At most 400 ms apart: receiving resumes within about half a
			// second of the layer answering again. The other goroutines
			// wait for recvMu meanwhile.
			backoff = min(max(2*backoff, 50*time.Millisecond), 400*time.Millisecond)
			log.Error("receive failed; retrying", "error", err, "retry_in", backoff)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-rctx.Done():
				t.Stop()
			}
			return nil, true
		}
		backoff = 0
		if c == nil { // a layer may return nothing (no channels, or an internal timeout)
			<-hold
			return nil, true
		}
		w.received.Add(1)
		w.inFlight.Add(1)
		m = channels.NewMessage(w.Layer, ch, c)
		if att != nil {
			defer att.Placed() // in its lane, or about to run
		}
		if key := m.ReplyChannel; key != "" {
			mu.Lock()
			if q, busy := lanes[key]; busy {
				lanes[key] = append(q, m) // run by the goroutine running its connection
				mu.Unlock()
				return nil, true
			}
			lanes[key] = nil
			mu.Unlock()
		}
		return m, true
	}
	// offer runs a message sent on an in-process layer in the sender's
	// goroutine when a consumer slot is free at once and its connection
	// has nothing running, or places it in its connection's lane when
	// that has room (see package inline). running counts the consumers
	// running, in the worker's goroutines and in senders', so that no
	// more than conc run at once; inlineMu is held (read) by each run in
	// a sender's goroutine, and stopping set under it once Run stops.
	offer := func(channel string, c channels.Content) bool {
		select {
		case hold <- struct{}{}:
		default:
			return false
		}
		inlineMu.RLock()
		defer inlineMu.RUnlock()
		if stopping {
			<-hold
			return false
		}
		key := c.String("reply_channel")
		mu.Lock()
		q, busy := lanes[key]
		if busy = busy && key != ""; !busy {
			select {
			case running <- struct{}{}:
			default:
				mu.Unlock()
				<-hold
				return false // made no message: the sender sends it on
			}
			if key != "" {
				lanes[key] = nil
			}
		}
		m := channels.NewMessage(w.Layer, channel, c)
		if busy {
			lanes[key] = append(q, m) // run by the goroutine running its connection
		}
		mu.Unlock()
		w.received.Add(1)
		w.inFlight.Add(1)
		if !busy {
			process(m)
			<-running
		}
		return true
	}
	if il, ok := inline.For(w.Layer); ok {
		running = make(chan struct{}, conc)
		if att = il.AttachRunner(names, runnerFunc(offer)); att != nil {
			receive = att.Receive
		}
	}
	// Every goroutine receives for itself and runs what it received: a
	// message goes from the layer to its consumer without a hand-off
	// between goroutines. One receives at a time (recvMu), so that a
	// connection's messages join its lane in the order they came.
	wg.Add(conc)
	for range conc {
		go func() {
			defer wg.Done()
			for {
				m, ok := next()
				if !ok {
					return
				}
				if m != nil {
					if att != nil {
						running <- struct{}{}
					}
					process(m)
					if att != nil {
						<-running
					}
				}
			}
		}()
	}
	<-rctx.Done()
	if att != nil {
		inlineMu.Lock() // waits for the runs in senders' goroutines
		stopping = true
		inlineMu.Unlock()
		att.Detach()
	}
	recvMu.Lock()
	err = fatal
	recvMu.Unlock()
	if err != nil {
		wg.Wait()
		return err
	}
	log.Info("worker stopping; waiting for messages in progress", "in_flight", w.inFlight.Load())
	wg.Wait()
	return nil
}

// runnerFunc is an inline.Runner made of a function.
type runnerFunc func(channel string, c channels.Content) bool

// Offer implements inline.Runner.
func (f runnerFunc) Offer(channel string, c channels.Content) bool { return f(channel, c) }
