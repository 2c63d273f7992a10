package session

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gochannels/channels"
)

// Ordering selects how a consumer's WebSocket messages are ordered.
type Ordering int

const (
	// NoOrdering runs messages as they come. Consumer atomicity already
	// guarantees that a connect finishes before the socket's first receive
	// can be consumed, and one worker runs one connection's messages in
	// arrival order.
	NoOrdering Ordering = iota
	// StrictOrdering runs every message of a connection in the order its
	// gateway numbered them, across workers and processes (EnforceOrdering).
	StrictOrdering
	// SlightOrdering was removed in Channels 1.0: it is always on. Asking
	// for it is an error (ErrSlightOrdering).
	SlightOrdering
)

// String returns the ordering's name.
func (o Ordering) String() string {
	switch o {
	case NoOrdering:
		return "none"
	case StrictOrdering:
		return "strict"
	case SlightOrdering:
		return "slight"
	}
	return fmt.Sprintf("Ordering(%d)", int(o))
}

var (
	// ErrSlightOrdering is returned when slight ordering is asked for.
	ErrSlightOrdering = errors.New("session: slight ordering is now always on (consumer atomicity finishes connect before any receive); remove it, or use StrictOrdering")

	// ErrNoOrder is returned by EnforceOrdering's middleware for a message
	// without an integer "order" key.
	ErrNoOrder = errors.New("session: message has no integer order key (only WebSocket messages from a gateway are numbered)")
)

// NextOrderKey is the channel session key holding the order of the next
// message to run, Django Channels' name.
const NextOrderKey = "__channels_next_order"

// maxDrain bounds how many parked messages one drain moves.
const maxDrain = 1000

// WaitChannel returns the channel where out-of-order messages of the
// connection with the given reply channel wait: "__wait__." followed by the
// reply channel with its '!' replaced by '?' (a single-reader channel that
// any worker can receive from; Channels 1.1.3's fix).
func WaitChannel(replyChannel string) string {
	return "__wait__." + strings.Replace(replyChannel, "!", "?", 1)
}

// EnforceOrdering returns middleware that runs one connection's messages
// strictly in the order of their "order" key (0 for the connect, then 1, 2,
// ... for the frames and the disconnect), even when several workers, in
// several processes, receive them out of order. It implies ChannelSession
// (outermost, so it applies before any other session middleware) and keeps
// the next expected order under NextOrderKey. Only StrictOrdering is
// accepted; SlightOrdering gives ErrSlightOrdering.
//
// For each message:
//
//   - No integer order: an error wrapping ErrNoOrder.
//   - Order equal to the next expected: the consumer runs. If it succeeds
//     (or returns a *channels.CloseError), the next order is advanced and
//     the session saved at once, then every message parked on the wait
//     channel (WaitChannel) is sent back to its original channel, through
//     the outbox: after the replies of this message, to be checked again by
//     whichever worker receives it. If the consumer fails, the next order
//     is not advanced, so later messages stay parked (and expire): that is
//     the reference behaviour.
//   - Order above the next expected: the message is parked on the wait
//     channel with its channel in "original_channel", and the consumer does
//     not run. Then the session is read again, and if the next expected
//     order is now this one (its predecessor finished meanwhile), the wait
//     channel is drained as above (Channels 1.1's fix of a lost wake-up). A
//     full wait channel is retried for Manager.ParkTimeout with growing
//     pauses; after that the middleware returns channels.ErrConsumeLater
//     and the runner puts the message back on its own channel.
//   - Order below the next expected: that order has already run, so the
//     message is a duplicate; it is logged and dropped. (Django Channels
//     bounced such messages between the two channels until they expired.)
//
// Nothing spins: a message is re-examined only when a predecessor finishes.
// Sends of drained messages are the consumer's sends, so a channel that is
// still full after the runner's flush timeout is logged and counted by the
// runner (channels.RunnerStats.Dropped), never dropped silently.
//
// Nested inside another EnforceOrdering for the same connection (a
// demultiplexer's sub-consumer), the middleware just runs the consumer.
func (m *Manager) EnforceOrdering(mode Ordering) (channels.Middleware, error) {
	switch mode {
	case StrictOrdering:
	case SlightOrdering:
		return nil, ErrSlightOrdering
	default:
		return nil, fmt.Errorf("session: EnforceOrdering(%v): only StrictOrdering can be enforced", mode)
	}
	return func(next channels.Consumer) channels.Consumer {
		return named{"EnforceOrdering", next, func(ctx context.Context, msg *channels.Message) error {
			return m.withChannel(ctx, msg, func(ctx context.Context, s *Session) error {
				return m.ordered(ctx, msg, s, next)
			})
		}}
	}, nil
}

func (m *Manager) ordered(ctx context.Context, msg *channels.Message, s *Session, next channels.Consumer) error {
	if v, _ := ctx.Value(orderingCtxKey{}).(string); v == msg.ReplyChannel {
		return next.Consume(ctx, msg)
	}
	order, ok := msg.Content.Int("order")
	if !ok {
		return fmt.Errorf("%w (channel %q)", ErrNoOrder, msg.Channel)
	}
	want, _ := s.GetInt(NextOrderKey)
	switch {
	case order == want:
		err := next.Consume(context.WithValue(ctx, orderingCtxKey{}, msg.ReplyChannel), msg)
		var ce *channels.CloseError
		if err != nil && !errors.As(err, &ce) {
			return err
		}
		s.Put(NextOrderKey, order+1)
		if serr := m.saveChannel(ctx, s); serr != nil {
			return errors.Join(err, fmt.Errorf("session: save next order: %w", serr))
		}
		return errors.Join(err, m.drain(ctx, msg))
	case order < want:
		m.logger().Warn("session: dropping a message whose order has already been consumed (a duplicate)",
			"channel", msg.Channel, "reply_channel", msg.ReplyChannel, "order", order, "next_order", want)
		return nil
	default:
		return m.park(ctx, msg, s, order)
	}
}

// park puts an early message on the wait channel, then drains it if its
// turn came meanwhile.
func (m *Manager) park(ctx context.Context, msg *channels.Message, s *Session, order int64) error {
	wait := WaitChannel(msg.ReplyChannel)
	c := msg.Content.Clone()
	c["original_channel"] = msg.Channel
	timeout := m.ParkTimeout
	if timeout <= 0 {
		timeout = DefaultParkTimeout
	}
	if err := sendRetry(ctx, msg.Layer, wait, c, timeout); err != nil {
		if errors.Is(err, channels.ErrChannelFull) {
			m.logger().Warn("session: wait channel full; the message will be consumed again later",
				"wait_channel", wait, "order", order)
			return fmt.Errorf("session: park message %d on full %q: %w", order, wait, channels.ErrConsumeLater)
		}
		return fmt.Errorf("session: park message %d on %q: %w", order, wait, err)
	}
	m.logger().Debug("session: message parked until its predecessors run", "wait_channel", wait, "order", order)
	b, found, err := m.Store.FindCtx(ctx, s.storeKey)
	if err != nil {
		return fmt.Errorf("session: reload next order: %w", err)
	}
	var now int64
	if found {
		if _, values, err := m.codec().Decode(b); err == nil {
			now, _ = toInt(values[NextOrderKey])
		}
	}
	if now == order {
		return m.drain(ctx, msg)
	}
	return nil
}

// drain sends every message waiting on the connection's wait channel back
// to its original channel.
func (m *Manager) drain(ctx context.Context, msg *channels.Message) error {
	wait := WaitChannel(msg.ReplyChannel)
	for range maxDrain {
		_, c, err := channels.Poll(ctx, msg.Layer, wait)
		if err != nil {
			return fmt.Errorf("session: drain %q: %w", wait, err)
		}
		if c == nil {
			return nil
		}
		orig, _ := c["original_channel"].(string)
		delete(c, "original_channel")
		if orig == "" {
			m.logger().Error("session: dropping a parked message without original_channel", "wait_channel", wait)
			continue
		}
		if err := m.requeue(ctx, msg.Layer, wait, orig, c); err != nil {
			return err
		}
	}
	m.logger().Warn("session: drain stopped early; the rest waits for the next drain", "wait_channel", wait, "moved", maxDrain)
	return nil
}

// requeue sends a parked message back to its channel: through the outbox
// inside a consumer, else at once with retries, putting it back on the wait
// channel if that channel stays full.
func (m *Manager) requeue(ctx context.Context, l channels.Layer, wait, orig string, c channels.Content) error {
	if channels.InConsumer(ctx) {
		if err := (channels.Channel{Name: orig, Layer: l}).Send(ctx, c); err != nil {
			return fmt.Errorf("session: requeue on %q: %w", orig, err)
		}
		return nil
	}
	err := sendRetry(ctx, l, orig, c, 2*time.Second)
	if err == nil {
		return nil
	}
	c["original_channel"] = orig
	if perr := l.Send(ctx, wait, c); perr == nil {
		return fmt.Errorf("session: requeue on %q failed, message left on %q: %w", orig, wait, err)
	}
	m.logger().Error("session: lost a parked message: its channel and the wait channel are full", "channel", orig, "error", err)
	return fmt.Errorf("session: requeue on %q: %w", orig, err)
}

// sendRetry sends at once, retrying ErrChannelFull with growing pauses
// (10 ms doubling, at most 200 ms) for up to timeout.
func sendRetry(ctx context.Context, l channels.Layer, channel string, c channels.Content, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	pause := 10 * time.Millisecond
	for {
		err := l.Send(ctx, channel, c)
		if !errors.Is(err, channels.ErrChannelFull) || time.Now().Add(pause).After(deadline) {
			return err
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		pause = min(2*pause, 200*time.Millisecond)
	}
}
