package gateway_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/coder/websocket"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/gateway"
	"github.com/gochannels/channels/inmemory"
	"github.com/gochannels/channels/worker"
)

// A gateway, a worker and an in-memory layer in one process: the HTTP
// request travels to the worker as an http.request message and the
// consumer's reply comes back on the request's reply channel.
func Example() {
	layer := inmemory.MustNew(inmemory.Config{})
	defer layer.Close()
	quiet := slog.New(slog.DiscardHandler)

	r := channels.NewRouter()
	r.RouteFunc("http.request", func(ctx context.Context, m *channels.Message) error {
		return m.Reply(ctx, channels.Content{
			"status":  200,
			"headers": []any{[]any{[]byte("Content-Type"), []byte("text/plain")}},
			"content": []byte("Hello from " + m.Content.String("path")),
		})
	})
	ctx, stop := context.WithCancel(context.Background())
	w := &worker.Worker{Layer: layer, Consumer: channels.WithDefaults(r, nil), Logger: quiet}
	done := make(chan error)
	go func() { done <- w.Run(ctx) }()

	gw := &gateway.Server{Layer: layer, Logger: quiet}
	ts := httptest.NewServer(gw)

	resp, err := ts.Client().Get(ts.URL + "/world/")
	if err != nil {
		panic(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(resp.Status, resp.Header.Get("Content-Type"))
	fmt.Println(string(body))

	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = gw.Shutdown(sctx)
	ts.Close()
	stop()
	<-done
	// Output:
	// 200 OK text/plain
	// Hello from /world/
}

// A WebSocket: the handshake completes once the connect consumer accepts,
// frames become websocket.receive messages, replies become frames.
func Example_webSocket() {
	layer := inmemory.MustNew(inmemory.Config{})
	defer layer.Close()
	quiet := slog.New(slog.DiscardHandler)

	r := channels.NewRouter()
	r.RouteFunc("websocket.connect", func(ctx context.Context, m *channels.Message) error {
		return m.Reply(ctx, channels.Content{"text": "welcome to " + m.PathValue("room")})
	}, channels.Path(`^/chat/(?P<room>[a-z]+)/$`))
	r.RouteFunc("websocket.receive", func(ctx context.Context, m *channels.Message) error {
		return m.Reply(ctx, channels.Content{"text": strings.ToUpper(m.Content.String("text"))})
	})
	ctx, stop := context.WithCancel(context.Background())
	w := &worker.Worker{Layer: layer, Consumer: channels.WithDefaults(r, nil), Logger: quiet}
	done := make(chan error)
	go func() { done <- w.Run(ctx) }()
	gw := &gateway.Server{Layer: layer, Logger: quiet}
	ts := httptest.NewServer(gw)

	dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// A page served by ts itself: the default origin check lets it in
	// (a handshake without Origin would get 403, see AllowMissingOrigin).
	conn, _, err := websocket.Dial(dctx, "ws"+strings.TrimPrefix(ts.URL, "http")+"/chat/lobby/", &websocket.DialOptions{
		HTTPClient: ts.Client(),
		HTTPHeader: http.Header{"Origin": {ts.URL}},
	})
	if err != nil {
		panic(err)
	}
	_, hello, _ := conn.Read(dctx)
	fmt.Println(string(hello))
	_ = conn.Write(dctx, websocket.MessageText, []byte("hi there"))
	_, echo, _ := conn.Read(dctx)
	fmt.Println(string(echo))
	_ = conn.Close(websocket.StatusNormalClosure, "")

	_ = gw.Shutdown(dctx)
	ts.Close()
	stop()
	<-done
	// Output:
	// welcome to lobby
	// HI THERE
}

// Serving a gateway with the limits the commands use; the http.Server is
// shut down after the gateway, which closes the WebSockets it hijacked.
func ExampleNewHTTPServer() {
	layer := inmemory.MustNew(inmemory.Config{})
	defer layer.Close()
	gw := &gateway.Server{Layer: layer, HTTPTimeout: 60 * time.Second}
	srv := gateway.NewHTTPServer("127.0.0.1:0", gw)
	fmt.Println(srv.ReadHeaderTimeout)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = gw.Shutdown(ctx)
	_ = srv.Shutdown(ctx)
	// Output: 10s
}

// Serving on NewListener: a request with both Content-Length and
// Transfer-Encoding gets 400 and a closed connection.
func ExampleNewListener() {
	layer := inmemory.MustNew(inmemory.Config{})
	defer layer.Close()
	gw := &gateway.Server{Layer: layer, Logger: slog.New(slog.DiscardHandler)}
	srv := gateway.NewHTTPServer("127.0.0.1:0", gw)
	ln, err := net.Listen("tcp", srv.Addr)
	if err != nil {
		panic(err)
	}
	go srv.Serve(gateway.NewListener(ln))

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		panic(err)
	}
	defer c.Close()
	fmt.Fprint(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		panic(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	fmt.Println(resp.Status, "close:", resp.Close)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = gw.Shutdown(ctx)
	_ = srv.Shutdown(ctx)
	// Output: 400 Bad Request close: true
}
