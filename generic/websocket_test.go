package generic_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/alexedwards/scs/v2"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/channelstest"
	"github.com/gochannels/channels/generic"
	"github.com/gochannels/channels/session"
)

const quiet = 150 * time.Millisecond // how long "nothing arrives" is watched

// recorder records what hooks saw, safely across worker goroutines.
type recorder struct {
	mu  sync.Mutex
	got []string
}

func (r *recorder) add(s string) {
	r.mu.Lock()
	r.got = append(r.got, s)
	r.mu.Unlock()
}

func (r *recorder) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// waitFor polls cond until it holds or the test's patience runs out.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestC38DefaultConnectAccepts: generic consumers without a Connect hook
// accept the socket (Channels 1.0.1, flaw W1), with no frame.
func TestC38DefaultConnectAccepts(t *testing.T) {
	for name, c := range map[string]channels.ChannelConsumer{
		"WebSocket":     &generic.WebSocket{},
		"JSONWebSocket": &generic.JSONWebSocket[any]{},
		"Demultiplexer": &generic.Demultiplexer{Consumers: map[string]channels.Consumer{"s": &generic.WebSocket{}}},
	} {
		t.Run(name, func(t *testing.T) {
			srv := channelstest.NewServer(t, c)
			ws := srv.DialWS("/anything/")
			ws.ReceiveNothing(quiet)
		})
	}
}

func TestWebSocketOverTheGateway(t *testing.T) {
	rec := &recorder{}
	ws := &generic.WebSocket{
		Options: generic.Options{
			Groups: []string{"everyone"},
			ConnectionGroups: func(m *channels.Message) []string {
				return []string{"room-" + m.PathValue("room")}
			},
		},
		Connect: func(ctx context.Context, c *generic.Conn) error {
			if c.PathValue("room") == "closed" {
				return channels.ErrDenyConnection
			}
			rec.add("connect " + c.PathValue("room"))
			return c.Accept(ctx)
		},
		Receive: func(ctx context.Context, c *generic.Conn) error {
			if b := c.Bytes(); b != nil {
				return c.SendBytes(ctx, append([]byte("bytes:"), b...))
			}
			text, _ := c.Text()
			switch text {
			case "close":
				return c.Close(ctx, 4000)
			case "shout":
				return c.GroupSend(ctx, "room-"+c.PathValue("room"), "shout in "+c.PathValue("room"))
			case "json":
				return c.SendJSON(ctx, map[string]any{"room": c.PathValue("room")})
			}
			return c.Send(ctx, "echo:"+text)
		},
		Disconnect: func(ctx context.Context, c *generic.Conn) error {
			rec.add(fmt.Sprintf("disconnect %s %d", c.PathValue("room"), func() int64 { n, _ := c.Content.Int("code"); return n }()))
			return nil
		},
	}
	r := channels.NewRouter()
	r.Handle(ws, channels.Path(`^/room/(?P<room>[a-z]+)/$`))
	srv := channelstest.NewServer(t, r)

	a1, a2, b := srv.DialWS("/room/a/"), srv.DialWS("/room/a/"), srv.DialWS("/room/b/")

	t.Run("text, bytes and JSON replies", func(t *testing.T) {
		a1.SendText("hi")
		if got := a1.ReceiveText(); got != "echo:hi" {
			t.Fatalf("got %q", got)
		}
		a1.SendBytes([]byte{1, 2})
		if got := a1.ReceiveBytes(); string(got) != "bytes:\x01\x02" {
			t.Fatalf("got %q", got)
		}
		a1.SendText("json")
		var v map[string]string
		a1.ReceiveJSON(&v)
		if v["room"] != "a" {
			t.Fatalf("got %v", v)
		}
	})

	t.Run("connection groups from route values", func(t *testing.T) {
		a2.SendText("shout")
		for _, c := range []*channelstest.WSClient{a1, a2} {
			if got := c.ReceiveText(); got != "shout in a" {
				t.Fatalf("got %q", got)
			}
		}
		b.ReceiveNothing(quiet)
		gl := srv.Layer.(channels.GroupLayer)
		members, _ := gl.GroupChannels(t.Context(), "everyone")
		if len(members) != 3 {
			t.Fatalf("group everyone has %d members, want 3", len(members))
		}
	})

	t.Run("a rejecting connect gives 403", func(t *testing.T) {
		c := srv.NewWSClient("/room/closed/")
		if status, _ := c.TryDial(); status != 403 {
			t.Fatalf("status %d, want 403", status)
		}
	})

	t.Run("Close(4000) closes the socket with 4000, and disconnect leaves the groups", func(t *testing.T) {
		b.SendText("close")
		if code := b.WaitClosed(); code != 4000 {
			t.Fatalf("closed with %d, want 4000", code)
		}
		waitFor(t, "the disconnect", func() bool { return slices.Contains(rec.list(), "disconnect b 4000") })
		gl := srv.Layer.(channels.GroupLayer)
		if members, _ := gl.GroupChannels(t.Context(), "room-b"); len(members) != 0 {
			t.Fatalf("room-b still holds %v", members)
		}
		if members, _ := gl.GroupChannels(t.Context(), "everyone"); len(members) != 2 {
			t.Fatalf("everyone holds %d members, want 2", len(members))
		}
	})
}

func TestWebSocketMessageLevel(t *testing.T) {
	t.Run("Close with an invalid code is an error", func(t *testing.T) {
		var err error
		c := channelstest.NewClient(t, &generic.WebSocket{Receive: func(ctx context.Context, c *generic.Conn) error {
			err = c.Close(ctx, 1006)
			return nil
		}})
		if e := c.SendAndConsume("websocket.receive", channels.Content{"text": "x"}); e != nil {
			t.Fatal(e)
		}
		if err == nil {
			t.Fatal("Close(1006) gave no error")
		}
		c.ReceiveNothing()
	})
	t.Run("Close(0) sends close true", func(t *testing.T) {
		c := channelstest.NewClient(t, &generic.WebSocket{Receive: func(ctx context.Context, c *generic.Conn) error {
			return c.Close(ctx, 0)
		}})
		if err := c.SendAndConsume("websocket.receive", channels.Content{"text": "x"}); err != nil {
			t.Fatal(err)
		}
		if got := c.Receive(); got["close"] != true {
			t.Fatalf("got %v", got)
		}
	})
	t.Run("an invalid group name fails the connect", func(t *testing.T) {
		c := channelstest.NewClient(t, &generic.WebSocket{Options: generic.Options{Groups: []string{"bad name"}}})
		if err := c.SendAndConsume("websocket.connect", channels.Content{"path": "/"}); !errors.Is(err, channels.ErrInvalidName) {
			t.Fatalf("err = %v, want ErrInvalidName", err)
		}
	})
}

// TestB28GenericSlightOrdering: slight ordering is an error; such a
// consumer rejects every socket.
func TestB28GenericSlightOrdering(t *testing.T) {
	mgr := &session.Manager{Store: session.NewMemoryStore()}
	ws := &generic.WebSocket{Options: generic.Options{Sessions: mgr, Ordering: session.SlightOrdering}}
	if err := ws.Validate(); !errors.Is(err, session.ErrSlightOrdering) {
		t.Fatalf("Validate() = %v, want ErrSlightOrdering", err)
	}
	srv := channelstest.NewServer(t, ws)
	if status, _ := srv.NewWSClient("/").TryDial(); status != 403 {
		t.Fatalf("status %d, want 403", status)
	}
	if err := (&generic.WebSocket{Options: generic.Options{ChannelSession: true}}).Validate(); !errors.Is(err, generic.ErrNoSessions) {
		t.Fatalf("sessions without a Manager: %v, want ErrNoSessions", err)
	}
}

// TestStrictGenericConsumerFedOneThenZero is spec §10's tested case: a
// strictly ordered generic consumer fed connect order 1, then order 0.
func TestStrictGenericConsumerFedOneThenZero(t *testing.T) {
	mgr := &session.Manager{Store: session.NewMemoryStore()}
	rec := &recorder{}
	ws := &generic.WebSocket{
		Options: generic.Options{Sessions: mgr, Ordering: session.StrictOrdering},
		Connect: func(ctx context.Context, c *generic.Conn) error {
			n, _ := c.Content.Int("order")
			rec.add(fmt.Sprint(n))
			return c.Accept(ctx)
		},
	}
	c := channelstest.NewClient(t, ws)
	if err := c.SendAndConsume("websocket.connect", channels.Content{"path": "/", "order": 1}); err != nil {
		t.Fatal(err)
	}
	if got := rec.list(); len(got) != 0 {
		t.Fatalf("order 1 ran first: %v", got)
	}
	if err := c.SendAndConsume("websocket.connect", channels.Content{"path": "/", "order": 0}); err != nil {
		t.Fatal(err)
	}
	if got := rec.list(); !slices.Equal(got, []string{"0", "1"}) {
		t.Fatalf("ran %v, want 0 then 1", got)
	}
}

// TestA2_13SessionSavedBeforeFlushOverTheGateway: a receive consumer writes
// the channel session and sends to another channel; that channel's consumer,
// running on another worker goroutine as soon as the message is out, reads
// the channel session and replies with what it read.
func TestA2_13SessionSavedBeforeFlushOverTheGateway(t *testing.T) {
	st := session.NewMemoryStore()
	mgr := &session.Manager{Store: st}
	r := channels.NewRouter()
	r.Handle(&generic.WebSocket{
		Options: generic.Options{Sessions: mgr, ChannelSession: true},
		Receive: func(ctx context.Context, c *generic.Conn) error {
			text, _ := c.Text()
			session.FromContext(ctx).Put("last", text)
			return channels.Channel{Name: "reader"}.Send(ctx, channels.Content{"socket": c.ReplyChannel})
		},
	}, channels.Path(`^/$`))
	r.RouteFunc("reader", func(ctx context.Context, m *channels.Message) error {
		// Not the socket's message (no reply_channel), so any worker
		// goroutine may run it while the sender is still finishing.
		socket := m.Content.String("socket")
		b, found, err := st.FindCtx(ctx, session.ChannelKey(socket))
		if err != nil {
			return err
		}
		last := "<no session>"
		if found {
			_, values, err := scs.GobCodec{}.Decode(b)
			if err != nil {
				return err
			}
			last, _ = values["last"].(string)
		}
		return channels.Channel{Name: socket}.Send(ctx, channels.Content{"text": last})
	})
	srv := channelstest.NewServer(t, r)
	ws := srv.DialWS("/")
	for i := range 20 {
		want := fmt.Sprint("frame-", i)
		ws.SendText(want)
		if got := ws.ReceiveText(); got != want {
			t.Fatalf("the reader saw %q, want %q: the session must be saved before the sends go out", got, want)
		}
	}
}
