// Package channelstest has tools for testing consumers, as net/http/httptest
// has for handlers.
//
// A Client sends messages to a fresh in-memory layer, runs your consumers on
// them through the same middleware and consumer-atomicity path a worker uses,
// and reads what they sent back:
//
//	c := channelstest.NewClient(t, router)
//	c.SendAndConsume("websocket.connect", channels.Content{"path": "/chat/lobby/"})
//	reply := c.Receive() // {"accept": true}
//
// A Server runs a real gateway and worker on a local socket, and a WSClient
// talks to it as a browser would, for tests of what is visible on the wire:
//
//	srv := channelstest.NewServer(t, router)
//	ws := srv.DialWS("/chat/lobby/")
//	ws.SendText("hello")
//	fmt.Println(ws.ReceiveText())
package channelstest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/inmemory"
)

// TB is the part of testing.TB a Client uses; *testing.T and *testing.B
// satisfy it.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Cleanup(func())
	Output() io.Writer
}

// DefaultTimeout is how long a Client waits for an expected message.
const DefaultTimeout = 2 * time.Second

// Client is a fake interface server for tests. Its reply channel is a
// process-specific channel ("test.reply!…"), like a real connection's.
//
// Methods that expect something (a message to consume, a reply) fail the
// test with t.Fatal when it does not come within Timeout, saying what was
// expected; so do unrouted messages and layer errors. A Client is not safe
// for concurrent use.
type Client struct {
	// T is the test the client reports to.
	T TB
	// Layer carries the messages: a fresh in-memory layer by default.
	Layer channels.Layer
	// Consumer runs the messages, usually your *channels.Router.
	Consumer channels.Consumer
	// ReplyChannel is set as "reply_channel" on messages sent without one.
	ReplyChannel string
	// Timeout bounds the wait for an expected message. Default
	// DefaultTimeout.
	Timeout time.Duration
	// Runner runs consumers, as in a worker; its Logger writes to the
	// test's output.
	Runner *channels.Runner
}

// NewClient returns a client on a new in-memory layer (capacity 100, default
// expiry), which it closes when the test ends.
func NewClient(t TB, consumer channels.Consumer) *Client {
	t.Helper()
	l := inmemory.MustNew(inmemory.Config{})
	t.Cleanup(func() { l.Close() })
	return NewClientOn(t, l, consumer)
}

// NewClientOn returns a client on the given layer, for tests that share a
// layer between clients or with a live server.
func NewClientOn(t TB, l channels.Layer, consumer channels.Consumer) *Client {
	t.Helper()
	reply, err := l.NewChannel(context.Background(), "test.reply!")
	if err != nil {
		t.Fatalf("channelstest: new reply channel: %v", err)
	}
	return &Client{
		T:            t,
		Layer:        l,
		Consumer:     consumer,
		ReplyChannel: reply,
		Timeout:      DefaultTimeout,
		Runner:       &channels.Runner{Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))},
	}
}

func (c *Client) ctx() context.Context { return context.Background() }

func (c *Client) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return DefaultTimeout
}

// Send sends a copy of content to channel at once, with "reply_channel" set
// to the client's reply channel unless content has one.
func (c *Client) Send(channel string, content channels.Content) {
	c.T.Helper()
	msg := content.Clone()
	if msg == nil {
		msg = channels.Content{}
	}
	if _, ok := msg["reply_channel"]; !ok {
		msg["reply_channel"] = c.ReplyChannel
	}
	if err := c.Layer.Send(c.ctx(), channel, msg); err != nil {
		c.T.Fatalf("channelstest: send to %q: %v", channel, err)
	}
}

// Consume takes the next message on channel and runs the consumer on it,
// flushing what it sent, and returns the consumer's error. The test fails
// if no message arrives within Timeout or no route matches it.
func (c *Client) Consume(channel string) error {
	c.T.Helper()
	ok, err := c.consume(channel, c.timeout())
	if !ok {
		c.T.Fatalf("channelstest: no message on channel %q within %v", channel, c.timeout())
	}
	return err
}

// TryConsume is Consume for a message that may not be there: it reports
// false, without failing, when no message is waiting on channel.
func (c *Client) TryConsume(channel string) (bool, error) {
	c.T.Helper()
	return c.consume(channel, 0)
}

func (c *Client) consume(channel string, wait time.Duration) (bool, error) {
	c.T.Helper()
	m := c.next(channel, wait)
	if m == nil {
		return false, nil
	}
	if r, ok := c.Consumer.(*channels.Router); ok {
		if _, _, found := r.Match(m); !found {
			c.T.Fatalf("channelstest: no route matches the message on %q (path %q); check your routing", channel, m.Content.String("path"))
		}
	}
	err := c.Runner.Run(c.ctx(), c.Consumer, m)
	if errors.Is(err, channels.ErrNoRoute) {
		c.T.Fatalf("channelstest: %v (path %q); check your routing", err, m.Content.String("path"))
	}
	return true, err
}

// SendAndConsume sends content to channel, then consumes it.
func (c *Client) SendAndConsume(channel string, content channels.Content) error {
	c.T.Helper()
	c.Send(channel, content)
	return c.Consume(channel)
}

// Receive returns the next message on the client's reply channel, failing
// the test if none arrives within Timeout.
func (c *Client) Receive() channels.Content {
	c.T.Helper()
	m := c.next(c.ReplyChannel, c.timeout())
	if m == nil {
		c.T.Fatalf("channelstest: no reply on %q within %v", c.ReplyChannel, c.timeout())
	}
	return m.Content
}

// ReceiveNothing fails the test if a message is waiting on the client's
// reply channel.
func (c *Client) ReceiveNothing() {
	c.T.Helper()
	if m := c.next(c.ReplyChannel, 0); m != nil {
		c.T.Fatalf("channelstest: expected no reply, got %v", m.Content)
	}
}

// GetNextMessage returns the message waiting on channel, or nil. It does not
// wait.
func (c *Client) GetNextMessage(channel string) *channels.Message {
	c.T.Helper()
	return c.next(channel, 0)
}

// WaitMessage returns the next message on channel, failing the test if none
// arrives within Timeout.
func (c *Client) WaitMessage(channel string) *channels.Message {
	c.T.Helper()
	m := c.next(channel, c.timeout())
	if m == nil {
		c.T.Fatalf("channelstest: no message on channel %q within %v", channel, c.timeout())
	}
	return m
}

func (c *Client) next(channel string, wait time.Duration) *channels.Message {
	c.T.Helper()
	var (
		ch      string
		content channels.Content
		err     error
	)
	if wait <= 0 {
		ch, content, err = channels.Poll(c.ctx(), c.Layer, channel)
	} else {
		ctx, cancel := context.WithTimeout(c.ctx(), wait)
		ch, content, err = c.Layer.Receive(ctx, channel)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			return nil
		}
	}
	if err != nil {
		c.T.Fatalf("channelstest: receive on %q: %v", channel, err)
	}
	if content == nil {
		return nil
	}
	return channels.NewMessage(c.Layer, ch, content)
}

// ConsumerFor returns the consumer the client's router would run for a
// message on channel with the given content (nil if no route matches or the
// consumer is not a router).
func (c *Client) ConsumerFor(channel string, content channels.Content) channels.Consumer {
	r, ok := c.Consumer.(*channels.Router)
	if !ok {
		return nil
	}
	cons, _, _ := r.Match(channels.NewMessage(c.Layer, channel, content))
	return cons
}

// JoinGroup adds the client's reply channel to group.
func (c *Client) JoinGroup(group string) {
	c.T.Helper()
	if err := (channels.Group{Name: group, Layer: c.Layer}).Add(c.ctx(), c.ReplyChannel); err != nil {
		c.T.Fatalf("channelstest: join group %q: %v", group, err)
	}
}

// String describes the client for messages.
func (c *Client) String() string { return fmt.Sprintf("channelstest.Client(%s)", c.ReplyChannel) }
