package channelstest_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"testing"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/channelstest"
	"github.com/gochannels/channels/generic"
	"github.com/gochannels/channels/session"
)

// whoAmI answers every frame with the user of the socket, which it gets
// from the HTTP session on connect and keeps in the channel session.
func whoAmI(mgr *session.Manager) *generic.WebSocket {
	return &generic.WebSocket{
		Options: generic.Options{Sessions: mgr, HTTPUser: true},
		Receive: func(ctx context.Context, c *generic.Conn) error {
			return c.Send(ctx, "user="+session.UserFrom(ctx).ID())
		},
	}
}

func TestLoginOverTheGateway(t *testing.T) {
	mgr := &session.Manager{Store: session.NewMemoryStore()}
	srv := channelstest.NewServer(t, whoAmI(mgr))

	ws := srv.NewWSClient("/")
	ws.Cookies = append(ws.Cookies, channelstest.Login(t, mgr, session.UserID("ada")))
	ws.Dial()
	ws.SendText("who?")
	if got := ws.ReceiveText(); got != "user=ada" {
		t.Fatalf("got %q, want user=ada on a message that carries no cookie", got)
	}

	anon := srv.DialWS("/")
	anon.SendText("who?")
	if got := anon.ReceiveText(); got != "user=" {
		t.Fatalf("anonymous socket got %q", got)
	}

	t.Run("LogoutSockets closes the user's sockets on the gateway", func(t *testing.T) {
		second := srv.NewWSClient("/")
		second.Cookies = append(second.Cookies, channelstest.Login(t, mgr, session.UserID("ada")))
		second.Dial()
		n, err := mgr.LogoutSockets(t.Context(), srv.Layer, "ada")
		if err != nil || n != 2 {
			t.Fatalf("LogoutSockets = %d, %v; want 2 sockets", n, err)
		}
		for _, c := range []*channelstest.WSClient{ws, second} {
			if code := c.WaitClosed(); code != session.DefaultLogoutCloseCode {
				t.Fatalf("socket closed with %d, want %d", code, session.DefaultLogoutCloseCode)
			}
		}
		anon.SendText("still open?")
		if got := anon.ReceiveText(); got != "user=" {
			t.Fatalf("anonymous socket got %q", got)
		}
	})
}

// TestB31ChannelAndHTTPSessionOverTheGateway: the HTTP session seen on
// connect is found again on every later message of the socket.
func TestB31ChannelAndHTTPSessionOverTheGateway(t *testing.T) {
	mgr := &session.Manager{Store: session.NewMemoryStore()}
	cookie := channelstest.HTTPSession(t, mgr, map[string]any{"cart": "3 items"})
	r := channels.NewRouter()
	echo := channels.ConsumerFunc(func(ctx context.Context, m *channels.Message) error {
		hs := session.HTTPFromContext(ctx)
		if m.Channel != "websocket.receive" {
			return m.Reply(ctx, channels.Content{"accept": true})
		}
		if hs == nil {
			return m.Reply(ctx, channels.Content{"text": "no HTTP session"})
		}
		return m.Reply(ctx, channels.Content{"text": hs.Key() + " " + hs.GetString("cart")})
	})
	for _, ch := range []string{"websocket.connect", "websocket.receive"} {
		r.Route(ch, mgr.ChannelAndHTTPSession()(echo))
	}
	srv := channelstest.NewServer(t, r)
	ws := srv.NewWSClient("/")
	ws.Cookies = []*http.Cookie{cookie}
	ws.Dial()
	ws.SendText("?")
	if got := ws.ReceiveText(); got != cookie.Value+" 3 items" {
		t.Fatalf("got %q, want the HTTP session %s", got, cookie.Value)
	}
}

func TestSocket(t *testing.T) {
	t.Run("ordered sends through an ordering echo consumer", func(t *testing.T) {
		mgr := &session.Manager{Store: session.NewMemoryStore()}
		ordering, err := mgr.EnforceOrdering(session.StrictOrdering)
		if err != nil {
			t.Fatal(err)
		}
		echo := ordering(channels.ConsumerFunc(func(ctx context.Context, m *channels.Message) error {
			if m.Channel == "websocket.connect" {
				return m.Reply(ctx, channels.Content{"accept": true})
			}
			return m.Reply(ctx, channels.Content{"text": m.Content.String("text")})
		}))
		s := channelstest.NewSocket(channelstest.NewClient(t, echo), "/")
		s.Connect()
		for _, text := range []string{"1", "2", "3"} {
			if err := s.SendText(text); err != nil {
				t.Fatal(err)
			}
		}
		for _, want := range []string{"1", "2", "3"} {
			if got := s.ReceiveText(); got != want {
				t.Fatalf("got %q, want %q", got, want)
			}
		}
		if err := s.Disconnect(1000); err != nil {
			t.Fatal(err)
		}
		if next, _ := s.ChannelSession(mgr).GetInt(session.NextOrderKey); next != 5 {
			t.Fatalf("next order %d after connect, 3 frames and disconnect, want 5", next)
		}
	})

	t.Run("stamps", func(t *testing.T) {
		s := channelstest.NewSocket(channelstest.NewClient(t, channels.Ignore), "/chat/?room=a&x=1")
		s.Header.Set("Origin", "http://example.com")
		s.AddCookie(&http.Cookie{Name: "a", Value: "1"})
		s.AddCookie(&http.Cookie{Name: "sessionid", Value: "old"})
		s.AddCookie(&http.Cookie{Name: "sessionid", Value: "new"})
		c := s.Prepare("websocket.connect", nil)
		if c["order"] != int64(0) || c["path"] != "/chat/" || c["query_string"] != "room=a&x=1" || c["reply_channel"] != s.Client.ReplyChannel {
			t.Fatalf("connect %v", c)
		}
		var cookie, origin string
		for _, h := range c["headers"].([]any) {
			pair := h.([]any)
			switch string(pair[0].([]byte)) {
			case "cookie":
				cookie = string(pair[1].([]byte))
			case "origin":
				origin = string(pair[1].([]byte))
			}
		}
		if cookie != "a=1; sessionid=new" || origin != "http://example.com" {
			t.Fatalf("cookie %q origin %q", cookie, origin)
		}
		r := s.Prepare("websocket.receive", channels.Content{"text": "x"})
		if r["order"] != int64(1) || r.Has("headers") || r.Has("query_string") {
			t.Fatalf("receive %v", r)
		}
	})

	t.Run("passing an order is an error", func(t *testing.T) {
		ft := &fatalTB{TB: t}
		s := channelstest.NewSocket(channelstest.NewClient(ft, channels.Ignore), "/")
		ft.expectFatal(func() { s.Prepare("websocket.receive", channels.Content{"order": 3}) })
		if !ft.failed {
			t.Fatal("a manual order was accepted")
		}
	})

	t.Run("the session cookie reaches HTTPUser", func(t *testing.T) {
		mgr := &session.Manager{Store: session.NewMemoryStore()}
		s := channelstest.NewSocket(channelstest.NewClient(t, whoAmI(mgr)), "/")
		s.AddCookie(channelstest.Login(t, mgr, session.UserID("grace")))
		s.Connect()
		if err := s.SendText("?"); err != nil {
			t.Fatal(err)
		}
		if got := s.ReceiveText(); got != "user=grace" {
			t.Fatalf("got %q", got)
		}
		if id := s.ChannelSession(mgr).GetString(session.AuthUserIDKey); id != "grace" {
			t.Fatalf("channel session holds user %q", id)
		}
	})

	t.Run("TryConnect sees a rejection", func(t *testing.T) {
		s := channelstest.NewSocket(channelstest.NewClient(t, channels.ConsumerFunc(func(context.Context, *channels.Message) error {
			return channels.ErrDenyConnection
		})), "/")
		reply, _ := s.TryConnect()
		if reply["close"] != true {
			t.Fatalf("reply %v, want close", reply)
		}
	})
}

// fatalTB turns Fatalf into a recorded failure that stops the function
// given to expectFatal.
type fatalTB struct {
	channelstest.TB
	mu     sync.Mutex
	failed bool
}

type fatalStop struct{}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.failed = true
	f.mu.Unlock()
	fmt.Fprintf(f.Output(), "(expected) "+format+"\n", args...)
	panic(fatalStop{})
}

func (f *fatalTB) Output() io.Writer { return f.TB.Output() }

func (f *fatalTB) expectFatal(fn func()) {
	defer func() {
		if v := recover(); v != nil && v != (fatalStop{}) {
			panic(v)
		}
	}()
	fn()
}

func ExampleLogin() {
	mgr := &session.Manager{Store: session.NewMemoryStore()}
	t := &sessionExampleT{}
	s := channelstest.NewSocket(channelstest.NewClient(t, whoAmI(mgr)), "/")
	s.AddCookie(channelstest.Login(t, mgr, session.UserID("ada")))
	s.Connect()
	_ = s.SendText("who am I?")
	fmt.Println(s.ReceiveText())
	fmt.Println(slices.Contains(s.ChannelSession(mgr).Keys(), session.AuthUserIDKey))
	t.cleanup()
	// Output:
	// user=ada
	// true
}

// sessionExampleT is a minimal channelstest.TB for examples.
type sessionExampleT struct{ cleanups []func() }

func (*sessionExampleT) Helper()                      {}
func (*sessionExampleT) Fatalf(f string, args ...any) { panic(fmt.Sprintf(f, args...)) }
func (e *sessionExampleT) Cleanup(f func())           { e.cleanups = append(e.cleanups, f) }
func (*sessionExampleT) Output() io.Writer            { return io.Discard }
func (e *sessionExampleT) cleanup() {
	for i := len(e.cleanups) - 1; i >= 0; i-- {
		e.cleanups[i]()
	}
}
