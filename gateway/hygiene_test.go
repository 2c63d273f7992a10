package gateway_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/channelstest"
	"github.com/gochannels/channels/gateway"
	"github.com/gochannels/channels/inmemory"
)

// head reads a response head as sent: the status code and the header
// (http.ReadResponse removes a Connection header that says close).
func (r *rawConn) head() (int, textproto.MIMEHeader) {
	r.t.Helper()
	tp := textproto.NewReader(r.br)
	line, err := tp.ReadLine()
	if err != nil {
		r.t.Fatalf("reading the status line: %v", err)
	}
	f := strings.Fields(line)
	if len(f) < 2 {
		r.t.Fatalf("status line %q", line)
	}
	code, _ := strconv.Atoi(f[1])
	h, err := tp.ReadMIMEHeader()
	if err != nil {
		r.t.Fatalf("reading the header: %v", err)
	}
	if n, err := strconv.Atoi(h.Get("Content-Length")); err == nil {
		if _, err := io.CopyN(io.Discard, r.br, int64(n)); err != nil {
			r.t.Fatalf("reading the body: %v", err)
		}
	}
	return code, h
}

// closedAfter checks that the server closes the connection after the
// response it just read: nothing more arrives, only EOF.
func (r *rawConn) closedAfter(resp *http.Response) {
	r.t.Helper()
	if resp != nil && resp.Body != nil {
		_, _ = io.Copy(io.Discard, resp.Body)
	}
	_ = r.c.SetReadDeadline(time.Now().Add(wait))
	b, err := r.br.ReadByte()
	if err == nil {
		r.t.Fatalf("the connection stayed open: read %q after the response", b)
	}
	if !errors.Is(err, io.EOF) {
		r.t.Fatalf("the connection was not closed after the response: %v", err)
	}
}

// Every error page the gateway writes, and every refused handshake, closes
// the connection (Connection: close) instead of keeping it alive for more
// requests.
func TestErrorPagesCloseTheConnection(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tweak  func(*gateway.Server)
		cap    []channels.CapacityRule
		req    string
		app    func(t *testing.T, l channels.Layer) // plays the application, if it must answer
		status int
	}{
		{name: "handshake refused for its origin", req: upgradeRequest("/", "Origin: http://evil.com\r\n"), status: 403},
		{name: "handshake without Origin", req: strings.Replace(upgradeRequest("/"), "Origin: http://example.com\r\n", "", 1), status: 403},
		{name: "handshake rejected by the application", req: upgradeRequest("/"), status: 403, app: func(t *testing.T, l channels.Layer) {
			c := layerMessage(t, l, "websocket.connect")
			send(t, l, c.String("reply_channel"), channels.Content{"accept": false})
		}},
		{name: "handshake timed out", tweak: func(g *gateway.Server) { g.ConnectTimeout = 50 * time.Millisecond }, req: upgradeRequest("/"), status: 403},
		{name: "handshake with a bad version", req: strings.Replace(upgradeRequest("/"), "Version: 13", "Version: 8", 1), status: 400},
		{name: "handshake without Connection: Upgrade", req: strings.Replace(upgradeRequest("/"), "Connection: Upgrade\r\n", "", 1), status: 426},
		{name: "websocket.connect full", cap: []channels.CapacityRule{{Pattern: "websocket.connect", Capacity: 1}}, req: upgradeRequest("/"), status: 503},
		{name: "http.request full", cap: []channels.CapacityRule{{Pattern: "http.request", Capacity: 1}}, req: "GET / HTTP/1.1\r\nHost: x\r\n\r\n", status: 503},
		{name: "body too large", tweak: func(g *gateway.Server) { g.MaxBodySize = 10 }, req: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n01234567890", status: 413},
		{name: "HTTP timeout", tweak: func(g *gateway.Server) { g.HTTPTimeout = 50 * time.Millisecond }, req: "GET / HTTP/1.1\r\nHost: x\r\n\r\n", status: 503},
		{name: "invalid response from the application", req: "GET / HTTP/1.1\r\nHost: x\r\n\r\n", status: 500, app: func(t *testing.T, l channels.Layer) {
			reply(t, l, layerMessage(t, l, "http.request"), channels.Content{"status": 5})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLayer(t, inmemory.Config{ChannelCapacity: tc.cap})
			for _, c := range tc.cap { // fill the channel
				send(t, l, c.Pattern, channels.Content{"filler": true})
			}
			srv := appless(t, l, tc.tweak)
			raw := dialRaw(t, srv.URL)
			raw.write(tc.req)
			if tc.app != nil {
				tc.app(t, l)
			}
			status, h := raw.head()
			if status != tc.status {
				t.Fatalf("status %d, want %d", status, tc.status)
			}
			conn := strings.Join(h.Values("Connection"), ", ")
			if !strings.HasPrefix(conn, "close") {
				t.Errorf("Connection %q: the response does not announce the close", conn)
			}
			if status == 426 && !strings.Contains(conn, "Upgrade") {
				t.Errorf("426 without Connection: Upgrade: %q", conn)
			}
			raw.closedAfter(nil)
		})
	}
}

// framingServer is a live gateway served as the commands serve it
// (NewHTTPServer on NewListener), whose warnings are kept in log.
func framingServer(t *testing.T, l channels.Layer) (*channelstest.Server, *syncBuffer) {
	t.Helper()
	log := &syncBuffer{}
	srv := appless(t, l, func(g *gateway.Server) {
		g.Logger = slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelWarn}))
	})
	return srv, log
}

// A request carrying both Content-Length and Transfer-Encoding (a request
// smuggling attempt, RFC 9112 §6.1), or Transfer-Encoding on HTTP/1.0, gets
// 400 and a closed connection, even after other requests with bodies on
// the same connection; the application never hears of it.
func TestConflictingFramingRefused(t *testing.T) {
	smuggle := "POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
	// A body that looks like a conflicting head: it must not count as one.
	fake := "POST /fake HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: x\r\n\r\n"
	for _, tc := range []struct {
		name   string
		before []string // requests answered normally first, on the same connection
		req    string
	}{
		{name: "both headers", req: smuggle},
		{name: "both headers, Transfer-Encoding first", req: "POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"},
		{name: "Transfer-Encoding on HTTP/1.0", req: "POST /s HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n"},
		{name: "Transfer-Encoding only on HTTP/1.0", req: "POST /s HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{name: "after requests with bodies", before: []string{
			"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: " + strconv.Itoa(len(fake)) + "\r\n\r\n" + fake,
			"POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n1a\r\nContent-Length: 5\r\nTE: y\r\n\r\n0\r\nX-Trailer: 1\r\n\r\n",
			"GET /c HTTP/1.1\r\nHost: x\r\n\r\n",
		}, req: smuggle},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLayer(t, inmemory.Config{})
			srv, log := framingServer(t, l)
			raw := dialRaw(t, srv.URL)
			for _, req := range tc.before {
				raw.write(req)
				reply(t, l, layerMessage(t, l, "http.request"), channels.Content{"status": 200, "content": []byte("ok")})
				resp := raw.response(nil)
				_, _ = io.Copy(io.Discard, resp.Body)
				if resp.StatusCode != 200 || resp.Close {
					t.Fatalf("an ordinary request got %d (close %v)", resp.StatusCode, resp.Close)
				}
			}
			raw.write(tc.req)
			resp := raw.response(nil)
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("status %d, want 400", resp.StatusCode)
			}
			if !resp.Close {
				t.Errorf("Connection %q: the response does not announce the close", resp.Header.Values("Connection"))
			}
			raw.closedAfter(resp)
			if ch, c, _ := channels.Poll(context.Background(), l, "http.request"); c != nil {
				t.Fatalf("the application heard of the request on %s: %v", ch, c)
			}
			if !strings.Contains(log.String(), "Transfer-Encoding") {
				t.Errorf("no log line says why:\n%s", log)
			}
		})
	}
}

// Pipelined requests are judged one by one: an ordinary request sent in
// the same packet ahead of a conflicting one is answered normally.
func TestConflictingFramingPipelined(t *testing.T) {
	l := newLayer(t, inmemory.Config{})
	srv, _ := framingServer(t, l)
	raw := dialRaw(t, srv.URL)
	raw.write("GET /first HTTP/1.1\r\nHost: x\r\n\r\n" +
		"POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
	reply(t, l, layerMessage(t, l, "http.request"), channels.Content{"status": 200})
	first := raw.response(nil)
	_, _ = io.Copy(io.Discard, first.Body)
	if first.StatusCode != 200 {
		t.Fatalf("the first request got %d", first.StatusCode)
	}
	resp := raw.response(nil)
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("the second request got %d, want 400", resp.StatusCode)
	}
	raw.closedAfter(resp)
}

// A chunked body that is not valid chunked encoding gets 400 (and a closed
// connection) and a log line, not a silent close; whether it breaks in the
// part sent inline or in a later Request Body Chunk.
func TestMalformedChunkedBody(t *testing.T) {
	big := strings.Repeat("a", gateway.InlineBodySize+10)
	for _, tc := range []struct {
		name string
		body string
		late bool // the request was already sent to the application
	}{
		{name: "bad chunk size", body: "zz\r\nhello\r\n0\r\n\r\n"},
		{name: "missing CRLF after the data", body: "5\r\nhelloXX0\r\n\r\n"},
		{name: "bad chunk after a large first one", body: strconv.FormatInt(int64(len(big)), 16) + "\r\n" + big + "\r\nzz\r\n", late: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLayer(t, inmemory.Config{})
			srv, log := framingServer(t, l)
			raw := dialRaw(t, srv.URL)
			raw.write("POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + tc.body)
			resp := raw.response(nil)
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("status %d, want 400", resp.StatusCode)
			}
			raw.closedAfter(resp)
			if !strings.Contains(log.String(), "malformed chunked body") {
				t.Errorf("no log line says why:\n%s", log)
			}
			if tc.late {
				req := layerMessage(t, l, "http.request")
				bc := req.String("body_channel")
				for {
					c := layerMessage(t, l, bc)
					if c["closed"] == true {
						break
					}
				}
			} else if ch, c, _ := channels.Poll(context.Background(), l, "http.request"); c != nil {
				t.Fatalf("the application heard of the request on %s: %v", ch, c)
			}
		})
	}
}
