package gateway_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/channelstest"
	"github.com/gochannels/channels/gateway"
	"github.com/gochannels/channels/inmemory"
)

// reply answers an http.request taken from the layer.
func reply(t *testing.T, l channels.Layer, req channels.Content, msgs ...channels.Content) {
	t.Helper()
	for _, m := range msgs {
		send(t, l, req.String("reply_channel"), m)
	}
}

func get(t *testing.T, srv *channelstest.Server, path string) (*http.Response, string) {
	t.Helper()
	resp, err := srv.HTTP.Client().Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the body: %v", err)
	}
	return resp, string(b)
}

// Every key of http.request (messages.md §3.1, interface-server.md §3.3).
func TestHTTPRequestMessage(t *testing.T) {
	l := newLayer(t, inmemory.Config{})
	srv := appless(t, l, func(g *gateway.Server) { g.RootPath = "/ignored" })
	raw := dialRaw(t, srv.URL)
	raw.write("POST /te%20st-%C3%A0/?foo=+bar&x=%20 HTTP/1.1\r\n" +
		"Host: example.com\r\n" +
		"X-Custom: a\r\n" +
		"Content-Length: 5\r\n" +
		"X_Forwarded_For: 6.6.6.6\r\n" +
		"X-Custom: b\r\n" +
		"Daphne-Root-Path: /foobar%20/bar\r\n" +
		"\r\nhello")
	req := layerMessage(t, l, "http.request")
	reply(t, l, req, channels.Content{"status": 204})
	if resp := raw.response(nil); resp.StatusCode != 204 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	local := raw.c.LocalAddr().(*net.TCPAddr)
	remote := raw.c.RemoteAddr().(*net.TCPAddr)
	want := channels.Content{
		"reply_channel": req.String("reply_channel"),
		"http_version":  "1.1",
		"method":        "POST",
		"scheme":        "http",
		"path":          "/te st-à/",
		"query_string":  []byte("foo=+bar&x=%20"),
		"root_path":     "/foobar /bar",
		"headers": []any{
			[]any{[]byte("host"), []byte("example.com")},
			[]any{[]byte("content-length"), []byte("5")},
			[]any{[]byte("x-custom"), []byte("a")},
			[]any{[]byte("x-custom"), []byte("b")},
		},
		"body":         []byte("hello"),
		"body_channel": nil,
		"client":       []any{"127.0.0.1", int64(local.Port)},
		"server":       []any{"127.0.0.1", int64(remote.Port)},
	}
	if diff := cmp.Diff(want, req); diff != "" {
		t.Fatalf("http.request (-want +got):\n%s", diff)
	}
	prefix := "http.response." + srv.Gateway.ServerID() + "!"
	if !strings.HasPrefix(req.String("reply_channel"), prefix) {
		t.Fatalf("reply channel %q does not start with %q", req.String("reply_channel"), prefix)
	}
}

// A request without a body (a GET, or Content-Length: 0) says so with an
// empty byte string, not null, and no body channel.
func TestBodilessRequestMessage(t *testing.T) {
	l := newLayer(t, inmemory.Config{})
	srv := appless(t, l, nil)
	raw := dialRaw(t, srv.URL)
	for _, head := range []string{"GET /a HTTP/1.1\r\n", "POST /b HTTP/1.1\r\nContent-Length: 0\r\n"} {
		raw.write(head + "Host: example.com\r\n\r\n")
		req := layerMessage(t, l, "http.request")
		reply(t, l, req, channels.Content{"status": 204})
		if resp := raw.response(nil); resp.StatusCode != 204 {
			t.Fatalf("%q: status %d", head, resp.StatusCode)
		}
		got := channels.Content{"body": req["body"], "body_channel": req["body_channel"]}
		want := channels.Content{"body": []byte{}, "body_channel": nil}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%q: http.request (-want +got):\n%s", head, diff)
		}
	}
}

// http_version is the real version; root_path is RootPath unless the
// Daphne-Root-Path header overrides it.
func TestHTTPVersionAndRootPath(t *testing.T) {
	for _, tc := range []struct {
		name, request, version, rootPath string
	}{
		{"1.0 with root path", "GET / HTTP/1.0\r\n\r\n", "1.0", "/forum"},
		{"1.1 with header", "GET / HTTP/1.1\r\nHost: x\r\nDaphne-Root-Path: /a%2Fb\r\n\r\n", "1.1", "/a/b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLayer(t, inmemory.Config{})
			srv := appless(t, l, func(g *gateway.Server) { g.RootPath = "/forum" })
			raw := dialRaw(t, srv.URL)
			raw.write(tc.request)
			req := layerMessage(t, l, "http.request")
			reply(t, l, req, channels.Content{"status": 200})
			raw.response(nil)
			if got := req.String("http_version"); got != tc.version {
				t.Errorf("http_version %q, want %q", got, tc.version)
			}
			if got := req.String("root_path"); got != tc.rootPath {
				t.Errorf("root_path %q, want %q", got, tc.rootPath)
			}
		})
	}
}

// Checklist B.34 / D.43: http.disconnect carries the decoded path.
func TestB34_DisconnectCarriesPath(t *testing.T) {
	rec := newRecorder()
	srv := channelstest.NewServer(t, recordingRouter(rec))
	if resp, body := get(t, srv, "/te%20st-%C3%A0/"); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	req := rec.next(t, "http.request")
	d := rec.next(t, "http.disconnect")
	if d.Content.String("path") != "/te st-à/" || d.ReplyChannel != req.ReplyChannel {
		t.Fatalf("disconnect %v for request on %s", d.Content, req.ReplyChannel)
	}
}

// Checklist B.30: no response within the HTTP timeout is a 503; the request
// is then over (http.disconnect sent, later replies dropped).
func TestB30_HTTPTimeoutIs503(t *testing.T) {
	l := newLayer(t, inmemory.Config{})
	srv := appless(t, l, func(g *gateway.Server) { g.HTTPTimeout = 200 * time.Millisecond })
	resp, body := get(t, srv, "/slow/")
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "Worker server failed to respond within time limit.") {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	req := layerMessage(t, l, "http.request")
	d := layerMessage(t, l, "http.disconnect")
	if d.String("reply_channel") != req.String("reply_channel") || d.String("path") != "/slow/" {
		t.Fatalf("disconnect %v", d)
	}
	reply(t, l, req, channels.Content{"status": 200})
	waitFor(t, "the late reply to be dropped", func() bool { return srv.Gateway.Stats().DroppedReplies == 1 })
	if got := srv.Gateway.Stats().HTTPTimeouts; got != 1 {
		t.Fatalf("HTTPTimeouts = %d", got)
	}
}

// Checklist B.32: a streamed response reaches the client chunk by chunk:
// the client reads the first chunk before the consumer sends the last.
func TestB32_StreamingResponse(t *testing.T) {
	proceed := make(chan struct{})
	r := channels.NewRouter()
	r.RouteFunc("http.request", func(ctx context.Context, m *channels.Message) error {
		if err := m.Reply(ctx, channels.Content{"status": 200, "content": []byte("first;"), "more_content": true}, channels.Immediately); err != nil {
			return err
		}
		select {
		case <-proceed:
		case <-time.After(wait):
			return fmt.Errorf("the client never read the first chunk")
		}
		return m.Reply(ctx, channels.Content{"content": []byte("last")})
	})
	srv := channelstest.NewServer(t, r)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/stream/", nil)
	resp, err := srv.HTTP.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	first := make([]byte, len("first;"))
	if _, err := io.ReadFull(resp.Body, first); err != nil || string(first) != "first;" {
		t.Fatalf("first chunk %q: %v", first, err)
	}
	close(proceed)
	rest, err := io.ReadAll(resp.Body)
	if err != nil || string(rest) != "last" {
		t.Fatalf("rest %q: %v", rest, err)
	}
}

// Interface-server spec §3.6: 201, X-Test: Boom!, OH HAI, on the wire.
func TestChunkedResponseOnTheWire(t *testing.T) {
	l := newLayer(t, inmemory.Config{})
	srv := appless(t, l, nil)
	raw := dialRaw(t, srv.URL)
	raw.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	req := layerMessage(t, l, "http.request")
	reply(t, l, req, channels.Content{"status": 201, "headers": []any{[]any{[]byte("X-Test"), []byte("Boom!")}}, "content": []byte("OH HAI")})
	head, err := raw.br.ReadString('\n')
	if err != nil || head != "HTTP/1.1 201 Created\r\n" {
		t.Fatalf("status line %q: %v", head, err)
	}
	headers := map[string]string{}
	for {
		line, err := raw.br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if line == "\r\n" {
			break
		}
		k, v, _ := strings.Cut(strings.TrimRight(line, "\r\n"), ": ")
		headers[k] = v
	}
	delete(headers, "Date") // tolerated
	if diff := cmp.Diff(map[string]string{"Transfer-Encoding": "chunked", "X-Test": "Boom!"}, headers); diff != "" {
		t.Fatalf("headers (-want +got):\n%s", diff)
	}
	body := make([]byte, len("6\r\nOH HAI\r\n0\r\n\r\n"))
	if _, err := io.ReadFull(raw.br, body); err != nil || string(body) != "6\r\nOH HAI\r\n0\r\n\r\n" {
		t.Fatalf("body %q: %v", body, err)
	}
}

// Framing (interface-server spec §3.6.4): an HTTP/1.1 response whose app
// gave no Content-Length is chunked; HEAD, bodiless statuses, HTTP/1.0 and
// an app's own Content-Length are not.
func TestResponseFraming(t *testing.T) {
	cases := []struct {
		name, request string
		reply         channels.Content
		chunked       bool
		contentLength string
	}{
		{"1.1 body", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", channels.Content{"status": 200, "content": []byte("hello")}, true, ""},
		{"1.1 empty body", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", channels.Content{"status": 200}, true, ""},
		{"1.1 app content-length", "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
			channels.Content{"status": 200, "headers": []any{[]any{"Content-Length", "5"}}, "content": []byte("hello")}, false, "5"},
		{"HEAD", "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", channels.Content{"status": 200}, false, ""},
		{"204", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", channels.Content{"status": 204}, false, ""},
		{"304", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", channels.Content{"status": 304}, false, ""},
		{"1.0", "GET / HTTP/1.0\r\n\r\n", channels.Content{"status": 200, "content": []byte("hello")}, false, "5"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := newLayer(t, inmemory.Config{})
			srv := appless(t, l, nil)
			raw := dialRaw(t, srv.URL)
			raw.write(tc.request)
			req := layerMessage(t, l, "http.request")
			reply(t, l, req, tc.reply)
			var hreq *http.Request
			if strings.HasPrefix(tc.request, "HEAD") {
				hreq = &http.Request{Method: http.MethodHead}
			}
			resp := raw.response(hreq)
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			chunked := len(resp.TransferEncoding) == 1 && resp.TransferEncoding[0] == "chunked"
			if chunked != tc.chunked {
				t.Errorf("chunked = %v (Transfer-Encoding %v), want %v", chunked, resp.TransferEncoding, tc.chunked)
			}
			if got := resp.Header.Get("Content-Length"); got != tc.contentLength {
				t.Errorf("Content-Length %q, want %q", got, tc.contentLength)
			}
			if want, _ := tc.reply["content"].([]byte); hreq == nil && string(body) != string(want) {
				t.Errorf("body %q, want %q", body, want)
			}
		})
	}
}

// Response headers: any case, text or bytes names, repeated names kept in
// order, invalid pairs dropped; no Content-Type unless the app sends one.
func TestResponseHeaders(t *testing.T) {
	l := newLayer(t, inmemory.Config{})
	srv := appless(t, l, nil)
	done := make(chan struct{})
	var resp *http.Response
	var body string
	go func() {
		defer close(done)
		resp, body = get(t, srv, "/")
	}()
	req := layerMessage(t, l, "http.request")
	reply(t, l, req, channels.Content{"status": 200, "headers": []any{
		[]any{[]byte("set-cookie"), []byte("a=1")},
		[]any{"Set-Cookie", "b=2"},
		[]any{[]byte("X-Latin"), "caf\u00e9"},
		[]any{[]byte("Bad Name"), []byte("x")},
		[]any{[]byte("X-Split"), []byte("a\r\nInjected: yes")},
		[]any{[]byte("only-one")},
	}, "content": []byte("<html><body>sniff me</body></html>")})
	<-done
	if got := resp.Header.Values("Set-Cookie"); !cmp.Equal(got, []string{"a=1", "b=2"}) {
		t.Errorf("Set-Cookie %q", got)
	}
	if got := resp.Header.Get("X-Latin"); got != "caf\xe9" {
		t.Errorf("X-Latin %q, want Latin-1 bytes", got)
	}
	for _, h := range []string{"Content-Type", "Injected", "Bad Name", "Only-One"} {
		if v, ok := resp.Header[h]; ok {
			t.Errorf("unexpected header %s: %q", h, v)
		}
	}
	if body != "<html><body>sniff me</body></html>" {
		t.Errorf("body %q", body)
	}
	if got := srv.Gateway.Stats().InvalidReplies; got != 3 {
		t.Errorf("InvalidReplies = %d, want 3", got)
	}
}

// A second Response message is ignored; a first message without a status
// is answered with 500.
func TestResponseMessageErrors(t *testing.T) {
	t.Run("second status ignored", func(t *testing.T) {
		l := newLayer(t, inmemory.Config{})
		srv := appless(t, l, nil)
		done := make(chan string)
		go func() { _, b := get(t, srv, "/"); done <- b }()
		req := layerMessage(t, l, "http.request")
		reply(t, l, req,
			channels.Content{"status": 200, "content": []byte("a"), "more_content": true},
			channels.Content{"status": 500, "content": []byte("X")},
			channels.Content{"content": []byte("c")})
		if got := <-done; got != "ac" {
			t.Fatalf("body %q, want ac", got)
		}
	})
	t.Run("missing status", func(t *testing.T) {
		l := newLayer(t, inmemory.Config{})
		srv := appless(t, l, nil)
		done := make(chan int)
		go func() { r, _ := get(t, srv, "/"); done <- r.StatusCode }()
		req := layerMessage(t, l, "http.request")
		reply(t, l, req, channels.Content{"content": []byte("no status")})
		if got := <-done; got != 500 {
			t.Fatalf("status %d, want 500", got)
		}
	})
}

// A raw path that is not ASCII, or does not decode to UTF-8, is a 400 and
// never reaches the application.
func TestInvalidPathIs400(t *testing.T) {
	for _, path := range []string{"/caf\xc3\xa9/", "/%FF/"} {
		l := newLayer(t, inmemory.Config{})
		srv := appless(t, l, nil)
		raw := dialRaw(t, srv.URL)
		raw.write("GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n")
		resp := raw.response(nil)
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 400 || !strings.Contains(string(body), "Invalid characters in path") {
			t.Fatalf("%q: %d %q", path, resp.StatusCode, body)
		}
		if ch, c, _ := channels.Poll(context.Background(), l, "http.request"); c != nil {
			t.Fatalf("%q reached %s", path, ch)
		}
	}
}

// A full http.request channel is a 503 "Request queue full."; the error
// page has the spec's format.
func TestRequestQueueFullIs503(t *testing.T) {
	l := newLayer(t, inmemory.Config{ChannelCapacity: []channels.CapacityRule{{Pattern: "http.request", Capacity: 1}}})
	send(t, l, "http.request", channels.Content{"filler": true})
	srv := appless(t, l, nil)
	resp, body := get(t, srv, "/full/")
	if resp.StatusCode != 503 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	for _, want := range []string{"<title>503 Service Unavailable</title>", "<h1>503 Service Unavailable</h1>", "<p>Request queue full.</p>", gateway.ServerName} {
		if !strings.Contains(body, want) {
			t.Errorf("error page lacks %q:\n%s", want, body)
		}
	}
	if got := srv.Gateway.Stats().RequestQueueFull; got != 1 {
		t.Errorf("RequestQueueFull = %d", got)
	}
	if d := layerMessage(t, l, "http.disconnect"); d.String("path") != "/full/" {
		t.Errorf("disconnect %v", d)
	}
}

// Bodies over MaxBodySize get 413; the application never hears of them
// when the limit is hit before the request is sent.
func TestBodyOverLimitIs413(t *testing.T) {
	for _, tc := range []struct {
		name    string
		request string
	}{
		{"content-length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n" + strings.Repeat("a", 2000)},
		{"chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n7d0\r\n" + strings.Repeat("a", 2000) + "\r\n0\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLayer(t, inmemory.Config{})
			srv := appless(t, l, func(g *gateway.Server) { g.MaxBodySize = 1000 })
			raw := dialRaw(t, srv.URL)
			raw.write(tc.request)
			if resp := raw.response(nil); resp.StatusCode != 413 {
				t.Fatalf("status %d, want 413", resp.StatusCode)
			}
			if ch, c, _ := channels.Poll(context.Background(), l, "http.request"); c != nil {
				t.Fatalf("the request reached %s", ch)
			}
			if got := srv.Gateway.Stats().TooLarge; got != 1 {
				t.Fatalf("TooLarge = %d", got)
			}
		})
	}
}

// A body larger than InlineBodySize goes partly inline and the rest as
// Request Body Chunks on body_channel.
func TestLargeBodyUsesBodyChannel(t *testing.T) {
	l := newLayer(t, inmemory.Config{})
	srv := appless(t, l, nil)
	body := make([]byte, 2*gateway.InlineBodySize+1000)
	_, _ = rand.Read(body)
	done := make(chan int)
	go func() {
		resp, err := srv.HTTP.Client().Post(srv.URL+"/upload/", "application/octet-stream", bytes.NewReader(body))
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	req := layerMessage(t, l, "http.request")
	got := append([]byte(nil), req.Bytes("body")...)
	if len(got) != gateway.InlineBodySize {
		t.Fatalf("inline body %d bytes, want %d", len(got), gateway.InlineBodySize)
	}
	bc := req.String("body_channel")
	if !strings.HasPrefix(bc, "http.request.body?") {
		t.Fatalf("body_channel %q", bc)
	}
	chunks := 0
	for {
		c := layerMessage(t, l, bc)
		chunks++
		got = append(got, c.Bytes("content")...)
		if !c.Bool("more_content") {
			break
		}
	}
	if chunks != 2 || !bytes.Equal(got, body) {
		t.Fatalf("%d chunks, %d bytes reassembled (want 2 chunks, %d bytes, equal)", chunks, len(got), len(body))
	}
	reply(t, l, req, channels.Content{"status": 200})
	if s := <-done; s != 200 {
		t.Fatalf("status %d", s)
	}
}

// A body that goes over MaxBodySize while it is streamed on the body
// channel ends the stream with closed: true and the client gets 413.
func TestStreamedBodyOverLimit(t *testing.T) {
	l := newLayer(t, inmemory.Config{})
	srv := appless(t, l, func(g *gateway.Server) { g.MaxBodySize = gateway.InlineBodySize + 1000 })
	raw := dialRaw(t, srv.URL)
	n := gateway.InlineBodySize + 5000
	raw.write("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + strconv.FormatInt(int64(n), 16) + "\r\n" + strings.Repeat("a", n) + "\r\n0\r\n\r\n")
	req := layerMessage(t, l, "http.request")
	last := layerMessage(t, l, req.String("body_channel"))
	if !last.Bool("closed") {
		t.Fatalf("body chunk %v, want closed", last)
	}
	if resp := raw.response(nil); resp.StatusCode != 413 {
		t.Fatalf("status %d, want 413", resp.StatusCode)
	}
}

// A client that goes away before the response still produces
// http.disconnect.
func TestClientGoneSendsDisconnect(t *testing.T) {
	l := newLayer(t, inmemory.Config{})
	srv := appless(t, l, nil)
	raw := dialRaw(t, srv.URL)
	raw.write("GET /gone/ HTTP/1.1\r\nHost: x\r\n\r\n")
	req := layerMessage(t, l, "http.request")
	raw.c.Close()
	d := layerMessage(t, l, "http.disconnect")
	if d.String("reply_channel") != req.String("reply_channel") || d.String("path") != "/gone/" {
		t.Fatalf("disconnect %v", d)
	}
}

// The HTTP timeout during a streamed response aborts the connection (the
// client sees a truncated body, not a clean end).
func TestTimeoutWhileStreamingAborts(t *testing.T) {
	l := newLayer(t, inmemory.Config{})
	srv := appless(t, l, func(g *gateway.Server) { g.HTTPTimeout = 300 * time.Millisecond })
	done := make(chan error)
	go func() {
		resp, err := srv.HTTP.Client().Get(srv.URL + "/")
		if err != nil {
			done <- err
			return
		}
		defer resp.Body.Close()
		_, err = io.ReadAll(resp.Body)
		done <- err
	}()
	req := layerMessage(t, l, "http.request")
	reply(t, l, req, channels.Content{"status": 200, "content": []byte("partial"), "more_content": true})
	if err := <-done; err == nil {
		t.Fatal("the body ended cleanly after the timeout")
	}
	if got := srv.Gateway.Stats().HTTPTimeouts; got != 1 {
		t.Fatalf("HTTPTimeouts = %d", got)
	}
}

// HTTPHandler serves plain HTTP in process; WebSockets still go over the
// layer.
func TestHTTPHandlerFastPath(t *testing.T) {
	l := newLayer(t, inmemory.Config{})
	var log syncBuffer
	srv := channelstest.StartServer(t, channelstest.ServerConfig{
		Layer: l,
		Gateway: func(g *gateway.Server) {
			g.AccessLog = &log
			g.HTTPHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusTeapot)
				io.WriteString(w, "local "+r.URL.Path)
			})
		},
	})
	resp, body := get(t, srv, "/here")
	if resp.StatusCode != http.StatusTeapot || body != "local /here" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	if ch, c, _ := channels.Poll(context.Background(), l, "http.request", "http.disconnect"); c != nil {
		t.Fatalf("the fast path sent %s", ch)
	}
	if !strings.Contains(log.String(), `"GET /here" 418 11`) {
		t.Fatalf("access log %q", log.String())
	}
	srv.DialWS("/ws/") // accepted by the worker's default route, over the layer
}

// Content sent with a status that allows no body (304) is dropped; the
// response still completes normally.
func TestBodilessStatusDropsContent(t *testing.T) {
	l := newLayer(t, inmemory.Config{})
	srv := appless(t, l, nil)
	raw := dialRaw(t, srv.URL)
	raw.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	req := layerMessage(t, l, "http.request")
	reply(t, l, req, channels.Content{"status": 304, "content": []byte("not allowed")})
	if resp := raw.response(nil); resp.StatusCode != 304 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	// The connection is still usable: it was not aborted.
	raw.write("GET /again HTTP/1.1\r\nHost: x\r\n\r\n")
	req = layerMessage(t, l, "http.request")
	reply(t, l, req, channels.Content{"status": 200})
	if resp := raw.response(nil); resp.StatusCode != 200 {
		t.Fatalf("second response %d", resp.StatusCode)
	}
}

// Over TLS with HTTP/2 the request says so: scheme https, http_version 2;
// responses still stream.
func TestHTTP2AndTLS(t *testing.T) {
	l := newLayer(t, inmemory.Config{})
	gw := &gateway.Server{Layer: l}
	ts := httptest.NewUnstartedServer(gw)
	ts.EnableHTTP2 = true
	ts.StartTLS()
	t.Cleanup(func() { gw.Close(); ts.Close() })
	done := make(chan string)
	go func() {
		resp, err := ts.Client().Get(ts.URL + "/h2")
		if err != nil {
			done <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- resp.Proto + " " + string(b)
	}()
	req := layerMessage(t, l, "http.request")
	reply(t, l, req, channels.Content{"status": 200, "content": []byte("a"), "more_content": true}, channels.Content{"content": []byte("b")})
	if got := <-done; got != "HTTP/2.0 ab" {
		t.Fatalf("response %q", got)
	}
	if req.String("scheme") != "https" || req.String("http_version") != "2" {
		t.Fatalf("scheme %q http_version %q", req.String("scheme"), req.String("http_version"))
	}
}

// On a UNIX socket client and server are null.
func TestUnixSocketAddressesAreNull(t *testing.T) {
	l := newLayer(t, inmemory.Config{})
	gw := &gateway.Server{Layer: l}
	sock := filepath.Join(t.TempDir(), "gw.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Skipf("no UNIX sockets here: %v", err)
	}
	hs := gateway.NewHTTPServer("", gw)
	go hs.Serve(ln)
	t.Cleanup(func() { gw.Close(); hs.Close() })
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	done := make(chan int)
	go func() {
		resp, err := (&http.Client{Transport: tr}).Get("http://unix/x")
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	req := layerMessage(t, l, "http.request")
	reply(t, l, req, channels.Content{"status": 200})
	if s := <-done; s != 200 {
		t.Fatalf("status %d", s)
	}
	if v, ok := req["client"]; !ok || v != nil {
		t.Errorf("client %v, want null", v)
	}
	if v, ok := req["server"]; !ok || v != nil {
		t.Errorf("server %v, want null", v)
	}
}

// A request whose message is over the layer's size limit (here: huge
// headers on a layer with a small limit) gets 413, for HTTP and WebSocket.
func TestMessageTooLargeForLayer(t *testing.T) {
	l := newLayer(t, inmemory.Config{MaxMessageSize: 2000})
	srv := appless(t, l, nil)
	big := "X-Big: " + strings.Repeat("b", 3000) + "\r\n"
	for _, req := range []string{"GET / HTTP/1.1\r\nHost: x\r\n" + big + "\r\n", upgradeRequest("/", big)} {
		raw := dialRaw(t, srv.URL)
		raw.write(req)
		if resp := raw.response(nil); resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("status %d, want 413", resp.StatusCode)
		}
	}
	if got := srv.Gateway.Stats().TooLarge; got != 2 {
		t.Fatalf("TooLarge = %d", got)
	}
}

// Shutdown lets HTTP requests in progress finish, refusing new ones.
func TestShutdownWaitsForRequests(t *testing.T) {
	l := newLayer(t, inmemory.Config{})
	srv := appless(t, l, nil)
	got := make(chan string)
	go func() {
		resp, body := get(t, srv, "/pending")
		got <- fmt.Sprint(resp.StatusCode, " ", body)
	}()
	req := layerMessage(t, l, "http.request")
	shut := make(chan error)
	go func() { shut <- srv.Gateway.Shutdown(context.Background()) }()
	waitFor(t, "new requests to be refused", func() bool {
		resp, _ := get(t, srv, "/new")
		return resp.StatusCode == http.StatusServiceUnavailable
	})
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) while a request was in progress", err)
	default:
	}
	reply(t, l, req, channels.Content{"status": 200, "content": []byte("done")})
	if r := <-got; r != "200 done" {
		t.Fatalf("pending request got %q", r)
	}
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
}

// A body that does not arrive within HTTPTimeout gets the timeout's 503,
// without the application hearing of the request.
func TestSlowBodyTimesOut(t *testing.T) {
	l := newLayer(t, inmemory.Config{})
	srv := appless(t, l, func(g *gateway.Server) { g.HTTPTimeout = 200 * time.Millisecond })
	raw := dialRaw(t, srv.URL)
	raw.write("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
	resp := raw.response(nil)
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 503 || !strings.Contains(string(body), "failed to respond within time limit") {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	if ch, c, _ := channels.Poll(context.Background(), l, "http.request"); c != nil {
		t.Fatalf("the request reached %s", ch)
	}
}

// A client that does not read a streamed response is dropped once the
// chunks waiting for it overflow OutboundQueue (or a write times out).
func TestSlowHTTPClientDropped(t *testing.T) {
	l := newLayer(t, inmemory.Config{})
	srv := appless(t, l, func(g *gateway.Server) {
		g.OutboundQueue = 2
		g.WriteTimeout = 300 * time.Millisecond
	})
	raw := dialRaw(t, srv.URL)
	_ = raw.c.(*net.TCPConn).SetReadBuffer(4096)
	raw.write("GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
	req := layerMessage(t, l, "http.request")
	chunk := bytes.Repeat([]byte("x"), 256<<10)
	reply(t, l, req, channels.Content{"status": 200, "more_content": true})
	for srv.Gateway.Stats().SlowClients == 0 {
		err := l.Send(context.Background(), req.String("reply_channel"), channels.Content{"content": chunk, "more_content": true})
		if err != nil && !strings.Contains(err.Error(), "full") {
			t.Fatal(err)
		}
		if err != nil {
			time.Sleep(time.Millisecond)
		}
	}
	if d := layerMessage(t, l, "http.disconnect"); d.String("path") != "/big" {
		t.Fatalf("disconnect %v", d)
	}
}

// With WantsHTTPDisconnect set, a completed response is followed by
// http.disconnect only when the function asks for it; a request that ends
// without a complete response (here, an HTTP timeout and a client gone
// mid-stream) always gets one.
func TestWantsHTTPDisconnect(t *testing.T) {
	l := newLayer(t, inmemory.Config{})
	var asked []string
	var mu sync.Mutex
	srv := appless(t, l, func(g *gateway.Server) {
		g.HTTPTimeout = 300 * time.Millisecond
		g.WantsHTTPDisconnect = func(reply, path string) bool {
			mu.Lock()
			asked = append(asked, path)
			mu.Unlock()
			return path == "/wanted/"
		}
	})
	raw := dialRaw(t, srv.URL)
	for _, path := range []string{"/plain/", "/wanted/"} {
		raw.write("GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n")
		req := layerMessage(t, l, "http.request")
		reply(t, l, req, channels.Content{"status": 200, "content": []byte("ok")})
		resp := raw.response(nil)
		if b, err := io.ReadAll(resp.Body); resp.StatusCode != 200 || string(b) != "ok" || err != nil {
			t.Fatalf("%s: %d %q %v", path, resp.StatusCode, b, err)
		}
	}
	if d := layerMessage(t, l, "http.disconnect"); d.String("path") != "/wanted/" {
		t.Fatalf("disconnect %v, want only the one for /wanted/", d)
	}

	// No answer in time: the 503 is the server's, the disconnect is sent.
	raw.write("GET /plain/ HTTP/1.1\r\nHost: x\r\n\r\n")
	req := layerMessage(t, l, "http.request")
	resp := raw.response(nil)
	if _, err := io.ReadAll(resp.Body); resp.StatusCode != http.StatusServiceUnavailable || err != nil {
		t.Fatalf("status %d (%v), want 503", resp.StatusCode, err)
	}
	if d := layerMessage(t, l, "http.disconnect"); d.String("reply_channel") != req.String("reply_channel") {
		t.Fatalf("disconnect %v after a timeout", d)
	}

	// The client goes away in the middle of a streamed response.
	raw = dialRaw(t, srv.URL)
	raw.write("GET /plain/ HTTP/1.1\r\nHost: x\r\n\r\n")
	req = layerMessage(t, l, "http.request")
	reply(t, l, req, channels.Content{"status": 200, "content": []byte("part"), "more_content": true})
	if resp := raw.response(nil); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	raw.c.Close()
	if d := layerMessage(t, l, "http.disconnect"); d.String("reply_channel") != req.String("reply_channel") {
		t.Fatalf("disconnect %v after the client left", d)
	}
	if ch, c, _ := channels.Poll(context.Background(), l, "http.disconnect"); c != nil {
		t.Fatalf("unexpected %s %v", ch, c)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(asked, []string{"/plain/", "/wanted/"}) {
		t.Fatalf("WantsHTTPDisconnect asked for %q, want only the completed responses", asked)
	}
}

// The write deadline WriteTimeout set for a response does not cut the
// next request on the same keep-alive connection once it has passed: not
// a bodiless request's response, nor its error page, nor the "100
// Continue" of a request with a body.
func TestWriteDeadlineOfEarlierResponse(t *testing.T) {
	l := newLayer(t, inmemory.Config{})
	srv := appless(t, l, func(g *gateway.Server) {
		g.WriteTimeout = 100 * time.Millisecond
		g.HTTPTimeout = 400 * time.Millisecond
	})
	raw := dialRaw(t, srv.URL)
	ok := func(what string) {
		t.Helper()
		resp := raw.response(nil)
		if b, err := io.ReadAll(resp.Body); resp.StatusCode != 200 || string(b) != "ok" || err != nil {
			t.Fatalf("%s: %d %q %v", what, resp.StatusCode, b, err)
		}
	}
	raw.write("GET /1 HTTP/1.1\r\nHost: x\r\n\r\n")
	reply(t, l, layerMessage(t, l, "http.request"), channels.Content{"status": 200, "content": []byte("ok")})
	ok("first request")

	time.Sleep(250 * time.Millisecond) // the first response's deadline passes
	raw.write("GET /2 HTTP/1.1\r\nHost: x\r\n\r\n")
	req := layerMessage(t, l, "http.request")
	time.Sleep(150 * time.Millisecond)
	reply(t, l, req, channels.Content{"status": 200, "content": []byte("ok")})
	ok("bodiless request")

	time.Sleep(250 * time.Millisecond)
	raw.write("GET /3 HTTP/1.1\r\nHost: x\r\n\r\n") // no answer: HTTPTimeout's 503
	if resp := raw.response(nil); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("unanswered request: %d, want 503", resp.StatusCode)
	}
	layerMessage(t, l, "http.request") // /3's, never answered

	raw = dialRaw(t, srv.URL)
	raw.write("GET /4 HTTP/1.1\r\nHost: x\r\n\r\n")
	reply(t, l, layerMessage(t, l, "http.request"), channels.Content{"status": 200, "content": []byte("ok")})
	ok("first request on a second connection")
	time.Sleep(250 * time.Millisecond)
	raw.write("POST /5 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
	if resp := raw.response(nil); resp.StatusCode != http.StatusContinue {
		t.Fatalf("got %d, want 100 Continue", resp.StatusCode)
	}
	raw.write("hi")
	req = layerMessage(t, l, "http.request")
	if b, _ := req["body"].([]byte); string(b) != "hi" {
		t.Fatalf("body %q", b)
	}
	reply(t, l, req, channels.Content{"status": 200, "content": []byte("ok")})
	ok("request with a body")
}
