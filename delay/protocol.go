package delay

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/internal/normal"
)

// Channel is the channel the delay server consumes: the ASGI Delay Protocol's
// "asgi.delay".
const Channel = "asgi.delay"

// IDKey is the key under which the delay server puts a message's ID (text)
// into the content it delivers. A message delivered twice (after a crash of
// the delay server between the send and the removal of the stored message)
// carries the same ID both times, so consumers that must not act twice can
// remember the IDs they have seen. A key of that name in the content given to
// the delay server is overwritten.
const IDKey = "__delay_id__"

// DefaultMaxDelay is the longest delay a server accepts by default, and the
// longest Send and SendConfirmed accept: 30 days.
const DefaultMaxDelay = 30 * 24 * time.Hour

// DefaultConfirmTimeout bounds SendConfirmed when its context has no
// deadline.
const DefaultConfirmTimeout = 30 * time.Second

// maxIDLength is the longest producer-chosen ID the server accepts.
const maxIDLength = 64

// Errors. The server's own rejections reach SendConfirmed callers as a
// *RejectError, which matches ErrRejected.
var (
	// ErrInvalidDelay is returned by Send and SendConfirmed for a negative
	// delay or one over DefaultMaxDelay.
	ErrInvalidDelay = errors.New("delay: invalid delay")

	// ErrRejected is matched (with errors.Is) by every *RejectError: the
	// delay server refused the message.
	ErrRejected = errors.New("delay: message rejected")

	// ErrNotConfirmed is returned by SendConfirmed when no delay server
	// confirmed the message before the context was done. The message may
	// still be stored and delivered later (a server may have stored it and
	// crashed before confirming).
	ErrNotConfirmed = errors.New("delay: no delay server confirmed the message")
)

// Reason says why the delay server rejected an "asgi.delay" message. The
// values are short snake_case words, usable as metric labels.
type Reason string

// The reasons a message is rejected.
const (
	ReasonMissingChannel  Reason = "missing_channel"       // no "channel" key
	ReasonMissingContent  Reason = "missing_content"       // no "content" key
	ReasonMissingDelay    Reason = "missing_delay"         // no "delay" key
	ReasonBadChannel      Reason = "invalid_channel"       // "channel" is not text, or not a valid channel name
	ReasonBadContent      Reason = "invalid_content"       // "content" is not a map
	ReasonBadDelay        Reason = "invalid_delay"         // "delay" is not an integer (whole floats are accepted)
	ReasonNegativeDelay   Reason = "negative_delay"        // "delay" < 0
	ReasonDelayTooLarge   Reason = "delay_too_large"       // "delay" over the server's MaxDelay
	ReasonBadID           Reason = "invalid_id"            // "id" is not text of 1 to 64 name characters
	ReasonBadReplyChannel Reason = "invalid_reply_channel" // "reply_channel" is not a valid channel name
)

// RejectError is the delay server's refusal of one message, as
// SendConfirmed reports it. It matches ErrRejected with errors.Is.
type RejectError struct {
	Reason Reason // why
	Detail string // what was wrong, for people
}

// Error implements error.
func (e *RejectError) Error() string {
	if e.Detail == "" {
		return fmt.Sprintf("delay: message rejected: %s", e.Reason)
	}
	return fmt.Sprintf("delay: message rejected: %s: %s", e.Reason, e.Detail)
}

// Is reports whether target is ErrRejected.
func (e *RejectError) Is(target error) bool { return target == ErrRejected }

// request is a validated "asgi.delay" message.
type request struct {
	channel string
	content channels.Content
	delay   time.Duration
	id      string // producer-chosen, or ""
	reply   string // where to confirm, or ""
}

// parseRequest validates an "asgi.delay" message. The reply channel and ID
// are returned even when the message is rejected, so that the producer can
// be told.
func parseRequest(c channels.Content, maxDelay time.Duration) (request, *RejectError) {
	var r request
	if v, ok := c["reply_channel"]; ok && v != nil {
		s, isText := v.(string)
		if !isText || channels.ValidateChannelName(s) != nil {
			return r, &RejectError{ReasonBadReplyChannel, fmt.Sprintf("reply_channel %s", describe(v))}
		}
		r.reply = s
	}
	if v, ok := c["id"]; ok && v != nil {
		s, isText := v.(string)
		if !isText || !validID(s) {
			return r, &RejectError{ReasonBadID, fmt.Sprintf("id %s (1 to %d letters, digits, '-', '_' or '.')", describe(v), maxIDLength)}
		}
		r.id = s
	}
	for _, k := range []struct {
		key    string
		reason Reason
	}{{"channel", ReasonMissingChannel}, {"content", ReasonMissingContent}, {"delay", ReasonMissingDelay}} {
		if _, ok := c[k.key]; !ok {
			return r, &RejectError{k.reason, fmt.Sprintf("the message has no %q key", k.key)}
		}
	}
	name, ok := c["channel"].(string)
	if !ok {
		return r, &RejectError{ReasonBadChannel, fmt.Sprintf("channel %s is not text", describe(c["channel"]))}
	}
	if err := channels.ValidateChannelName(name); err != nil {
		return r, &RejectError{ReasonBadChannel, err.Error()}
	}
	r.channel = name
	switch m := c["content"].(type) {
	case map[string]any:
		r.content = channels.Content(m)
	case channels.Content:
		r.content = m
	default:
		return r, &RejectError{ReasonBadContent, fmt.Sprintf("content %s is not a map", describe(c["content"]))}
	}
	if r.content == nil {
		r.content = channels.Content{}
	}
	ms, ok := delayMillis(c["delay"])
	if !ok {
		return r, &RejectError{ReasonBadDelay, fmt.Sprintf("delay %s is not an integer number of milliseconds", describe(c["delay"]))}
	}
	if ms < 0 {
		return r, &RejectError{ReasonNegativeDelay, fmt.Sprintf("delay %d ms is negative", ms)}
	}
	if maxMS := maxDelay.Milliseconds(); ms > maxMS {
		return r, &RejectError{ReasonDelayTooLarge, fmt.Sprintf("delay %d ms is over the limit of %d ms (%s)", ms, maxMS, maxDelay)}
	}
	r.delay = time.Duration(ms) * time.Millisecond
	return r, nil
}

// delayMillis reads an integer delay: any Go integer type, or a float64 that
// is a whole number (JSON decoders produce those).
func delayMillis(v any) (int64, bool) {
	switch v.(type) {
	case bool, nil, string, []byte:
		return 0, false
	case float64:
		f := v.(float64)
		switch {
		case f != math.Trunc(f): // also NaN
			return 0, false
		case f >= math.MaxInt64:
			return math.MaxInt64, true // reported as too large
		case f <= math.MinInt64:
			return math.MinInt64, true // reported as negative
		}
	}
	return channels.Content{"d": v}.Int("d")
}

func describe(v any) string {
	switch v := v.(type) {
	case string:
		if len(v) > 60 {
			return fmt.Sprintf("%q... (text)", v[:60])
		}
		return fmt.Sprintf("%q (text)", v)
	case nil:
		return "null"
	}
	s := fmt.Sprintf("%v", v)
	if len(s) > 60 {
		s = s[:60] + "..."
	}
	return fmt.Sprintf("%s (%T)", s, v)
}

func validID(s string) bool {
	if s == "" || len(s) > maxIDLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '-' || b == '_' || b == '.') {
			return false
		}
	}
	return true
}

// NewID returns a new random message ID: 32 hexadecimal characters (128 bits
// from crypto/rand). The server gives one to every message that arrives
// without an "id".
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Request returns the "asgi.delay" message that asks a delay server to send
// content to channel after the given delay: {"channel": channel, "content":
// content, "delay": milliseconds}. The delay is rounded up to a whole
// millisecond, so the message never arrives early. It checks the channel
// name (an error wrapping channels.ErrInvalidName) and the delay (0 to
// DefaultMaxDelay, else ErrInvalidDelay). The content is not copied.
func Request(channel string, content channels.Content, after time.Duration) (channels.Content, error) {
	if err := channels.ValidateChannelName(channel); err != nil {
		return nil, fmt.Errorf("delay: %w", err)
	}
	if after < 0 || after > DefaultMaxDelay {
		return nil, fmt.Errorf("%w: %s (must be between 0 and %s)", ErrInvalidDelay, after, DefaultMaxDelay)
	}
	if content == nil {
		content = channels.Content{}
	}
	ms := (after + time.Millisecond - 1) / time.Millisecond
	return channels.Content{"channel": channel, "content": map[string]any(content), "delay": int64(ms)}, nil
}

// Send asks the delay server to send content to channel after the given
// delay, by sending an "asgi.delay" message on layer. It does not wait for
// the delay server: the message is stored when a server receives it, and
// messages sitting on "asgi.delay" when the layer loses them (or that expire
// there while no delay server runs) are lost. On the Redis layer a server
// that crashes after receiving a message and before storing it loses
// nothing (it receives with redislayer's ReceiveHeld, see the package
// documentation, Guarantees); on other layers such a crash loses it. Use
// SendConfirmed to know that a message is stored.
//
// Inside a consumer, Send behaves like every other send: the message waits
// in the consumer's outbox and goes to the layer when the consumer returns,
// unless channels.Immediately is given. Holding it keeps consumer atomicity:
// a short delay can never deliver the message before the consumer's other
// effects (a saved session, a reply, group changes) have happened. The delay
// counts from when the delay server receives the message, so the consumer's
// run time is added to it. A nil layer means the layer of the message being
// consumed.
//
// The content is copied before Send returns. Send is safe for concurrent use
// and does not block, except that the layer's Send may do I/O.
func Send(ctx context.Context, layer channels.Layer, channel string, content channels.Content, after time.Duration, opts ...channels.SendOption) error {
	msg, err := Request(channel, content, after)
	if err != nil {
		return err
	}
	if err := (channels.Channel{Name: Channel, Layer: layer}).Send(ctx, msg, opts...); err != nil {
		return fmt.Errorf("delay: send to %s: %w", Channel, err)
	}
	return nil
}

// SendConfirmed is Send that returns only once a delay server has committed
// the message to its database, and returns the message's ID (the IDKey
// value it will be delivered with). It closes the gap that Send leaves on
// layers that cannot hold received messages (all but Redis): their Receive
// is at-most-once, so a message a delay server has received but not yet
// committed is lost if that server crashes.
//
// It sends the request with a new ID and a reply channel of its own, and
// waits for the server's confirmation; when none comes within a second (then
// 2, 4, up to 10 seconds) it sends the request again with the same ID and the
// delay reduced by the time already spent, so that the due time stays put.
// A server stores an ID once: repeated requests are confirmed without being
// stored again, including after delivery for the server's DedupWindow. A full
// "asgi.delay" channel is retried too. It gives up when ctx is done, with an
// error wrapping ErrNotConfirmed; a context without a deadline gets
// DefaultConfirmTimeout. A server's refusal is returned as a *RejectError.
//
// SendConfirmed always sends at once, also inside a consumer (it has to wait
// for the answer), and blocks until confirmed. It needs a layer shared with
// the delay server that supports NewChannel with a '?' pattern. It is safe for
// concurrent use.
func SendConfirmed(ctx context.Context, layer channels.Layer, channel string, content channels.Content, after time.Duration) (string, error) {
	msg, err := Request(channel, content, after)
	if err != nil {
		return "", err
	}
	if layer == nil {
		return "", fmt.Errorf("delay: %w", channels.ErrNoLayer)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultConfirmTimeout)
		defer cancel()
	}
	// The request is normalised once: the retries send the same content.
	msg, _, err = normal.Normalize(msg)
	if err != nil {
		return "", fmt.Errorf("delay: %w", err)
	}
	reply, err := layer.NewChannel(ctx, "delay.confirm?")
	if err != nil {
		return "", fmt.Errorf("delay: new reply channel: %w", err)
	}
	id := NewID()
	msg["id"] = id
	msg["reply_channel"] = reply
	start := time.Now()
	wait := time.Second
	var last error
	for attempt := 0; ; attempt++ {
		left := max(after-time.Since(start), 0)
		msg["delay"] = int64((left + time.Millisecond - 1) / time.Millisecond)
		err := layer.Send(ctx, Channel, msg)
		switch {
		case err == nil:
			done, err := awaitConfirmation(ctx, layer, reply, id, wait)
			if done || err != nil {
				return id, err
			}
			last = fmt.Errorf("no confirmation within %s", wait)
		case errors.Is(err, channels.ErrChannelFull):
			last = err
			if sleep(ctx, min(wait, 250*time.Millisecond)) != nil {
				return id, fmt.Errorf("%w after %d attempts: %w (last: %v)", ErrNotConfirmed, attempt+1, ctx.Err(), last)
			}
			continue
		case ctx.Err() != nil:
			return id, fmt.Errorf("%w after %d attempts: %w (last: %v)", ErrNotConfirmed, attempt+1, ctx.Err(), last)
		default:
			return id, fmt.Errorf("delay: send to %s: %w", Channel, err)
		}
		if ctx.Err() != nil {
			return id, fmt.Errorf("%w after %d attempts: %w (last: %v)", ErrNotConfirmed, attempt+1, ctx.Err(), last)
		}
		wait = min(2*wait, 10*time.Second)
	}
}

// awaitConfirmation waits up to wait for the answer about id on reply. It
// reports true with the server's verdict, or false when none came in time.
func awaitConfirmation(ctx context.Context, layer channels.Layer, reply, id string, wait time.Duration) (bool, error) {
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		_, c, err := layer.Receive(wctx, reply)
		if err != nil {
			if ctx.Err() != nil {
				return false, fmt.Errorf("%w: %w", ErrNotConfirmed, ctx.Err())
			}
			if wctx.Err() != nil {
				return false, nil
			}
			return false, fmt.Errorf("delay: receive confirmation: %w", err)
		}
		if c == nil || c.String("id") != id {
			continue
		}
		if r := c.String("error"); r != "" {
			return true, &RejectError{Reason: Reason(r), Detail: c.String("detail")}
		}
		if c.Bool("stored") {
			return true, nil
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
