package channels

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gochannels/channels/internal/owned"
)

// Runner runs a consumer on one message the way a worker does, with consumer
// atomicity:
//
//  1. The consumer (with its middleware) runs with a context that carries a
//     per-message outbox; Channel.Send, Group.Send and Message.Reply called
//     with it append to the outbox instead of sending.
//  2. A panic is recovered and becomes a *PanicError, logged with the
//     channel and the consumer. If the message has a WebSocket reply channel
//     the socket is closed with 1011; an HTTP reply channel gets a 500.
//  3. A *CloseError appends {"close": code} for the reply channel;
//     ErrConsumeLater puts the message back on its channel.
//  4. The outbox is flushed in order, also after an error or a panic. A full
//     channel is retried for FlushTimeout, every FlushInterval; a send that
//     still fails is logged, counted and dropped, and the rest of the outbox
//     still goes out (later messages to a channel that stayed full for the
//     whole FlushTimeout are dropped without waiting again).
//
// The worker and the test client (package channelstest) both use a Runner, so
// tests see exactly what production does. A Runner is safe for concurrent
// use; its zero value is ready to use.
type Runner struct {
	// Logger receives consumer errors, panics and dropped sends. Nil means
	// slog.Default().
	Logger *slog.Logger
	// FlushTimeout bounds how long a send to a full channel is retried
	// during the flush. Zero means 2 s.
	FlushTimeout time.Duration
	// FlushInterval is the pause between those retries. Zero means 200 ms.
	FlushInterval time.Duration
	// MaxRetries is how many times a message may be put back by
	// ErrConsumeLater before it is dropped. Zero means 10.
	MaxRetries int

	consumed, failed, panics, unrouted, requeued, dropped atomic.Uint64
}

// RunnerStats are a Runner's counters.
type RunnerStats struct {
	Consumed uint64 // messages run
	Failed   uint64 // consumers that returned an error other than *CloseError
	Panics   uint64 // consumers that panicked
	Unrouted uint64 // messages no route matched (ErrNoRoute)
	Requeued uint64 // messages put back by ErrConsumeLater
	Dropped  uint64 // sends dropped: a flush that found the channel still full, or a requeue over MaxRetries
}

// Stats returns the runner's counters.
func (r *Runner) Stats() RunnerStats {
	return RunnerStats{
		Consumed: r.consumed.Load(),
		Failed:   r.failed.Load(),
		Panics:   r.panics.Load(),
		Unrouted: r.unrouted.Load(),
		Requeued: r.requeued.Load(),
		Dropped:  r.dropped.Load(),
	}
}

func (r *Runner) logger() *slog.Logger {
	if r.Logger != nil {
		return r.Logger
	}
	return slog.Default()
}

// Run runs c on m and flushes what it sent; it returns the consumer's error
// (a *PanicError after a panic). It blocks until the flush is done.
func (r *Runner) Run(ctx context.Context, c Consumer, m *Message) error {
	r.consumed.Add(1)
	cc := newConsumerCtx(ctx, m.Layer)
	ob := &cc.ob
	err := call(cc, c, m)
	if err != nil {
		r.handleError(ctx, c, m, ob, err)
	}
	items := ob.take()
	if err == nil && m.Channel == "websocket.connect" && m.ReplyChannel != "" && !ob.answered(items, m.ReplyChannel) {
		r.warnSilentConnect(c, m)
	}
	r.flush(ctx, m, items)
	return err
}

// warnSilentConnect tells of a "websocket.connect" consumer that returned
// nil having sent nothing towards the connection: the client's handshake
// waits for the gateway's connect timeout and is then refused.
func (r *Runner) warnSilentConnect(c Consumer, m *Message) {
	consumer := m.consumer
	if consumer == "" {
		consumer = ConsumerName(c)
	}
	r.logger().Warn("websocket.connect consumer returned without accepting, rejecting or closing the connection: "+
		"the handshake waits for the gateway's connect timeout and is then refused with 403; "+
		`reply {"accept": true}, or return channels.ErrDenyConnection`,
		"consumer", consumer, "path", m.Content.String("path"), "reply_channel", m.ReplyChannel)
}

func call(ctx context.Context, c Consumer, m *Message) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	return c.Consume(ctx, m)
}

func (r *Runner) handleError(ctx context.Context, c Consumer, m *Message, ob *outbox, err error) {
	consumer := m.consumer
	if consumer == "" {
		consumer = ConsumerName(c)
	}
	log := r.logger().With("channel", m.Channel, "consumer", consumer)
	var ce *CloseError
	var pe *PanicError
	switch {
	case errors.As(err, &ce):
		if err == ErrUnroutedConnection {
			log.Warn("no route handles this WebSocket's path: rejected with 403 (set Router.AcceptUnrouted to accept such connections)", "path", m.Content.String("path"))
		}
		if m.ReplyChannel == "" {
			log.Warn("consumer asked to close a connection but the message has no reply channel", "error", err)
			return
		}
		var code any = true
		if ce.Code != 0 {
			code = int64(ce.Code)
		}
		ob.add(pending{layer: m.Layer, target: m.ReplyChannel, content: Content{"close": code}})
	case errors.As(err, &pe):
		r.panics.Add(1)
		log.Error("consumer panicked", "panic", fmt.Sprint(pe.Value), "reply_channel", m.ReplyChannel, "stack", string(pe.Stack))
		switch {
		case strings.HasPrefix(m.ReplyChannel, "websocket."):
			ob.add(pending{layer: m.Layer, target: m.ReplyChannel, content: Content{"close": int64(1011)}})
		case strings.HasPrefix(m.ReplyChannel, "http.response"):
			ob.add(pending{layer: m.Layer, target: m.ReplyChannel, content: Content{
				"status":  int64(500),
				"headers": []any{[]any{[]byte("Content-Type"), []byte("text/plain; charset=utf-8")}},
				"content": []byte("Internal Server Error"),
			}})
		}
	case errors.Is(err, ErrConsumeLater):
		r.requeue(ctx, log, m)
	case errors.Is(err, ErrNoRoute):
		r.unrouted.Add(1)
		log.Error("no route matches the message; check your routing", "path", m.Content.String("path"))
	default:
		r.failed.Add(1)
		log.Error("consumer failed", "error", err)
	}
}

// requeue puts m back on its channel with "__retries__" incremented.
func (r *Runner) requeue(ctx context.Context, log *slog.Logger, m *Message) {
	max := r.MaxRetries
	if max == 0 {
		max = 10
	}
	n, _ := m.Content.Int("__retries__")
	n++
	if n > int64(max) {
		r.dropped.Add(1)
		log.Warn("dropping message: consumed later too many times", "retries", n-1)
		return
	}
	c := m.Content.Clone()
	c["__retries__"] = n
	var err error
	for range 10 {
		if err = m.Layer.Send(ctx, m.Channel, c); !errors.Is(err, ErrChannelFull) {
			break
		}
		if sleep(ctx, 50*time.Millisecond) != nil {
			break
		}
	}
	if err != nil {
		r.dropped.Add(1)
		log.Error("could not put the message back on its channel", "error", err)
		return
	}
	r.requeued.Add(1)
}

func (r *Runner) flush(ctx context.Context, m *Message, items []pending) {
	timeout, interval := r.FlushTimeout, r.FlushInterval
	if timeout == 0 {
		timeout = 2 * time.Second
	}
	if interval == 0 {
		interval = 200 * time.Millisecond
	}
	var stuck map[string]bool // targets still full after a whole retry window
	for _, p := range items {
		var err error
		if stuck[p.target] {
			// Do not wait FlushTimeout again for a channel that just
			// stayed full for that long: one stuck channel must not hold
			// the worker for FlushTimeout per message.
			r.dropped.Add(1)
			r.logger().Error("dropped a message the consumer sent: its channel stayed full", "channel", m.Channel, "consumer", m.consumer, "to", p.target)
			continue
		}
		var deadline time.Time // set at the first full channel
		for {
			switch {
			case p.group:
				err = p.layer.(GroupLayer).GroupSend(ctx, p.target, p.content)
			case p.encL != nil:
				err = p.encL.SendEncoded(ctx, p.target, p.enc)
			default:
				// The outbox holds its own normalized copy (taken at Send):
				// the layer need not copy it again.
				err = owned.Send(ctx, p.layer, p.target, p.content)
			}
			if !errors.Is(err, ErrChannelFull) {
				break
			}
			if deadline.IsZero() {
				deadline = time.Now().Add(timeout)
			}
			if time.Now().Add(interval).After(deadline) {
				break
			}
			if sleep(ctx, interval) != nil {
				break
			}
		}
		if err != nil {
			if errors.Is(err, ErrChannelFull) {
				if stuck == nil {
					stuck = make(map[string]bool)
				}
				stuck[p.target] = true
			}
			r.dropped.Add(1)
			kind := "channel"
			if p.group {
				kind = "group"
			}
			r.logger().Error("dropped a message the consumer sent", "channel", m.Channel, "consumer", m.consumer, "to_"+kind, p.target, "error", err)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
