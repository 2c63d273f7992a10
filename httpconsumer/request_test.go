package httpconsumer_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"mime/multipart"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/httpconsumer"
	"github.com/google/go-cmp/cmp"
)

// Every value of worker-and-consumers.md §6.1 the handler derives from the
// message, including checklist B.33 (SERVER_PORT is a string).
func TestRequestValues(t *testing.T) {
	tests := []struct {
		name  string
		msg   channels.Content
		check func(t *testing.T, s seen)
	}{
		{"method is upper-cased", with(get("/"), "method", "post"), func(t *testing.T, s seen) {
			if s.r.Method != "POST" {
				t.Errorf("Method = %q, want POST", s.r.Method)
			}
		}},
		{"path without root path", get("/a%2Fb c/"), func(t *testing.T, s seen) {
			if s.r.URL.Path != "/a%2Fb c/" || s.rootPath != "" {
				t.Errorf("URL.Path = %q, RootPath = %q", s.r.URL.Path, s.rootPath)
			}
			if s.r.RequestURI != "/a%252Fb%20c/" {
				t.Errorf("RequestURI = %q", s.r.RequestURI)
			}
		}},
		{"root path is removed from the path", with(get("/forum/topics/1/"), "root_path", "/forum", "query_string", []byte("page=2")), func(t *testing.T, s seen) {
			if s.r.URL.Path != "/topics/1/" {
				t.Errorf("URL.Path = %q, want /topics/1/", s.r.URL.Path)
			}
			if s.rootPath != "/forum" {
				t.Errorf("RootPath = %q, want /forum", s.rootPath)
			}
			if s.r.RequestURI != "/forum/topics/1/?page=2" {
				t.Errorf("RequestURI = %q, want the full path and query", s.r.RequestURI)
			}
		}},
		{"path equal to the root path is /", with(get("/forum"), "root_path", "/forum"), func(t *testing.T, s seen) {
			if s.r.URL.Path != "/" {
				t.Errorf("URL.Path = %q, want /", s.r.URL.Path)
			}
		}},
		{"path outside the root path is kept", with(get("/other/"), "root_path", "/forum"), func(t *testing.T, s seen) {
			if s.r.URL.Path != "/other/" || s.rootPath != "/forum" {
				t.Errorf("URL.Path = %q, RootPath = %q", s.r.URL.Path, s.rootPath)
			}
		}},
		{"raw query", with(get("/"), "query_string", []byte("a=%20b&c")), func(t *testing.T, s seen) {
			if s.r.URL.RawQuery != "a=%20b&c" {
				t.Errorf("RawQuery = %q", s.r.URL.RawQuery)
			}
		}},
		{"absent query string", with(get("/p"), "query_string", nil), func(t *testing.T, s seen) {
			if s.r.URL.RawQuery != "" || s.r.RequestURI != "/p" {
				t.Errorf("RawQuery = %q, RequestURI = %q", s.r.URL.RawQuery, s.r.RequestURI)
			}
		}},
		{"HTTP/1.0", with(get("/"), "http_version", "1.0"), func(t *testing.T, s seen) {
			if s.r.Proto != "HTTP/1.0" || s.r.ProtoMajor != 1 || s.r.ProtoMinor != 0 {
				t.Errorf("Proto = %q %d.%d", s.r.Proto, s.r.ProtoMajor, s.r.ProtoMinor)
			}
		}},
		{"HTTP/1.1", get("/"), func(t *testing.T, s seen) {
			if s.r.Proto != "HTTP/1.1" || !s.r.ProtoAtLeast(1, 1) {
				t.Errorf("Proto = %q", s.r.Proto)
			}
		}},
		{"HTTP/2", with(get("/"), "http_version", "2"), func(t *testing.T, s seen) {
			if s.r.Proto != "HTTP/2.0" || s.r.ProtoMajor != 2 || s.r.ProtoMinor != 0 {
				t.Errorf("Proto = %q %d.%d", s.r.Proto, s.r.ProtoMajor, s.r.ProtoMinor)
			}
		}},
		{"absent http_version is 1.1", with(get("/"), "http_version", nil), func(t *testing.T, s seen) {
			if s.r.Proto != "HTTP/1.1" {
				t.Errorf("Proto = %q", s.r.Proto)
			}
		}},
		{"headers canonicalised, repeated headers kept", with(get("/"), "headers", []any{
			[]any{[]byte("host"), []byte("example.com:8000")},
			[]any{[]byte("x-forwarded-for"), []byte("1.1.1.1")},
			[]any{[]byte("accept"), []byte("text/html")},
			[]any{[]byte("x-forwarded-for"), []byte("2.2.2.2")},
			[]any{[]byte("content-type"), []byte("text/plain; charset=utf-8")},
		}), func(t *testing.T, s seen) {
			want := http.Header{
				"X-Forwarded-For": {"1.1.1.1", "2.2.2.2"},
				"Accept":          {"text/html"},
				"Content-Type":    {"text/plain; charset=utf-8"},
			}
			if diff := cmp.Diff(want, s.r.Header); diff != "" {
				t.Errorf("Header (-want +got):\n%s", diff)
			}
			if s.r.Host != "example.com:8000" {
				t.Errorf("Host = %q", s.r.Host)
			}
		}},
		{"header values are Latin-1", with(get("/"), "headers", []any{
			[]any{[]byte("x-name"), []byte("caf\xe9")},
		}), func(t *testing.T, s seen) {
			if got := s.r.Header.Get("X-Name"); got != "café" {
				t.Errorf("X-Name = %q, want café", got)
			}
		}},
		{"legacy header map", with(get("/"), "headers", map[string]any{
			"host":         []byte("legacy.example"),
			"content-type": []byte("application/json"),
			"x-text":       "text value",
		}), func(t *testing.T, s seen) {
			want := http.Header{"Content-Type": {"application/json"}, "X-Text": {"text value"}}
			if diff := cmp.Diff(want, s.r.Header); diff != "" {
				t.Errorf("Header (-want +got):\n%s", diff)
			}
			if s.r.Host != "legacy.example" {
				t.Errorf("Host = %q", s.r.Host)
			}
		}},
		{"no headers at all", with(get("/"), "headers", nil), func(t *testing.T, s seen) {
			if len(s.r.Header) != 0 || s.r.Header == nil {
				t.Errorf("Header = %#v, want empty", s.r.Header)
			}
			if s.r.Host != "10.0.0.2" {
				t.Errorf("Host = %q, want the server address without the default port", s.r.Host)
			}
		}},
		{"host from server with a port", with(get("/"), "headers", nil, "server", []any{"10.0.0.2", int64(8000)}), func(t *testing.T, s seen) {
			if s.r.Host != "10.0.0.2:8000" {
				t.Errorf("Host = %q", s.r.Host)
			}
		}},
		{"host from an IPv6 server", with(get("/"), "headers", nil, "server", []any{"2001:db8::2", int64(80)}), func(t *testing.T, s seen) {
			if s.r.Host != "[2001:db8::2]" {
				t.Errorf("Host = %q", s.r.Host)
			}
		}},
		{"client and server", get("/"), func(t *testing.T, s seen) {
			if s.r.RemoteAddr != "192.0.2.7:51000" {
				t.Errorf("RemoteAddr = %q", s.r.RemoteAddr)
			}
			if s.serverName != "10.0.0.2" || s.serverPort != "80" {
				t.Errorf("ServerName, ServerPort = %q, %q; want 10.0.0.2, \"80\" (B.33)", s.serverName, s.serverPort)
			}
			addr, ok := s.r.Context().Value(http.LocalAddrContextKey).(net.Addr)
			if !ok || addr.String() != "10.0.0.2:80" {
				t.Errorf("LocalAddrContextKey = %v", s.r.Context().Value(http.LocalAddrContextKey))
			}
		}},
		{"IPv6 client", with(get("/"), "client", []any{"2001:db8::1", int64(443)}), func(t *testing.T, s seen) {
			if s.r.RemoteAddr != "[2001:db8::1]:443" {
				t.Errorf("RemoteAddr = %q", s.r.RemoteAddr)
			}
		}},
		{"null client and server", with(get("/"), "client", nil, "server", nil), func(t *testing.T, s seen) {
			if s.r.RemoteAddr != "" {
				t.Errorf("RemoteAddr = %q, want empty", s.r.RemoteAddr)
			}
			if s.serverName != "unknown" || s.serverPort != "0" {
				t.Errorf("ServerName, ServerPort = %q, %q; want unknown, \"0\" (B.33)", s.serverName, s.serverPort)
			}
			if s.r.Context().Value(http.LocalAddrContextKey) != nil {
				t.Errorf("LocalAddrContextKey set without a server")
			}
		}},
		{"server port from a JSON number", with(get("/"), "server", []any{"example.com", float64(8080)}), func(t *testing.T, s seen) {
			if s.serverName != "example.com" || s.serverPort != "8080" {
				t.Errorf("ServerName, ServerPort = %q, %q", s.serverName, s.serverPort)
			}
		}},
		{"http scheme", get("/"), func(t *testing.T, s seen) {
			if s.r.TLS != nil || s.scheme != "http" {
				t.Errorf("TLS = %v, Scheme = %q", s.r.TLS, s.scheme)
			}
		}},
		{"https scheme", with(get("/"), "scheme", "https"), func(t *testing.T, s seen) {
			if s.r.TLS == nil || !s.r.TLS.HandshakeComplete || s.scheme != "https" {
				t.Errorf("TLS = %v, Scheme = %q", s.r.TLS, s.scheme)
			}
		}},
		{"absent scheme is http", with(get("/"), "scheme", nil), func(t *testing.T, s seen) {
			if s.r.TLS != nil || s.scheme != "http" {
				t.Errorf("TLS = %v, Scheme = %q", s.r.TLS, s.scheme)
			}
		}},
		{"inline body", with(get("/"), "method", "POST", "body", []byte("a=1&b=2")), func(t *testing.T, s seen) {
			if s.body != "a=1&b=2" || s.r.ContentLength != 7 {
				t.Errorf("body %q, ContentLength %d", s.body, s.r.ContentLength)
			}
		}},
		{"no body", get("/"), func(t *testing.T, s seen) {
			if s.body != "" || s.r.ContentLength != 0 || s.r.Body != http.NoBody {
				t.Errorf("body %q, ContentLength %d, Body %T", s.body, s.r.ContentLength, s.r.Body)
			}
		}},
		{"message and context", get("/"), func(t *testing.T, s seen) {
			if s.message == nil || s.message.ReplyChannel == "" || s.message.Content.String("path") != "/" {
				t.Errorf("Message = %+v", s.message)
			}
			if !s.inConsumer {
				t.Errorf("the request's context is not the consumer's")
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, resp := capture(t, tt.msg)
			if resp.status != 200 {
				t.Fatalf("status %d", resp.status)
			}
			tt.check(t, s)
		})
	}
}

// worker-and-consumers.md §6.1: GET parsing of the raw query string.
func TestQueryString(t *testing.T) {
	s, _ := capture(t, with(get("/"), "query_string", []byte("x=1&y=%26foo+bar%2Bbaz")))
	q := s.r.URL.Query()
	if q.Get("x") != "1" || q.Get("y") != "&foo bar+baz" {
		t.Errorf("x = %q, y = %q; want 1, &foo bar+baz", q.Get("x"), q.Get("y"))
	}
	if s.r.FormValue("y") != "&foo bar+baz" {
		t.Errorf("FormValue(y) = %q", s.r.FormValue("y"))
	}
}

// §6.1 COOKIES: the Cookie header is parsed, from one or several headers.
func TestRequestCookies(t *testing.T) {
	s, _ := capture(t, with(get("/"), "headers", []any{
		[]any{[]byte("cookie"), []byte("sessionid=abc123; csrftoken=xyz")},
		[]any{[]byte("cookie"), []byte("theme=dark")},
	}))
	got := map[string]string{}
	for _, c := range s.r.Cookies() {
		got[c.Name] = c.Value
	}
	want := map[string]string{"sessionid": "abc123", "csrftoken": "xyz", "theme": "dark"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("cookies (-want +got):\n%s", diff)
	}
}

// Routing filters' captured values reach the handler as r.PathValue.
func TestPathValues(t *testing.T) {
	var room string
	c := httpconsumer.New(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		room = r.PathValue("room")
	}))
	c.Logger = testLogger(t)
	router := channels.NewRouter()
	router.Route("http.request", c, channels.Path(`^/rooms/(?P<room>[a-z]+)/$`))
	cl := newClientOnRouter(t, router)
	cl.Send("http.request", get("/rooms/lobby/"))
	if err := cl.Consume("http.request"); err != nil {
		t.Fatal(err)
	}
	receiveResponse(t, cl)
	if room != "lobby" {
		t.Errorf("PathValue(room) = %q, want lobby", room)
	}
}

// A handler under http.ServeMux, mounted below a root path, routes on the
// path with the root removed.
func TestServeMuxUnderRootPath(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /items/{id}", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, httpconsumer.RootPath(r)+" item "+r.PathValue("id"))
	})
	resp := serve(t, httpconsumer.New(mux), with(get("/shop/items/42"), "root_path", "/shop"))
	if resp.status != 200 || resp.body != "/shop item 42" {
		t.Errorf("got %d %q", resp.status, resp.body)
	}
}

// The request's context ends when the handler returns, as in net/http.
func TestContextEndsWithHandler(t *testing.T) {
	var ctx context.Context
	c := httpconsumer.New(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx = r.Context()
		if ctx.Err() != nil {
			t.Errorf("context done while the handler runs")
		}
	}))
	serve(t, c, get("/"))
	if ctx.Err() == nil {
		t.Errorf("context still live after the handler returned")
	}
}

// §6.3: an undecodable request gets 400 and the handler does not run.
func TestBadRequest(t *testing.T) {
	tests := []struct {
		name string
		msg  channels.Content
	}{
		{"path is bytes", with(get("/"), "path", []byte("/"))},
		{"path missing", with(get("/"), "path", nil)},
		{"path not UTF-8", with(get("/"), "path", "/\xff")},
		{"method missing", with(get("/"), "method", nil)},
		{"method with a space", with(get("/"), "method", "GE T")},
		{"root_path is bytes", with(get("/"), "root_path", []byte("/x"))},
		{"query_string is a number", with(get("/"), "query_string", int64(1))},
		{"query_string with a newline", with(get("/"), "query_string", []byte("a=1\r\nb"))},
		{"http_version is a number", with(get("/"), "http_version", int64(1))},
		{"http_version is not a version", with(get("/"), "http_version", "one")},
		{"scheme is bytes", with(get("/"), "scheme", []byte("http"))},
		{"headers is text", with(get("/"), "headers", "host: x")},
		{"header is not a pair", with(get("/"), "headers", []any{[]any{[]byte("a")}})},
		{"header is a triple", with(get("/"), "headers", []any{[]any{[]byte("a"), []byte("b"), []byte("c")}})},
		{"header name is a number", with(get("/"), "headers", []any{[]any{int64(1), []byte("b")}})},
		{"header value is a number", with(get("/"), "headers", []any{[]any{[]byte("a"), int64(1)}})},
		{"header name with a space", with(get("/"), "headers", []any{[]any{[]byte("x y"), []byte("b")}})},
		{"header value with a newline", with(get("/"), "headers", []any{[]any{[]byte("x"), []byte("a\r\nSet-Cookie: x")}})},
		{"legacy header value is a list", with(get("/"), "headers", map[string]any{"x": []any{}})},
		{"two Host headers", with(get("/"), "headers", []any{[]any{[]byte("host"), []byte("a")}, []any{[]byte("host"), []byte("b")}})},
		{"client is text", with(get("/"), "client", "1.2.3.4:5")},
		{"client port is text", with(get("/"), "client", []any{"1.2.3.4", "5"})},
		{"server has one element", with(get("/"), "server", []any{"1.2.3.4"})},
		{"server port is negative", with(get("/"), "server", []any{"1.2.3.4", int64(-1)})},
		{"body is text", with(get("/"), "body", "text")},
		{"body_channel is a number", with(get("/"), "body_channel", int64(3))},
		{"body_channel is not a channel name", with(get("/"), "body_channel", "not a channel")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			called := false
			c := httpconsumer.New(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { called = true }))
			resp := serve(t, c, tt.msg)
			if resp.status != 400 || resp.body != "400 Bad Request\n" {
				t.Errorf("got %d %q, want 400", resp.status, resp.body)
			}
			if called {
				t.Errorf("the handler ran")
			}
		})
	}
}

// newBodyChannel returns a fresh body channel on the client's layer.
func newBodyChannel(t *testing.T, l channels.Layer) string {
	t.Helper()
	ch, err := l.NewChannel(context.Background(), "http.request.body?")
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// §6.2: the body is the inline body followed by the chunks of the body
// channel; closed means no response at all; too slow means 408.
func TestBodyChannel(t *testing.T) {
	type chunk = channels.Content
	tests := []struct {
		name        string
		inline      []byte
		chunks      []chunk
		maxBodySize int64
		wantBody    string // when the handler runs
		wantStatus  int64  // when it does not; 0 means no response at all
		wantText    string
	}{
		{name: "one chunk", chunks: []chunk{{"content": []byte("hello")}}, wantBody: "hello"},
		{name: "inline and chunks", inline: []byte("ab"), chunks: []chunk{
			{"content": []byte("cd"), "more_content": true},
			{"content": []byte("ef"), "more_content": true},
			{"content": []byte("gh")},
		}, wantBody: "abcdefgh"},
		{name: "chunk without content ends the body", inline: []byte("ab"), chunks: []chunk{{"more_content": false}}, wantBody: "ab"},
		{name: "messages after the last chunk are ignored", chunks: []chunk{
			{"content": []byte("x")},
			{"content": []byte("ignored")},
		}, wantBody: "x"},
		{name: "closed means no response", chunks: []chunk{
			{"content": []byte("part"), "more_content": true},
			{"closed": true},
		}},
		{name: "too large", maxBodySize: 5, inline: []byte("abc"), chunks: []chunk{
			{"content": []byte("def"), "more_content": true},
			{"content": []byte("ghi")},
		}, wantStatus: 413, wantText: "413 Request Entity Too Large\n"},
		{name: "inline body too large", maxBodySize: 2, inline: []byte("abc"), wantStatus: 413, wantText: "413 Request Entity Too Large\n"},
		{name: "content that is text", chunks: []chunk{{"content": "text"}}, wantStatus: 400, wantText: "400 Bad Request\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got *string
			c := httpconsumer.New(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, err := io.ReadAll(r.Body)
				if err != nil {
					t.Errorf("read body: %v", err)
				}
				s := string(b)
				got = &s
				if r.ContentLength != int64(len(b)) {
					t.Errorf("ContentLength = %d, body has %d bytes", r.ContentLength, len(b))
				}
				io.WriteString(w, "ok")
			}))
			c.MaxBodySize = tt.maxBodySize
			cl := newClient(t, c)
			msg := with(get("/upload/"), "method", "POST")
			if tt.inline != nil {
				msg["body"] = tt.inline
			}
			if tt.chunks != nil {
				bc := newBodyChannel(t, cl.Layer)
				msg["body_channel"] = bc
				for _, ch := range tt.chunks {
					cl.Send(bc, ch)
				}
			}
			cl.Send("http.request", msg)
			if err := cl.Consume("http.request"); err != nil {
				t.Fatalf("Consume: %v", err)
			}
			switch {
			case tt.wantStatus != 0:
				resp := receiveResponse(t, cl)
				if resp.status != tt.wantStatus || resp.body != tt.wantText {
					t.Errorf("got %d %q, want %d %q", resp.status, resp.body, tt.wantStatus, tt.wantText)
				}
				if got != nil {
					t.Errorf("the handler ran")
				}
			case tt.wantBody == "":
				cl.ReceiveNothing()
				if got != nil {
					t.Errorf("the handler ran")
				}
			default:
				resp := receiveResponse(t, cl)
				if resp.status != 200 || got == nil || *got != tt.wantBody {
					t.Errorf("status %d, handler body %v, want %q", resp.status, got, tt.wantBody)
				}
			}
			cl.ReceiveNothing()
		})
	}
}

// §6.2: a body that does not arrive within BodyTimeout gets 408.
func TestBodyTimeout(t *testing.T) {
	called := false
	c := httpconsumer.New(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { called = true }))
	c.BodyTimeout = 50 * time.Millisecond
	cl := newClient(t, c)
	bc := newBodyChannel(t, cl.Layer)
	cl.Send(bc, channels.Content{"content": []byte("first"), "more_content": true})
	cl.Send("http.request", with(get("/upload/"), "method", "POST", "body_channel", bc))
	if err := cl.Consume("http.request"); err != nil {
		t.Fatalf("Consume: %v", err)
	}
	resp := receiveResponse(t, cl)
	if resp.status != 408 || resp.body != "408 Request Timeout (upload too slow)" {
		t.Errorf("got %d %q", resp.status, resp.body)
	}
	if called {
		t.Errorf("the handler ran")
	}
}

// When the worker stops while a body is awaited, Consume returns the
// context's error and sends nothing.
func TestBodyContextCancelled(t *testing.T) {
	c := httpconsumer.New(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { t.Error("the handler ran") }))
	cl := newClient(t, c)
	bc := newBodyChannel(t, cl.Layer)
	cl.Send("http.request", with(get("/upload/"), "method", "POST", "body_channel", bc))
	m := cl.WaitMessage("http.request")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Consume(ctx, m); !errors.Is(err, context.Canceled) {
		t.Errorf("Consume = %v, want context.Canceled", err)
	}
	cl.ReceiveNothing()
}

// A message without a reply channel cannot be answered.
func TestNoReplyChannel(t *testing.T) {
	c := httpconsumer.New(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { t.Error("the handler ran") }))
	m := channels.NewMessage(nil, "http.request", get("/"))
	if err := c.Consume(context.Background(), m); !errors.Is(err, channels.ErrNoReplyChannel) {
		t.Errorf("Consume = %v, want ErrNoReplyChannel", err)
	}
	if err := (&httpconsumer.Consumer{}).Consume(context.Background(), m); err == nil || !strings.Contains(err.Error(), "Handler is nil") {
		t.Errorf("Consume without a handler = %v", err)
	}
}

// FuzzRequest checks that any message with fuzzed text and bytes in its
// keys gets either the handler's response with the values carried over, or
// a 400 without the handler running; never a panic or silence.
func FuzzRequest(f *testing.F) {
	f.Add("GET", "/", []byte("a=1"), []byte("host"), []byte("example.com"), "", []byte(""))
	f.Add("post", "/forum/x", []byte("x=1&y=%26foo+bar%2Bbaz"), []byte("X-Name"), []byte("caf\xe9"), "/forum", []byte("body"))
	f.Add("G ET", "/\xff", []byte("\r\n"), []byte("bad name"), []byte("a\nb"), "\xff", []byte{})
	f.Add("HEAD", "*", []byte{}, []byte("cookie"), []byte("a=b"), "*", []byte("x"))
	f.Fuzz(func(t *testing.T, method, path string, query, hname, hvalue []byte, root string, body []byte) {
		var got *http.Request
		var gotBody []byte
		c := httpconsumer.New(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got = r
			gotBody, _ = io.ReadAll(r.Body)
			io.WriteString(w, r.URL.Path)
		}))
		c.Logger = slog.New(slog.DiscardHandler)
		msg := with(get(path), "method", method, "query_string", query, "root_path", root, "body", body,
			"headers", []any{[]any{hname, hvalue}})
		resp := serve(t, c, msg)
		switch resp.status {
		case 200:
			if got == nil {
				t.Fatal("200 without the handler")
			}
			if got.Method != strings.ToUpper(method) || got.URL.RawQuery != string(query) || string(gotBody) != string(body) {
				t.Errorf("request %q %q %q body %q", got.Method, got.URL.Path, got.URL.RawQuery, gotBody)
			}
			if !strings.HasSuffix(path, got.URL.Path) && got.URL.Path != "/" {
				t.Errorf("path %q became %q", path, got.URL.Path)
			}
			if got.Method != "HEAD" && resp.body != got.URL.Path {
				t.Errorf("body %q, want %q", resp.body, got.URL.Path)
			}
		case 400:
			if got != nil {
				t.Fatal("400 after the handler ran")
			}
		default:
			t.Fatalf("status %d", resp.status)
		}
	})
}

// §6.1 POST and FILES: form and multipart bodies parse with net/http's own
// methods, and the body reads as a stream.
func TestFormBodies(t *testing.T) {
	t.Run("urlencoded", func(t *testing.T) {
		s, _ := capture(t, with(get("/"), "method", "POST", "body", []byte("name=caf%C3%A9&n=1&n=2"), "headers", []any{
			[]any{[]byte("content-type"), []byte("application/x-www-form-urlencoded")},
		}))
		s.r.Body = io.NopCloser(strings.NewReader(s.body))
		if err := s.r.ParseForm(); err != nil {
			t.Fatal(err)
		}
		if s.r.PostForm.Get("name") != "café" || len(s.r.PostForm["n"]) != 2 {
			t.Errorf("PostForm = %v", s.r.PostForm)
		}
	})
	t.Run("multipart", func(t *testing.T) {
		var buf strings.Builder
		mw := multipart.NewWriter(&buf)
		mw.WriteField("title", "notes")
		fw, _ := mw.CreateFormFile("upload", "notes.txt")
		io.WriteString(fw, "file contents")
		mw.Close()
		var title, file string
		c := httpconsumer.New(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			first := make([]byte, 3)
			if _, err := io.ReadFull(r.Body, first); err != nil {
				t.Errorf("read(3): %v", err)
			}
			rest, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(strings.NewReader(string(first) + string(rest)))
			f, _, err := r.FormFile("upload")
			if err != nil {
				t.Errorf("FormFile: %v", err)
				return
			}
			b, _ := io.ReadAll(f)
			title, file = r.FormValue("title"), string(b)
		}))
		serve(t, c, with(get("/"), "method", "POST", "body", []byte(buf.String()), "headers", []any{
			[]any{[]byte("content-type"), []byte(mw.FormDataContentType())},
		}))
		if title != "notes" || file != "file contents" {
			t.Errorf("title %q, file %q", title, file)
		}
	})
}
