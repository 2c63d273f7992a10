package generic_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/channelstest"
	"github.com/gochannels/channels/generic"
)

type chatMessage struct {
	User string `json:"user"`
	Text string `json:"text"`
}

func TestJSONWebSocket(t *testing.T) {
	newConsumer := func(policy generic.MalformedPolicy) *generic.JSONWebSocket[chatMessage] {
		return &generic.JSONWebSocket[chatMessage]{
			Malformed: policy,
			Receive: func(ctx context.Context, c *generic.Conn, m chatMessage) error {
				return c.SendJSON(ctx, chatMessage{User: "echo", Text: m.User + ": " + m.Text})
			},
		}
	}

	t.Run("typed frames over the gateway", func(t *testing.T) {
		srv := channelstest.NewServer(t, newConsumer(generic.CloseMalformed))
		ws := srv.DialWS("/")
		ws.SendJSON(chatMessage{User: "ada", Text: "hello"})
		var got chatMessage
		ws.ReceiveJSON(&got)
		if got != (chatMessage{User: "echo", Text: "ada: hello"}) {
			t.Fatalf("got %+v", got)
		}
	})

	t.Run("malformed frames skipped keep the socket up", func(t *testing.T) {
		j := newConsumer(generic.SkipMalformed)
		srv := channelstest.NewServer(t, j)
		ws := srv.DialWS("/")
		ws.SendText("not json")
		ws.SendBytes([]byte(`{"user":"bytes"}`))
		ws.SendText(`{"user": 3}`) // does not fit the type
		ws.SendJSON(chatMessage{User: "ada", Text: "still here"})
		var got chatMessage
		ws.ReceiveJSON(&got)
		if got.Text != "ada: still here" {
			t.Fatalf("got %+v", got)
		}
		if n := j.MalformedFrames(); n != 3 {
			t.Fatalf("MalformedFrames() = %d, want 3", n)
		}
		if code := ws.CloseStatus(); code != 0 {
			t.Fatalf("socket closed with %d", code)
		}
	})

	t.Run("a malformed frame closes the socket with 1007 over the gateway", func(t *testing.T) {
		srv := channelstest.NewServer(t, newConsumer(generic.CloseMalformed))
		ws := srv.DialWS("/")
		ws.SendText("{nope")
		if code := ws.WaitClosed(); code != 1007 {
			t.Fatalf("socket closed with %d, want 1007", code)
		}
	})

	t.Run("malformed frames close with 1007 by default", func(t *testing.T) {
		cases := map[string]channels.Content{
			"not JSON":     {"text": "{nope"},
			"binary frame": {"bytes": []byte("{}")},
			"wrong shape":  {"text": `["a list"]`},
		}
		for name, frame := range cases {
			t.Run(name, func(t *testing.T) {
				j := newConsumer(generic.CloseMalformed)
				c := channelstest.NewClient(t, j)
				frame["path"] = "/"
				_ = c.SendAndConsume("websocket.receive", frame)
				if got := c.Receive(); got["close"] != int64(1007) {
					t.Fatalf("reply %v, want close 1007", got)
				}
				if j.MalformedFrames() != 1 {
					t.Fatalf("MalformedFrames() = %d", j.MalformedFrames())
				}
			})
		}
	})

	t.Run("raw JSON and any", func(t *testing.T) {
		var raw string
		var anyV any
		c := channelstest.NewClient(t, &generic.JSONWebSocket[any]{Receive: func(ctx context.Context, c *generic.Conn, v any) error {
			anyV = v
			return nil
		}})
		if err := c.SendAndConsume("websocket.receive", channels.Content{"text": `{"a":[1,2]}`}); err != nil {
			t.Fatal(err)
		}
		if m, ok := anyV.(map[string]any); !ok || len(m["a"].([]any)) != 2 {
			t.Fatalf("decoded %#v", anyV)
		}
		c2 := channelstest.NewClient(t, &generic.JSONWebSocket[json.RawMessage]{Receive: func(ctx context.Context, c *generic.Conn, v json.RawMessage) error {
			raw = string(v)
			return nil
		}})
		if err := c2.SendAndConsume("websocket.receive", channels.Content{"text": `{"b": true}`}); err != nil {
			t.Fatal(err)
		}
		if raw != `{"b": true}` {
			t.Fatalf("raw = %q", raw)
		}
	})
}
