package gateway_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/channelstest"
)

func echoRouter() *channels.Router {
	r := channels.NewRouter()
	r.RouteFunc("websocket.receive", func(ctx context.Context, m *channels.Message) error {
		return m.Reply(ctx, channels.Content{"text": m.Content.String("text")})
	})
	r.RouteFunc("http.request", func(ctx context.Context, m *channels.Message) error {
		return m.Reply(ctx, channels.Content{
			"status":  200,
			"headers": []any{[]any{[]byte("Content-Type"), []byte("text/plain")}},
			"content": []byte("hello"),
		})
	})
	return r
}

// One WebSocket round trip over a real socket: client → gateway →
// websocket.receive on the in-memory layer → worker → consumer → reply
// channel → gateway's receive loop → client.
func BenchmarkEcho(b *testing.B) {
	srv := channelstest.NewServer(b, echoRouter())
	ws := srv.DialWS("/echo/")
	b.ReportAllocs()
	for b.Loop() {
		ws.SendText("hello")
		if ws.ReceiveText() != "hello" {
			b.Fatal("wrong echo")
		}
	}
}

// Echo round trips on many sockets at once (one per parallel goroutine):
// the single receive loop and the worker shared by every connection.
func BenchmarkEchoParallel(b *testing.B) {
	srv := channelstest.NewServer(b, echoRouter())
	b.ReportAllocs()
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		ws := srv.DialWS("/echo/")
		for pb.Next() {
			ws.SendText("hello")
			if ws.ReceiveText() != "hello" {
				b.Error("wrong echo")
				return
			}
		}
	})
}

// One HTTP request and response over a keep-alive connection, through the
// layer and a worker.
func BenchmarkHTTP(b *testing.B) {
	benchGet(b, channelstest.NewServer(b, echoRouter()))
}

// benchGet times GET / on srv over one keep-alive connection.
func benchGet(b *testing.B, srv *channelstest.Server) {
	client := srv.HTTP.Client()
	b.ReportAllocs()
	for b.Loop() {
		resp, err := client.Get(srv.URL + "/")
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatal(resp.Status)
		}
	}
}

// Memory and goroutines the server holds per idle open WebSocket (the
// clients are raw sockets, so that their side costs next to nothing).
// Reported as heap+stack bytes and goroutines per connection.
func BenchmarkIdleWebSocket(b *testing.B) {
	const n = 1000
	srv := channelstest.NewServer(b, nil)
	addr := strings.TrimPrefix(srv.URL, "http://")
	for b.Loop() {
		before := memNow()
		g0 := runtime.NumGoroutine()
		conns := make([]net.Conn, 0, n)
		for range n {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.WriteString(c, upgradeRequest("/")); err != nil {
				b.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil || resp.StatusCode != 101 {
				b.Fatalf("handshake: %v %v", resp, err)
			}
			conns = append(conns, c)
		}
		for srv.Gateway.Stats().WebSocketsOpen != n {
			time.Sleep(time.Millisecond)
		}
		after := memNow()
		b.ReportMetric(float64(after-before)/n, "B/conn")
		b.ReportMetric(float64(runtime.NumGoroutine()-g0)/n, "goroutines/conn")
		for _, c := range conns {
			c.Close()
		}
		for srv.Gateway.Stats().WebSocketsOpen != 0 {
			time.Sleep(time.Millisecond)
		}
	}
}

func memNow() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse + m.StackInuse
}
