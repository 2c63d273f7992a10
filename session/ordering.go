package session

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/internal/normal"
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

// WaitChannel returns the channel where the message with the given order
// of the connection with the given reply channel waits for its turn:
// "__wait__.", the reply channel with its '!' replaced by '?' (Channels
// 1.1.3's fix: a single-reader channel any worker can receive from), then
// "." and the order. Django Channels parked every early message of a
// connection on one channel ("__wait__.<reply channel>") and, after each
// message, sent them all back to be checked again; one channel per order
// lets the worker that advances the order take exactly the message it needs.
func WaitChannel(replyChannel string, order int64) string {
	return "__wait__." + strings.Replace(replyChannel, "!", "?", 1) + "." + strconv.FormatInt(order, 10)
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
//   - Order equal to the next expected: the consumer runs, in a
//     channels.Runner of its own (Manager.Runner), so that what it sends is
//     flushed as soon as it returns; its session changes are saved before
//     that flush. If it succeeds (or returns a *channels.CloseError, so
//     that the disconnect still runs), the next order is advanced and saved
//     after the flush, so replies leave in order: no later message of the
//     connection runs before this one's sends are out. (A consumer that
//     changed the session thus costs two saves, one that did not, one.)
//     Then, if the message with the new next order
//     is parked, it runs too, in the same call, when this same middleware
//     parked it (on any channel, with the path values its route captured;
//     a message parked by another EnforceOrdering is sent back to its
//     channel, where routing finds its consumer), and so on. Sending a
//     frame back instead could lose it: its channel may be full of the
//     connection's later frames, which all wait for it. If the consumer fails, the next order is not
//     advanced, so later messages stay parked until they expire, which is
//     the reference behaviour. The runner logs and handles the consumer's
//     error (a close, a requeue for channels.ErrConsumeLater, a 1011 close
//     after a panic), so the middleware itself returns nil.
//   - Order above the next expected: the message is parked on
//     WaitChannel(reply channel, order), with its channel under
//     "original_channel" (and its path values), and the consumer does not
//     run. Then the session
//     is read again, and if the next expected order is now this one (its
//     predecessor finished meanwhile), the message is taken back and run
//     (Channels 1.1's fix of this lost wake-up). A message more than
//     Manager.MaxAhead orders early, or one whose wait channel is full,
//     waits for its predecessors first (holding its worker, which slows the
//     socket down) and runs if its turn comes; after Manager.ParkTimeout it
//     returns channels.ErrConsumeLater and the worker's runner puts it back
//     on its own channel.
//   - Order below the next expected: that order has already run, so the
//     message is a duplicate; it is logged and dropped. (Django Channels
//     bounced such messages between two channels until they expired.)
//
// Nothing spins and nothing is scanned: a parked message is taken only by
// the worker that makes it due, or by its own parker when that worker
// finished first.
//
// A consumer is told apart from others by channels.ConsumerName; two
// consumers of the same name that both enforce ordering on one channel of
// one connection (routed apart by a filter on something else than the
// path) must be given distinct names with channels.Namer.
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
		o := &orderer{m: m, next: next, id: channels.ConsumerName(next)}
		o.runner = m.Runner
		if o.runner == nil {
			o.runner = &channels.Runner{Logger: m.Logger}
		}
		return named{"EnforceOrdering", next, func(ctx context.Context, msg *channels.Message) error {
			return m.withChannel(ctx, msg, func(ctx context.Context, s *Session) error {
				return o.consume(ctx, msg, s)
			})
		}}
	}, nil
}

// Keys EnforceOrdering adds to parked messages.
const (
	originalChannelKey  = "original_channel"
	orderingConsumerKey = "__ordering_consumer__"
	pathValuesKey       = "__path_values__"
)

type orderer struct {
	m      *Manager
	next   channels.Consumer
	id     string
	runner *channels.Runner
}

func (o *orderer) consume(ctx context.Context, msg *channels.Message, s *Session) error {
	if v, _ := ctx.Value(orderingCtxKey{}).(string); v == msg.ReplyChannel {
		return o.next.Consume(ctx, msg)
	}
	order, ok := msg.Content.Int("order")
	if !ok {
		return fmt.Errorf("%w (channel %q)", ErrNoOrder, msg.Channel)
	}
	want, _ := s.GetInt(NextOrderKey)
	switch {
	case order == want:
		return o.runAndCatchUp(ctx, msg, s, order)
	case order < want:
		o.duplicate(msg.Channel, order, want)
		return nil
	default:
		return o.park(ctx, msg, s, order)
	}
}

func (o *orderer) duplicate(where string, order, want int64) {
	o.m.duplicates.Add(1)
	o.m.logger().Warn("session: dropping a message whose order has already been consumed (a duplicate)",
		"channel", where, "order", order, "next_order", want)
}

func (o *orderer) runAndCatchUp(ctx context.Context, msg *channels.Message, s *Session, order int64) error {
	if !o.run(ctx, msg, s, order) {
		return nil
	}
	return o.catchUp(ctx, msg, s)
}

// run runs an in-order message in a runner of its own and reports whether
// the next order advanced. The consumer's session changes are saved before
// its sends are flushed (checklist A2.13); the next order is advanced after
// the flush, so that no later message of the connection can run, and send,
// before this one's sends are out.
func (o *orderer) run(ctx context.Context, msg *channels.Message, s *Session, order int64) bool {
	succeeded := false
	c := named{"EnforceOrdering", o.next, func(ctx context.Context, msg *channels.Message) (err error) {
		saved := false
		defer func() {
			if !saved { // the consumer panicked: keep what it changed
				_ = o.m.saveChannel(ctx, s)
			}
		}()
		err = o.next.Consume(context.WithValue(ctx, orderingCtxKey{}, msg.ReplyChannel), msg)
		var ce *channels.CloseError
		succeeded = err == nil || errors.As(err, &ce)
		saved = true
		if serr := o.m.saveChannel(ctx, s); serr != nil {
			succeeded = false
			return errors.Join(err, fmt.Errorf("session: save channel session: %w", serr))
		}
		return err
	}}
	_ = o.runner.Run(ctx, c, msg)
	if !succeeded {
		return false
	}
	s.Put(NextOrderKey, order+1)
	if err := o.m.saveChannel(ctx, s); err != nil {
		o.m.logger().Error("session: saving the next order failed; later messages of the connection stay parked",
			"reply_channel", msg.ReplyChannel, "order", order, "error", err)
		return false
	}
	return true
}

func (o *orderer) parkTimeout() time.Duration {
	if o.m.ParkTimeout > 0 {
		return o.m.ParkTimeout
	}
	return DefaultParkTimeout
}

// park puts an early message on its wait channel, then runs it if its
// turn came meanwhile.
func (o *orderer) park(ctx context.Context, msg *channels.Message, s *Session, order int64) error {
	wait := WaitChannel(msg.ReplyChannel, order)
	c := msg.Content.Clone()
	c[originalChannelKey] = msg.Channel
	c[orderingConsumerKey] = o.id
	if pv := msg.PathValues(); len(pv) > 0 {
		m := make(map[string]any, len(pv))
		for k, v := range pv {
			m[k] = v
		}
		c[pathValuesKey] = m
	}
	ahead := int64(o.m.MaxAhead)
	if ahead <= 0 {
		ahead = DefaultMaxAhead
	}
	now, _ := s.GetInt(NextOrderKey)
	deadline := time.Now().Add(o.parkTimeout())
	for pause := 10 * time.Millisecond; ; pause = min(2*pause, 200*time.Millisecond) {
		full := false
		if order-now <= ahead {
			err := msg.Layer.Send(ctx, wait, c)
			if err == nil {
				break
			}
			if !errors.Is(err, channels.ErrChannelFull) {
				return fmt.Errorf("session: park message %d on %q: %w", order, wait, err)
			}
			full = true
		}
		if time.Now().Add(pause).After(deadline) {
			why := "too far ahead of the next order"
			if full {
				why = "wait channel full"
			}
			o.m.logger().Warn("session: "+why+"; the message will be consumed again later",
				"wait_channel", wait, "order", order, "next_order", now)
			return fmt.Errorf("session: park message %d on %q (%s): %w", order, wait, why, channels.ErrConsumeLater)
		}
		if err := sleep(ctx, pause); err != nil {
			return err
		}
		var err error
		if now, err = o.m.refresh(ctx, s); err != nil {
			return err
		}
		switch {
		case now == order:
			return o.runAndCatchUp(ctx, msg, s, order)
		case now > order:
			o.duplicate(msg.Channel, order, now)
			return nil
		}
	}
	now, err := o.m.refresh(ctx, s)
	if err != nil {
		return err
	}
	if now == order {
		return o.catchUp(ctx, msg, s)
	}
	return nil
}

// refresh reads the channel session again (another worker may have run
// messages since it was loaded) and returns its next order.
func (m *Manager) refresh(ctx context.Context, s *Session) (int64, error) {
	b, found, err := m.Store.FindCtx(ctx, s.storeKey)
	if err != nil {
		return 0, fmt.Errorf("session: reload channel session: %w", err)
	}
	var values map[string]any
	if found {
		if _, values, err = m.codec().Decode(b); err != nil {
			return 0, fmt.Errorf("session: reload channel session: %w", err)
		}
	}
	s.replace(values)
	n, _ := normal.ToInt(values[NextOrderKey])
	return n, nil
}

// catchUp runs the parked messages that are now due, one after the other,
// for as long as the next one is parked.
func (o *orderer) catchUp(ctx context.Context, msg *channels.Message, s *Session) error {
	for {
		k, _ := s.GetInt(NextOrderKey)
		wait := WaitChannel(msg.ReplyChannel, k)
		_, c, err := channels.Poll(ctx, msg.Layer, wait)
		if err != nil {
			return fmt.Errorf("session: take message %d from %q: %w", k, wait, err)
		}
		if c == nil {
			return nil
		}
		orig, _ := c[originalChannelKey].(string)
		id, _ := c[orderingConsumerKey].(string)
		pv, _ := c[pathValuesKey].(map[string]any)
		delete(c, originalChannelKey)
		delete(c, orderingConsumerKey)
		delete(c, pathValuesKey)
		if id != o.id || orig == "" {
			// Parked by another EnforceOrdering: only routing can find
			// its consumer.
			return o.m.requeue(ctx, msg.Layer, orig, c)
		}
		// Parked by this very middleware, so routing chose o.next for it
		// (on whichever channel): run it here, with the path values its
		// route captured. Putting it back on its channel instead could
		// lose it: that channel may be full of the connection's later
		// messages, which wait for this one.
		im := channels.NewMessage(msg.Layer, orig, c)
		for name, v := range pv {
			if s, ok := v.(string); ok {
				im.SetPathValue(name, s)
			}
		}
		if !o.run(ctx, im, s, k) {
			return nil
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// requeue sends a parked message back to its original channel: through the
// outbox inside a consumer, else at once with retries.
func (m *Manager) requeue(ctx context.Context, l channels.Layer, orig string, c channels.Content) error {
	if orig == "" {
		m.orphans.Add(1)
		m.logger().Error("session: dropping a parked message without original_channel")
		return nil
	}
	if channels.InConsumer(ctx) {
		if err := (channels.Channel{Name: orig, Layer: l}).Send(ctx, c); err != nil {
			return fmt.Errorf("session: requeue on %q: %w", orig, err)
		}
		return nil
	}
	if err := sendRetry(ctx, l, orig, c, 2*time.Second); err != nil {
		return fmt.Errorf("session: requeue on %q: %w", orig, err)
	}
	return nil
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
