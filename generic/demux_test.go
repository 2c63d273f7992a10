package generic_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/channelstest"
	"github.com/gochannels/channels/generic"
	"github.com/gochannels/channels/inmemory"
	"github.com/gochannels/channels/session"
)

type envelope struct {
	Stream  string          `json:"stream"`
	Payload json.RawMessage `json:"payload"`
}

// kwargsEcho is spec §8.4's tested sub-consumer: it sends the route values
// on connect and disconnect, and echoes what it receives, through its
// multiplexer.
func kwargsEcho() *generic.WebSocket {
	return &generic.WebSocket{
		Connect: func(ctx context.Context, c *generic.Conn) error {
			return generic.MultiplexerFrom(ctx).Send(ctx, c.PathValues())
		},
		Receive: func(ctx context.Context, c *generic.Conn) error {
			text, _ := c.Text()
			return generic.MultiplexerFrom(ctx).Send(ctx, json.RawMessage(text))
		},
		Disconnect: func(ctx context.Context, c *generic.Conn) error {
			return generic.MultiplexerFrom(ctx).Send(ctx, c.PathValues())
		},
	}
}

func specRouter() *channels.Router {
	r := channels.NewRouter()
	r.Handle(&generic.Demultiplexer{Consumers: map[string]channels.Consumer{"mystream": kwargsEcho()}},
		channels.Path(`^/path/(?P<id>\d+)`))
	return r
}

// TestDemultiplexerSpecCase is spec §8.4's tested case, over the gateway
// (connect and receive) and with the message-level client (disconnect,
// whose reply no socket can see).
func TestDemultiplexerSpecCase(t *testing.T) {
	t.Run("socket", func(t *testing.T) {
		srv := channelstest.NewServer(t, specRouter())
		ws := srv.DialWS("/path/1")
		if got := ws.ReceiveText(); got != `{"stream":"mystream","payload":{"id":"1"}}` {
			t.Fatalf("after the accept: %s", got)
		}
		ws.SendText(`{"stream":"mystream","payload":{"text_field":"mytext"}}`)
		if got := ws.ReceiveText(); got != `{"stream":"mystream","payload":{"text_field":"mytext"}}` {
			t.Fatalf("echo: %s", got)
		}
	})
	t.Run("messages", func(t *testing.T) {
		c := channelstest.NewClient(t, specRouter())
		must(t, c.SendAndConsume("websocket.connect", channels.Content{"path": "/path/1", "order": 0}))
		if got := c.Receive(); got["accept"] != true {
			t.Fatalf("first reply %v, want the accept", got)
		}
		if got := c.Receive().String("text"); got != `{"stream":"mystream","payload":{"id":"1"}}` {
			t.Fatalf("connect: %s", got)
		}
		must(t, c.SendAndConsume("websocket.receive", channels.Content{"path": "/path/1", "order": 1,
			"text": `{"stream":"mystream","payload":{"text_field":"mytext"}}`}))
		if got := c.Receive().String("text"); got != `{"stream":"mystream","payload":{"text_field":"mytext"}}` {
			t.Fatalf("receive: %s", got)
		}
		must(t, c.SendAndConsume("websocket.disconnect", channels.Content{"path": "/path/1", "order": 2, "code": 1000}))
		if got := c.Receive().String("text"); got != `{"stream":"mystream","payload":{"id":"1"}}` {
			t.Fatalf("disconnect: %s", got)
		}
	})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestA4_19FrameGoesStraightToTheStream: the payload reaches the stream's
// consumer as a websocket.receive message with the same reply channel and
// the payload's JSON as text, and nothing is sent to any other channel.
func TestA4_19FrameGoesStraightToTheStream(t *testing.T) {
	l := inmemory.MustNew(inmemory.Config{})
	t.Cleanup(func() { l.Close() })
	var seen *channels.Message
	d := &generic.Demultiplexer{Consumers: map[string]channels.Consumer{
		"a": channels.ConsumerFunc(func(ctx context.Context, m *channels.Message) error {
			seen = m.Copy()
			return nil
		}),
		"b": channels.Ignore,
	}}
	c := channelstest.NewClientOn(t, l, d)
	c.Send("websocket.receive", channels.Content{"path": "/x/", "order": 1,
		"text": `{"stream": "a", "payload": {"n": 1, "s": "x"}}`})
	before, _ := l.Stats(t.Context())
	must(t, c.Consume("websocket.receive"))
	after, _ := l.Stats(t.Context())
	if seen == nil {
		t.Fatal("the stream's consumer did not run")
	}
	if seen.Channel != "websocket.receive" || seen.ReplyChannel != c.ReplyChannel || seen.Content.String("reply_channel") != c.ReplyChannel {
		t.Fatalf("sub-message on %q with reply channel %q", seen.Channel, seen.ReplyChannel)
	}
	if got := seen.Content.String("text"); got != `{"n":1,"s":"x"}` {
		t.Fatalf("sub-message text %q, want the payload's JSON", got)
	}
	if seen.Content.String("path") != "/x/" {
		t.Fatalf("sub-message lost the path: %v", seen.Content)
	}
	if n := after.Sent - before.Sent; n != 0 {
		t.Fatalf("%d messages were sent while dispatching a frame, want none", n)
	}
}

// TestA4_20ConnectAndDisconnectReachEveryStream: two streams, each with
// its own multiplexer, both see connect and disconnect once.
func TestA4_20ConnectAndDisconnectReachEveryStream(t *testing.T) {
	rec := &recorder{}
	stream := func(name string) *generic.WebSocket {
		return &generic.WebSocket{
			Connect: func(ctx context.Context, c *generic.Conn) error {
				mx := generic.MultiplexerFrom(ctx)
				rec.add("connect " + mx.Stream)
				return mx.Send(ctx, map[string]string{"hello": name})
			},
			Disconnect: func(ctx context.Context, c *generic.Conn) error {
				rec.add("disconnect " + generic.MultiplexerFrom(ctx).Stream)
				return nil
			},
		}
	}
	srv := channelstest.NewServer(t, &generic.Demultiplexer{Consumers: map[string]channels.Consumer{
		"messages": stream("messages"),
		"presence": stream("presence"),
	}})
	ws := srv.DialWS("/")
	var got []string
	for range 2 {
		var e envelope
		ws.ReceiveJSON(&e)
		got = append(got, e.Stream+" "+string(e.Payload))
	}
	want := []string{`messages {"hello":"messages"}`, `presence {"hello":"presence"}`}
	if !slices.Equal(got, want) {
		t.Fatalf("frames after connect %q, want %q", got, want)
	}
	ws.Close(1000, "")
	waitFor(t, "both disconnects", func() bool { return len(rec.list()) == 4 })
	if got := rec.list(); !slices.Equal(got, []string{"connect messages", "connect presence", "disconnect messages", "disconnect presence"}) {
		t.Fatalf("hooks ran %q", got)
	}
}

// TestA4_21DirectSendsAreRefused: a stream consumer's own sends to the
// socket fail with ErrSendNotAvailable when they are made (helpers and raw
// replies alike); only multiplexed frames reach the client.
func TestA4_21DirectSendsAreRefused(t *testing.T) {
	errs := make(chan error, 5)
	sub := &generic.WebSocket{Receive: func(ctx context.Context, c *generic.Conn) error {
		errs <- c.Send(ctx, "unwrapped text")
		errs <- c.SendJSON(ctx, map[string]int{"unwrapped": 1})
		errs <- c.SendBytes(ctx, []byte("unwrapped bytes"))
		errs <- c.Reply(ctx, channels.Content{"text": "unwrapped raw reply"})
		return generic.MultiplexerFrom(ctx).Send(ctx, map[string]string{"wrapped": "yes"})
	}}
	d := &generic.Demultiplexer{
		Consumers: map[string]channels.Consumer{"s": sub},
		Connect: func(ctx context.Context, c *generic.Conn) error {
			errs <- c.Send(ctx, "the demultiplexer's own send")
			return nil
		},
	}
	srv := channelstest.NewServer(t, d)
	ws := srv.DialWS("/")
	if err := <-errs; !errors.Is(err, generic.ErrSendNotAvailable) {
		t.Fatalf("demultiplexer Connect's Send: %v, want ErrSendNotAvailable", err)
	}
	ws.SendText(`{"stream":"s","payload":{}}`)
	for range 4 {
		if err := <-errs; !errors.Is(err, generic.ErrSendNotAvailable) {
			t.Fatalf("stream consumer's send: %v, want ErrSendNotAvailable", err)
		}
	}
	if got := ws.ReceiveText(); got != `{"stream":"s","payload":{"wrapped":"yes"}}` {
		t.Fatalf("client got %s", got)
	}
	ws.ReceiveNothing(quiet)
	if n := srv.Worker.Stats().Dropped; n != 0 {
		t.Fatalf("worker dropped %d sends; the refused reply should never have reached the outbox", n)
	}
}

// TestDemultiplexerBadFramesKeepTheSocketUp: frames that are not valid
// envelopes are logged, counted and dropped; the socket stays open.
func TestDemultiplexerBadFramesKeepTheSocketUp(t *testing.T) {
	d := &generic.Demultiplexer{Consumers: map[string]channels.Consumer{"echo": kwargsEcho()}}
	srv := channelstest.NewServer(t, d)
	ws := srv.DialWS("/")
	ws.ReceiveText() // the echo stream's connect frame
	bad := []struct {
		frame string
		bytes bool
	}{
		{frame: "not json"},
		{frame: `["a", "list"]`},
		{frame: `{"payload": {}}`},
		{frame: `{"stream": 7, "payload": {}}`},
		{frame: `{"stream": "nobody", "payload": {}}`},
		{frame: `{"stream": "echo", "payload": [1]}`},
		{frame: `{"stream": "echo", "payload": "text"}`},
		{frame: `{"stream": "echo"}`},
		{frame: `{"stream": "echo", "payload": {}}`, bytes: true},
	}
	for _, b := range bad {
		if b.bytes {
			ws.SendBytes([]byte(b.frame))
		} else {
			ws.SendText(b.frame)
		}
	}
	ws.SendText(`{"stream": "echo", "payload": {"still": "up"}}`)
	if got := ws.ReceiveText(); got != `{"stream":"echo","payload":{"still":"up"}}` {
		t.Fatalf("got %s", got)
	}
	if code := ws.CloseStatus(); code != 0 {
		t.Fatalf("socket closed with %d", code)
	}
	want := generic.DemultiplexerStats{Malformed: 5, UnknownStreams: 1, BadPayloads: 3}
	if got := d.Stats(); got != want {
		t.Fatalf("Stats() = %+v, want %+v", got, want)
	}
	if n := srv.Worker.Stats().Failed; n != 0 {
		t.Fatalf("%d consumer failures; bad frames are not failures", n)
	}
}

// TestC40C41StreamsAreConsumersNotChannels: the demultiplexer is configured
// with consumers only (no route per stream); a JSONWebSocket stream gets
// its payload decoded; the multiplexer's group send reaches every member.
func TestC40C41StreamsAreConsumersNotChannels(t *testing.T) {
	type say struct {
		Text string `json:"text"`
	}
	chat := &generic.JSONWebSocket[say]{
		Options: generic.Options{Groups: []string{"chat"}},
		Receive: func(ctx context.Context, c *generic.Conn, v say) error {
			return generic.MultiplexerFrom(ctx).GroupSend(ctx, "chat", say{Text: "said: " + v.Text})
		},
	}
	r := channels.NewRouter()
	r.Handle(&generic.Demultiplexer{Consumers: map[string]channels.Consumer{"chat": chat}}, channels.Path(`^/multi/$`))
	srv := channelstest.NewServer(t, r)
	if got := r.Channels(); !slices.Equal(got, []string{"websocket.connect", "websocket.disconnect", "websocket.receive"}) {
		t.Fatalf("router channels %v: no per-stream channel is routed", got)
	}
	a, b := srv.DialWS("/multi/"), srv.DialWS("/multi/")
	a.SendText(`{"stream":"chat","payload":{"text":"hi"}}`)
	for _, ws := range []*channelstest.WSClient{a, b} {
		if got := ws.ReceiveText(); got != `{"stream":"chat","payload":{"text":"said: hi"}}` {
			t.Fatalf("got %s", got)
		}
	}
	// Outside any consumer, the package-level GroupSend goes at once, and
	// can close the sockets after the frame.
	if err := generic.GroupSend(t.Context(), channels.Group{Name: "chat", Layer: srv.Layer}, "chat", say{Text: "bye"}, true); err != nil {
		t.Fatal(err)
	}
	for _, ws := range []*channelstest.WSClient{a, b} {
		if got := ws.ReceiveText(); got != `{"stream":"chat","payload":{"text":"bye"}}` {
			t.Fatalf("got %s", got)
		}
		if code := ws.WaitClosed(); code != 1000 {
			t.Fatalf("closed with %d", code)
		}
	}
}

// TestDemultiplexerNestedSessions: the demultiplexer's channel session is
// the streams' too, and what a stream writes is saved (W5).
func TestDemultiplexerNestedSessions(t *testing.T) {
	st := session.NewMemoryStore()
	mgr := &session.Manager{Store: st}
	writer := &generic.WebSocket{
		Options: generic.Options{Sessions: mgr, ChannelSession: true},
		Connect: func(ctx context.Context, c *generic.Conn) error {
			session.FromContext(ctx).Put("nick", "ada")
			return nil
		},
	}
	reader := &generic.WebSocket{
		Options: generic.Options{Sessions: mgr, ChannelSession: true},
		Receive: func(ctx context.Context, c *generic.Conn) error {
			return generic.MultiplexerFrom(ctx).Send(ctx, map[string]string{"nick": session.FromContext(ctx).GetString("nick")})
		},
	}
	d := &generic.Demultiplexer{
		Options:   generic.Options{Sessions: mgr, ChannelSession: true, Ordering: session.StrictOrdering},
		Consumers: map[string]channels.Consumer{"writer": writer, "reader": reader},
	}
	srv := channelstest.NewServer(t, d)
	ws := srv.DialWS("/")
	ws.SendText(`{"stream":"reader","payload":{}}`)
	if got := ws.ReceiveText(); got != `{"stream":"reader","payload":{"nick":"ada"}}` {
		t.Fatalf("got %s", got)
	}
}

func ExampleDemultiplexer() {
	// Two streams over one socket: "echo" answers each payload, "count"
	// counts the frames it gets.
	count := 0
	d := &generic.Demultiplexer{Consumers: map[string]channels.Consumer{
		"echo": &generic.JSONWebSocket[map[string]any]{
			Receive: func(ctx context.Context, c *generic.Conn, v map[string]any) error {
				return generic.MultiplexerFrom(ctx).Send(ctx, v)
			},
		},
		"count": &generic.WebSocket{Receive: func(ctx context.Context, c *generic.Conn) error {
			count++
			return generic.MultiplexerFrom(ctx).Send(ctx, map[string]int{"frames": count})
		}},
	}}
	r := channels.NewRouter()
	r.Handle(d, channels.Path(`^/ws/$`))

	l := inmemory.MustNew(inmemory.Config{})
	defer l.Close()
	ctx := context.Background()
	reply, _ := l.NewChannel(ctx, "websocket.send.example!")
	run := func(channel, text string) {
		m := channels.NewMessage(l, channel, channels.Content{"reply_channel": reply, "path": "/ws/", "text": text})
		_ = (&channels.Runner{}).Run(ctx, r, m)
	}
	run("websocket.connect", "")
	run("websocket.receive", `{"stream": "echo", "payload": {"hello": "world"}}`)
	run("websocket.receive", `{"stream": "count", "payload": {}}`)
	for {
		_, c, _ := channels.Poll(ctx, l, reply)
		if c == nil {
			break
		}
		fmt.Println(c)
	}
	// Output:
	// map[accept:true]
	// map[text:{"stream":"echo","payload":{"hello":"world"}}]
	// map[text:{"stream":"count","payload":{"frames":1}}]
}
