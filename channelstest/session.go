package channelstest

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/session"
)

// Login stores an HTTP session in which u is logged in, the way the HTTP
// side of the application would (through mgr's HTTP store, codec and token
// hashing), and returns its session cookie. Attach it to a live socket with
//
//	ws := srv.NewWSClient("/chat/")
//	ws.Cookies = append(ws.Cookies, channelstest.Login(t, mgr, user))
//	ws.Dial()
//
// or to a message-level Socket with AddCookie. The test fails if the
// session cannot be stored.
func Login(t TB, mgr *session.Manager, u session.User) *http.Cookie {
	t.Helper()
	return HTTPSession(t, mgr, session.AuthValues(u, "channelstest"))
}

// HTTPSession stores an HTTP session holding values, as Login does, and
// returns its session cookie.
func HTTPSession(t TB, mgr *session.Manager, values map[string]any) *http.Cookie {
	t.Helper()
	token, err := mgr.NewHTTPSession(context.Background(), values)
	if err != nil {
		t.Fatalf("channelstest: %v", err)
	}
	return mgr.Cookie(token)
}

// Socket is one WebSocket connection played at the message level on a
// Client, the way a gateway would play it (Django Channels' HttpClient and
// WSClient): every message carries the client's reply channel and the
// socket's path, the connect also its headers (with the cookies) and query
// string, and each is stamped with its "order" (0 for the connect, 1, 2, ...
// for the frames, then the disconnect), so consumers that enforce ordering
// can be tested. Each method sends its message and consumes it at once,
// returning the consumer's error; use Prepare to send messages in another
// order. A Socket is not safe for concurrent use.
type Socket struct {
	// Client sends, consumes and receives.
	Client *Client
	// Path is the socket's path; a query string after '?' goes to the
	// connect's "query_string".
	Path string
	// Header holds the handshake headers of the connect ("Origin", ...);
	// cookies added with AddCookie go in its Cookie header.
	Header http.Header

	cookies []*http.Cookie
	order   int64
}

// NewSocket returns a socket on path that has not connected yet.
func NewSocket(c *Client, path string) *Socket {
	return &Socket{Client: c, Path: path, Header: make(http.Header)}
}

// AddCookie adds a cookie to the connect's headers, replacing one of the
// same name (the later value wins).
func (s *Socket) AddCookie(c *http.Cookie) {
	for i, old := range s.cookies {
		if old.Name == c.Name {
			s.cookies[i] = c
			return
		}
	}
	s.cookies = append(s.cookies, c)
}

// Prepare returns the content of the socket's next message on channel: a
// copy of content with "reply_channel", "path" and the next "order" set
// (and, for "websocket.connect", "headers" and "query_string"). It
// advances the order without sending anything.
func (s *Socket) Prepare(channel string, content channels.Content) channels.Content {
	s.Client.T.Helper()
	c := content.Clone()
	if c == nil {
		c = channels.Content{}
	}
	if _, ok := c["order"]; ok {
		s.Client.T.Fatalf("channelstest: Socket stamps the order itself; do not pass one")
	}
	path, query, _ := strings.Cut(s.Path, "?")
	c["reply_channel"] = s.Client.ReplyChannel
	c["path"] = path
	c["order"] = s.order
	s.order++
	if channel == "websocket.connect" {
		c["query_string"] = query
		c["headers"] = s.headers()
	}
	return c
}

// headers returns the connect's headers as ASGI pairs: lower-case names,
// byte strings.
func (s *Socket) headers() []any {
	var out []any
	for name, values := range s.Header {
		if strings.EqualFold(name, "cookie") {
			continue
		}
		for _, v := range values {
			out = append(out, []any{[]byte(strings.ToLower(name)), []byte(v)})
		}
	}
	parts := slices.Clone(s.Header.Values("Cookie"))
	for _, c := range s.cookies {
		parts = append(parts, (&http.Cookie{Name: c.Name, Value: c.Value}).String())
	}
	if len(parts) > 0 {
		out = append(out, []any{[]byte("cookie"), []byte(strings.Join(parts, "; "))})
	}
	return out
}

func (s *Socket) sendAndConsume(channel string, content channels.Content) error {
	s.Client.T.Helper()
	s.Client.Send(channel, s.Prepare(channel, content))
	return s.Client.Consume(channel)
}

// Connect sends and consumes the "websocket.connect" and fails the test
// unless the consumer returned no error and answered exactly
// {"accept": true} (Django Channels 1.0.3's check_accept).
func (s *Socket) Connect() {
	s.Client.T.Helper()
	reply, err := s.TryConnect()
	if err != nil {
		s.Client.T.Fatalf("channelstest: connect to %s: %v", s.Path, err)
	}
	if len(reply) != 1 || reply["accept"] != true {
		s.Client.T.Fatalf("channelstest: connect to %s answered %v, want {accept: true}", s.Path, reply)
	}
}

// TryConnect sends and consumes the "websocket.connect" and returns the
// first reply (nil when there is none) and the consumer's error, for
// consumers that reject or answer with a frame.
func (s *Socket) TryConnect() (channels.Content, error) {
	s.Client.T.Helper()
	err := s.sendAndConsume("websocket.connect", nil)
	if m := s.Client.GetNextMessage(s.Client.ReplyChannel); m != nil {
		return m.Content, err
	}
	return nil, err
}

// SendText sends and consumes a text frame.
func (s *Socket) SendText(text string) error {
	s.Client.T.Helper()
	return s.sendAndConsume("websocket.receive", channels.Content{"text": text})
}

// SendBytes sends and consumes a binary frame.
func (s *Socket) SendBytes(b []byte) error {
	s.Client.T.Helper()
	return s.sendAndConsume("websocket.receive", channels.Content{"bytes": b})
}

// SendJSON sends and consumes v encoded as JSON in a text frame.
func (s *Socket) SendJSON(v any) error {
	s.Client.T.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		s.Client.T.Fatalf("channelstest: encode %T: %v", v, err)
	}
	return s.SendText(string(b))
}

// Disconnect sends and consumes the "websocket.disconnect" with code.
func (s *Socket) Disconnect(code int) error {
	s.Client.T.Helper()
	return s.sendAndConsume("websocket.disconnect", channels.Content{"code": code})
}

// Receive returns the next reply, failing the test if none comes.
func (s *Socket) Receive() channels.Content {
	s.Client.T.Helper()
	return s.Client.Receive()
}

// ReceiveText returns the text of the next reply, failing the test if it
// has none.
func (s *Socket) ReceiveText() string {
	s.Client.T.Helper()
	c := s.Client.Receive()
	text, ok := c["text"].(string)
	if !ok {
		s.Client.T.Fatalf("channelstest: expected a text frame, got %v", c)
	}
	return text
}

// ReceiveJSON decodes the text of the next reply into v.
func (s *Socket) ReceiveJSON(v any) {
	s.Client.T.Helper()
	text := s.ReceiveText()
	if err := json.Unmarshal([]byte(text), v); err != nil {
		s.Client.T.Fatalf("channelstest: reply %q is not JSON for %T: %v", text, v, err)
	}
}

// ChannelSession returns the stored channel session of the socket (nil
// when it has none yet): what the session middleware saved.
func (s *Socket) ChannelSession(mgr *session.Manager) *session.Session {
	s.Client.T.Helper()
	cs, err := mgr.LoadChannelSession(context.Background(), s.Client.ReplyChannel)
	if err != nil {
		s.Client.T.Fatalf("channelstest: %v", err)
	}
	return cs
}
