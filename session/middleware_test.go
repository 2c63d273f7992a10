package session_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alexedwards/scs/v2"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/channelstest"
	"github.com/gochannels/channels/inmemory"
	"github.com/gochannels/channels/session"
)

// countingStore counts the writes that reach a real store.
type countingStore struct {
	session.Store
	commits, deletes atomic.Int64
}

func (c *countingStore) CommitCtx(ctx context.Context, k string, b []byte, e time.Time) error {
	c.commits.Add(1)
	return c.Store.CommitCtx(ctx, k, b, e)
}

func (c *countingStore) DeleteCtx(ctx context.Context, k string) error {
	c.deletes.Add(1)
	return c.Store.DeleteCtx(ctx, k)
}

// stored decodes what st holds under key (nil when nothing).
func stored(t *testing.T, st session.Store, key string) map[string]any {
	t.Helper()
	b, found, err := st.FindCtx(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	if !found {
		return nil
	}
	_, values, err := scs.GobCodec{}.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	return values
}

// putHTTPSession stores an HTTP session the way scs does.
func putHTTPSession(t *testing.T, st session.Store, key string, values map[string]any) {
	t.Helper()
	deadline := time.Now().Add(time.Hour)
	b, err := scs.GobCodec{}.Encode(deadline, values)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CommitCtx(context.Background(), key, b, deadline); err != nil {
		t.Fatal(err)
	}
}

func cookieHeader(v string) []any { return []any{[]any{[]byte("cookie"), []byte(v)}} }

// hookLayer is the in-memory layer with a hook run on every Send, to look
// at the world at the moment a message leaves.
type hookLayer struct {
	*inmemory.Layer
	onSend func(channel string, c channels.Content)
}

func (h *hookLayer) Send(ctx context.Context, channel string, c channels.Content) error {
	if h.onSend != nil {
		h.onSend(channel, c)
	}
	return h.Layer.Send(ctx, channel, c)
}

func TestChannelSession(t *testing.T) {
	t.Run("a value set on connect is read on receive", func(t *testing.T) {
		mgr := &session.Manager{Store: session.NewMemoryStore()}
		r := channels.NewRouter()
		r.Route("websocket.connect", mgr.ChannelSession()(channels.ConsumerFunc(func(ctx context.Context, m *channels.Message) error {
			session.FromContext(ctx).Put("room", m.Content.String("path"))
			return m.Reply(ctx, channels.Content{"accept": true})
		})))
		r.Route("websocket.receive", mgr.ChannelSession()(channels.ConsumerFunc(func(ctx context.Context, m *channels.Message) error {
			return m.Reply(ctx, channels.Content{"text": session.FromContext(ctx).GetString("room")})
		})))
		c := channelstest.NewClient(t, r)
		mustConsume(t, c, "websocket.connect", channels.Content{"path": "/lobby/"})
		c.Receive()
		mustConsume(t, c, "websocket.receive", channels.Content{"path": "/", "text": "hi"})
		if got := c.Receive().String("text"); got != "/lobby/" {
			t.Fatalf("receive saw %q, want /lobby/", got)
		}
	})

	t.Run("A2.13 saved after the consumer and before its sends are flushed", func(t *testing.T) {
		st := session.NewMemoryStore()
		mgr := &session.Manager{Store: st}
		l := &hookLayer{Layer: inmemory.MustNew(inmemory.Config{})}
		t.Cleanup(func() { l.Close() })
		var atFlush map[string]any
		l.onSend = func(channel string, c channels.Content) {
			if channel == "y" {
				atFlush = stored(t, st, session.ChannelKey(c.String("reply_channel")))
			}
		}
		var readByY string
		r := channels.NewRouter()
		r.Route("x", mgr.ChannelSession()(channels.ConsumerFunc(func(ctx context.Context, m *channels.Message) error {
			session.FromContext(ctx).Put("value", "set-by-x")
			return channels.Channel{Name: "y"}.Send(ctx, channels.Content{"reply_channel": m.ReplyChannel})
		})))
		r.Route("y", mgr.ChannelSession()(channels.ConsumerFunc(func(ctx context.Context, m *channels.Message) error {
			readByY = session.FromContext(ctx).GetString("value")
			return nil
		})))
		c := channelstest.NewClientOn(t, l, r)
		mustConsume(t, c, "x", nil)
		if atFlush["value"] != "set-by-x" {
			t.Fatalf("when the outbox sent to y the store held %v; the session must be saved before the flush", atFlush)
		}
		mustConsume(t, c, "y", nil)
		if readByY != "set-by-x" {
			t.Fatalf("consumer of y read %q", readByY)
		}
	})

	t.Run("a message without a reply channel is an error", func(t *testing.T) {
		mgr := &session.Manager{Store: session.NewMemoryStore()}
		ran := false
		c := channelstest.NewClient(t, mgr.ChannelSession()(channels.ConsumerFunc(func(context.Context, *channels.Message) error {
			ran = true
			return nil
		})))
		err := c.SendAndConsume("x", channels.Content{"reply_channel": ""})
		if !errors.Is(err, channels.ErrNoReplyChannel) || ran {
			t.Fatalf("err = %v, consumer ran = %v; want ErrNoReplyChannel and no run", err, ran)
		}
	})

	t.Run("a creation conflict consumes the message later", func(t *testing.T) {
		real := session.NewMemoryStore()
		// Another worker created the session between this one's find and
		// its create: the store holds it, but find does not see it.
		mgr := &session.Manager{Store: blindStore{real}}
		ran := false
		c := channelstest.NewClient(t, mgr.ChannelSession()(channels.ConsumerFunc(func(context.Context, *channels.Message) error {
			ran = true
			return nil
		})))
		if err := real.CommitCtx(t.Context(), session.ChannelKey(c.ReplyChannel), mustEncode(t, map[string]any{"x": "y"}), time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		err := c.SendAndConsume("x", channels.Content{"n": 1})
		if !errors.Is(err, channels.ErrConsumeLater) || ran {
			t.Fatalf("err = %v, ran = %v; want ErrConsumeLater without running", err, ran)
		}
		m := c.WaitMessage("x")
		if n, _ := m.Content.Int("__retries__"); n != 1 {
			t.Fatalf("requeued message %v, want __retries__ 1", m.Content)
		}
	})

	t.Run("saved when the consumer fails or panics", func(t *testing.T) {
		for name, end := range map[string]func() error{
			"error": func() error { return errors.New("boom") },
			"panic": func() error { panic("boom") },
		} {
			t.Run(name, func(t *testing.T) {
				st := session.NewMemoryStore()
				mgr := &session.Manager{Store: st}
				c := channelstest.NewClient(t, mgr.ChannelSession()(channels.ConsumerFunc(func(ctx context.Context, m *channels.Message) error {
					session.FromContext(ctx).Put("before", "failing")
					return end()
				})))
				if err := c.SendAndConsume("x", nil); err == nil {
					t.Fatal("no error from a failing consumer")
				}
				if got := stored(t, st, session.ChannelKey(c.ReplyChannel)); got["before"] != "failing" {
					t.Fatalf("store holds %v", got)
				}
			})
		}
	})

	t.Run("saved only when modified, deleted when emptied", func(t *testing.T) {
		st := &countingStore{Store: session.NewMemoryStore()}
		mgr := &session.Manager{Store: st}
		c := channelstest.NewClient(t, mgr.ChannelSession()(channels.ConsumerFunc(func(ctx context.Context, m *channels.Message) error {
			s := session.FromContext(ctx)
			switch m.Content.String("do") {
			case "login":
				session.Login(s, session.UserID("7"), "test")
			case "logout":
				session.Logout(s)
			}
			return nil
		})))
		key := session.ChannelKey(c.ReplyChannel)
		mustConsume(t, c, "x", channels.Content{"do": "login"})
		mustConsume(t, c, "x", channels.Content{"do": "read"})
		if n := st.commits.Load(); n != 1 {
			t.Fatalf("%d commits for one modifying message and one reading message, want 1", n)
		}
		mustConsume(t, c, "x", channels.Content{"do": "logout"})
		if got := stored(t, st, key); got != nil {
			t.Fatalf("after logout the store still holds %v", got)
		}
		var user string
		c.Consumer = mgr.ChannelSessionUser()(channels.ConsumerFunc(func(ctx context.Context, m *channels.Message) error {
			user = session.UserFrom(ctx).ID()
			return nil
		}))
		mustConsume(t, c, "x", nil)
		if user != "" {
			t.Fatalf("user after logout = %q, want anonymous", user)
		}
	})

	t.Run("nested use shares the session and saves it once (W5)", func(t *testing.T) {
		st := &countingStore{Store: session.NewMemoryStore()}
		mgr := &session.Manager{Store: st}
		var outer, inner *session.Session
		sub := mgr.ChannelSession()(channels.ConsumerFunc(func(ctx context.Context, m *channels.Message) error {
			inner = session.FromContext(ctx)
			inner.Put("sub", "saved")
			return nil
		}))
		c := channelstest.NewClient(t, mgr.ChannelSession()(channels.ConsumerFunc(func(ctx context.Context, m *channels.Message) error {
			outer = session.FromContext(ctx)
			return sub.Consume(ctx, m)
		})))
		mustConsume(t, c, "x", nil)
		if outer != inner {
			t.Fatal("the nested middleware loaded a second session")
		}
		if got := stored(t, st, session.ChannelKey(c.ReplyChannel)); got["sub"] != "saved" {
			t.Fatalf("store holds %v", got)
		}
		if n := st.commits.Load(); n != 1 {
			t.Fatalf("%d commits, want 1", n)
		}
	})

	t.Run("no store", func(t *testing.T) {
		c := channelstest.NewClient(t, (&session.Manager{}).ChannelSession()(channels.Ignore))
		if err := c.SendAndConsume("x", nil); !errors.Is(err, session.ErrNoStore) {
			t.Fatalf("err = %v, want ErrNoStore", err)
		}
	})
}

// blindStore never finds anything, as if another process created the
// session just after the lookup.
type blindStore struct{ session.Store }

func (blindStore) FindCtx(context.Context, string) ([]byte, bool, error) { return nil, false, nil }

func mustEncode(t *testing.T, v map[string]any) []byte {
	t.Helper()
	b, err := scs.GobCodec{}.Encode(time.Now().Add(time.Hour), v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustConsume(t *testing.T, c *channelstest.Client, channel string, content channels.Content) {
	t.Helper()
	if err := c.SendAndConsume(channel, content); err != nil {
		t.Fatalf("consume %s: %v", channel, err)
	}
}

func TestHTTPSession(t *testing.T) {
	run := func(t *testing.T, mgr *session.Manager, content channels.Content) *session.Session {
		t.Helper()
		var got *session.Session
		c := channelstest.NewClient(t, mgr.HTTPSession()(channels.ConsumerFunc(func(ctx context.Context, m *channels.Message) error {
			got = session.HTTPFromContext(ctx)
			return nil
		})))
		mustConsume(t, c, "websocket.connect", content)
		return got
	}
	cases := []struct {
		name    string
		mgr     func(st session.Store) *session.Manager
		content channels.Content
		want    string // session key found, "" for none
	}{
		{"cookie", nil, channels.Content{"headers": cookieHeader("a=b; sessionid=tok1")}, "tok1"},
		{"quoted and odd cookies", nil, channels.Content{"headers": cookieHeader(`bad cookie; qux="qu;x"; sessionid=tok1`)}, "tok1"},
		{"custom cookie name", func(st session.Store) *session.Manager {
			return &session.Manager{Store: st, CookieName: "session"}
		}, channels.Content{"headers": cookieHeader("sessionid=nope; session=tok1")}, "tok1"},
		{"no cookie", nil, channels.Content{"headers": []any{}}, ""},
		{"no headers at all (a receive)", nil, channels.Content{"text": "x"}, ""},
		{"unknown session", nil, channels.Content{"headers": cookieHeader("sessionid=unknown")}, ""},
		{"query key ignored by default", nil, channels.Content{"query_string": "session_key=tok1"}, ""},
		{"query key when allowed", func(st session.Store) *session.Manager {
			return &session.Manager{Store: st, AllowQueryKey: true}
		}, channels.Content{"query_string": []byte("a=1&session_key=tok1")}, "tok1"},
		{"legacy header map", nil, channels.Content{"headers": map[string]any{"cookie": []byte("sessionid=tok1")}}, "tok1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := &countingStore{Store: session.NewMemoryStore()}
			putHTTPSession(t, st.Store, "tok1", map[string]any{"k": "v"})
			mgr := &session.Manager{Store: st}
			if tc.mgr != nil {
				mgr = tc.mgr(st)
			}
			s := run(t, mgr, tc.content)
			switch {
			case tc.want == "" && s != nil:
				t.Fatalf("found session %q, want none", s.Key())
			case tc.want != "" && (s == nil || s.Key() != tc.want || s.GetString("k") != "v"):
				t.Fatalf("session = %v, want %q with k=v", s, tc.want)
			}
			if n := st.commits.Load(); n != 0 {
				t.Fatalf("%d commits: HTTPSession never creates or rewrites unmodified sessions", n)
			}
		})
	}

	t.Run("hashed tokens, as scs HashTokenInStore", func(t *testing.T) {
		st := session.NewMemoryStore()
		mgr := &session.Manager{Store: st, HashHTTPTokens: true}
		putHTTPSession(t, st, mgr.HTTPStoreKey("tok1"), map[string]any{"k": "v"})
		if s := run(t, mgr, channels.Content{"headers": cookieHeader("sessionid=tok1")}); s == nil || s.GetString("k") != "v" {
			t.Fatalf("session = %v", s)
		}
	})

	t.Run("modified sessions are saved, also after an error", func(t *testing.T) {
		st := session.NewMemoryStore()
		mgr := &session.Manager{Store: st}
		putHTTPSession(t, st, "tok1", map[string]any{"k": "v"})
		c := channelstest.NewClient(t, mgr.HTTPSession()(channels.ConsumerFunc(func(ctx context.Context, m *channels.Message) error {
			session.HTTPFromContext(ctx).Put("seen", true)
			return errors.New("fails after writing")
		})))
		if err := c.SendAndConsume("websocket.connect", channels.Content{"headers": cookieHeader("sessionid=tok1")}); err == nil {
			t.Fatal("want the consumer's error")
		}
		if got := stored(t, st, "tok1"); got["seen"] != true || got["k"] != "v" {
			t.Fatalf("store holds %v", got)
		}
	})
}

// TestB31ChannelAndHTTPSession is spec §9.3's tested case.
func TestB31ChannelAndHTTPSession(t *testing.T) {
	st := session.NewMemoryStore()
	mgr := &session.Manager{Store: st}
	putHTTPSession(t, st, "httpkey1", map[string]any{"cart": "3 items"})
	var stored, later string
	var laterCart string
	c := channelstest.NewClient(t, mgr.ChannelAndHTTPSession()(channels.ConsumerFunc(func(ctx context.Context, m *channels.Message) error {
		if m.Channel == "websocket.connect" {
			stored = session.FromContext(ctx).GetString("sessionid")
			return nil
		}
		if hs := session.HTTPFromContext(ctx); hs != nil {
			later, laterCart = hs.Key(), hs.GetString("cart")
		}
		return nil
	})))
	mustConsume(t, c, "websocket.connect", channels.Content{"path": "/", "headers": cookieHeader("sessionid=httpkey1")})
	if stored != "httpkey1" {
		t.Fatalf("channel_session[sessionid] = %q, want httpkey1", stored)
	}
	mustConsume(t, c, "websocket.receive", channels.Content{"path": "/"})
	if later != "httpkey1" || laterCart != "3 items" {
		t.Fatalf("later message: http session %q (cart %q), want httpkey1 (3 items)", later, laterCart)
	}
}

type hashedUser struct{ id, hash string }

func (u hashedUser) ID() string          { return u.id }
func (u hashedUser) SessionHash() string { return u.hash }

func TestHTTPUser(t *testing.T) {
	layer := inmemory.MustNew(inmemory.Config{})
	t.Cleanup(func() { layer.Close() })
	st := session.NewMemoryStore()
	users := map[string]session.User{"42": hashedUser{"42", "pw1"}}
	mgr := &session.Manager{Store: st, Users: session.UsersByID(func(_ context.Context, id string) (session.User, error) {
		return users[id], nil
	})}
	// The HTTP side logged user 42 in.
	hs := map[string]any{}
	hsess := map[string]any{session.AuthUserIDKey: "42", session.AuthBackendKey: "password", session.AuthHashKey: "pw1"}
	for k, v := range hsess {
		hs[k] = v
	}
	putHTTPSession(t, st, "tok42", hs)

	var seen []string
	consumer := mgr.HTTPUser()(channels.ConsumerFunc(func(ctx context.Context, m *channels.Message) error {
		seen = append(seen, session.UserFrom(ctx).ID())
		if m.Channel == "websocket.connect" {
			return m.Reply(ctx, channels.Content{"accept": true})
		}
		return nil
	}))
	c := channelstest.NewClientOn(t, layer, consumer)
	mustConsume(t, c, "websocket.connect", channels.Content{"path": "/", "headers": cookieHeader("sessionid=tok42")})
	c.Receive()
	mustConsume(t, c, "websocket.receive", channels.Content{"path": "/", "text": "hello"})
	if !slices.Equal(seen, []string{"42", "42"}) {
		t.Fatalf("users seen %q, want 42 on connect and on receive", seen)
	}
	cs := stored(t, st, session.ChannelKey(c.ReplyChannel))
	for k, v := range hsess {
		if cs[k] != v {
			t.Fatalf("channel session %v lacks %s=%v", cs, k, v)
		}
	}
	members, _ := layer.GroupChannels(t.Context(), session.UserGroup("42"))
	if !slices.Contains(members, c.ReplyChannel) {
		t.Fatalf("user group holds %v, want the socket %s", members, c.ReplyChannel)
	}

	t.Run("LogoutSockets closes the user's sockets", func(t *testing.T) {
		n, err := mgr.LogoutSockets(t.Context(), layer, "42")
		if err != nil || n != 1 {
			t.Fatalf("LogoutSockets = %d, %v; want 1 socket", n, err)
		}
		if got := c.Receive(); got["close"] != int64(session.DefaultLogoutCloseCode) {
			t.Fatalf("socket got %v, want close %d", got, session.DefaultLogoutCloseCode)
		}
		if members, _ := layer.GroupChannels(t.Context(), session.UserGroup("42")); len(members) != 0 {
			t.Fatalf("user group still holds %v", members)
		}
		// The gateway's disconnect still knows who left.
		seen = nil
		mustConsume(t, c, "websocket.disconnect", channels.Content{"path": "/", "code": session.DefaultLogoutCloseCode})
		if !slices.Equal(seen, []string{"42"}) {
			t.Fatalf("disconnect ran as %q, want 42", seen)
		}
		if n, err := mgr.LogoutSockets(t.Context(), layer, "42"); n != 0 || err != nil {
			t.Fatalf("second LogoutSockets = %d, %v", n, err)
		}
	})

	t.Run("disconnect leaves the user group", func(t *testing.T) {
		c2 := channelstest.NewClientOn(t, layer, consumer)
		mustConsume(t, c2, "websocket.connect", channels.Content{"path": "/", "headers": cookieHeader("sessionid=tok42")})
		mustConsume(t, c2, "websocket.disconnect", channels.Content{"path": "/", "code": 1000})
		if members, _ := layer.GroupChannels(t.Context(), session.UserGroup("42")); slices.Contains(members, c2.ReplyChannel) {
			t.Fatalf("user group still holds the closed socket: %v", members)
		}
	})

	t.Run("a changed password ends the session", func(t *testing.T) {
		users["42"] = hashedUser{"42", "pw2"}
		defer func() { users["42"] = hashedUser{"42", "pw1"} }()
		c3 := channelstest.NewClientOn(t, layer, consumer)
		seen = nil
		mustConsume(t, c3, "websocket.connect", channels.Content{"path": "/", "headers": cookieHeader("sessionid=tok42")})
		if !slices.Equal(seen, []string{""}) {
			t.Fatalf("user = %q, want anonymous", seen)
		}
	})

	t.Run("anonymous connect", func(t *testing.T) {
		c4 := channelstest.NewClientOn(t, layer, consumer)
		seen = nil
		mustConsume(t, c4, "websocket.connect", channels.Content{"path": "/"})
		if !slices.Equal(seen, []string{""}) {
			t.Fatalf("user = %q, want anonymous", seen)
		}
	})
}

func TestChannelKey(t *testing.T) {
	k := session.ChannelKey("websocket.send.abc!def")
	if len(k) != 32 || k[:3] != "chn" {
		t.Fatalf("ChannelKey = %q, want chn + 29 hex digits", k)
	}
	if k == session.ChannelKey("websocket.send.abc!deg") {
		t.Fatal("two reply channels share a key")
	}
	if g := session.UserGroup("ada@example.com"); channels.ValidateGroupName(g) != nil {
		t.Fatalf("UserGroup = %q is not a valid group name", g)
	}
}

// quietLogger sends logs to the test's output at warning level and above.
func quietLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}
