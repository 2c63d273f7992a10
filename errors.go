package channels

import (
	"errors"
	"fmt"

	"github.com/gochannels/channels/internal/naming"
	"github.com/gochannels/channels/internal/normal"
)

// Sentinel errors. Layers and helpers wrap them with %w, so test with
// errors.Is.
var (
	// ErrChannelFull is returned by Send when the channel holds as many
	// messages as its capacity allows. Send never blocks waiting for room.
	ErrChannelFull = errors.New("channels: channel full")

	// ErrMessageTooLarge is returned by Send and GroupSend when a message's
	// encoded size is over the layer's limit.
	ErrMessageTooLarge = errors.New("channels: message too large")

	// ErrInvalidName is returned for a channel name, group name or
	// NewChannel pattern that breaks the naming rules.
	ErrInvalidName = naming.ErrInvalidName

	// ErrInvalidContent is returned when a message holds a value of a type
	// that cannot travel over a layer.
	ErrInvalidContent = normal.ErrInvalidContent

	// ErrNoRoute is returned by Router.Consume when no route matches a
	// message.
	ErrNoRoute = errors.New("channels: no route matches the message")

	// ErrNoLayer is returned by Channel.Send and Group operations that have
	// no layer: none was set and the call is not made inside a consumer.
	ErrNoLayer = errors.New("channels: no channel layer")

	// ErrGroupsUnsupported is returned by Group operations on a layer that
	// does not implement GroupLayer.
	ErrGroupsUnsupported = errors.New("channels: layer does not support groups")

	// ErrNoReplyChannel is returned by Message.Reply when the message carries
	// no reply_channel.
	ErrNoReplyChannel = errors.New("channels: message has no reply channel")

	// ErrLayerClosed is returned by calls on a layer after Close.
	ErrLayerClosed = errors.New("channels: layer closed")

	// ErrUnavailable is matched (errors.Is) by the errors of layer calls
	// that failed because the layer's server could not be reached or did
	// not answer in time, whatever the layer: the call may be retried, and
	// an HTTP handler can answer 503 Service Unavailable without importing
	// the layer's package.
	ErrUnavailable = errors.New("channels: layer unavailable")

	// ErrConsumeLater, returned by a consumer, asks the worker to put the
	// message back on its channel to be consumed again later (at most
	// Runner.MaxRetries times; the count travels in the "__retries__" key).
	ErrConsumeLater = errors.New("channels: consume later")
)

// ErrDenyConnection, returned by a consumer of "websocket.connect", rejects
// the connection: the client gets HTTP 403 and the socket never opens. It is
// a *CloseError with no code, so it also closes an open socket with 1000
// when returned from other WebSocket consumers.
var ErrDenyConnection error = &CloseError{}

// CloseError, returned by a consumer of a WebSocket message, closes that
// connection. The runner sends {"close": Code} to the message's reply channel
// after the messages the consumer sent (Code 0 sends {"close": true}, which
// means 1000). Returned from a "websocket.connect" consumer it rejects the
// handshake with HTTP 403; the code is then not visible to the client.
//
// Application codes are 1000 or 3000–4999 (see ValidCloseCode). The
// gateway also accepts the RFC 6455 codes an endpoint may send for a reason:
// 1001 (going away), 1003 (unsupported data), 1007 (invalid payload, sent
// by the JSON consumers for a malformed frame), 1008 (policy violation) and
// 1011 (internal error, which the Runner sends after a consumer panics);
// other codes are refused by interface servers.
type CloseError struct {
	Code   int    // WebSocket close code; 0 means 1000
	Reason string // for logs; not sent
}

// Error implements error.
func (e *CloseError) Error() string {
	code := e.Code
	if code == 0 {
		code = 1000
	}
	if e.Reason != "" {
		return fmt.Sprintf("channels: close websocket with code %d: %s", code, e.Reason)
	}
	return fmt.Sprintf("channels: close websocket with code %d", code)
}

// ValidCloseCode reports whether an application may close a WebSocket with
// code: 1000 or 3000–4999.
func ValidCloseCode(code int) bool {
	return code == 1000 || (code >= 3000 && code <= 4999)
}

// PanicError is what a consumer's panic becomes once the runner has recovered
// it.
type PanicError struct {
	Value any    // the value passed to panic
	Stack []byte // the panicking goroutine's stack
}

// Error implements error.
func (e *PanicError) Error() string {
	return fmt.Sprintf("channels: consumer panicked: %v", e.Value)
}
