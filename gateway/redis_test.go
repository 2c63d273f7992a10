package gateway_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/channelstest"
	"github.com/gochannels/channels/internal/testenv"
	"github.com/gochannels/channels/redislayer"
)

func redisLayer(t testing.TB) *redislayer.Layer {
	t.Helper()
	l, err := redislayer.New(context.Background(), redislayer.Config{
		Hosts:  []string{testenv.RedisURL(t)},
		Prefix: testenv.Prefix("gateway"),
	})
	if err != nil {
		t.Fatalf("redislayer.New: %v", err)
	}
	t.Cleanup(func() {
		_ = l.Flush(context.Background())
		_ = l.Close()
	})
	return l
}

// The whole path over Redis: HTTP, WebSockets and a group broadcast, with
// the gateway's single receive loop taking every reply by prefix.
func TestOverRedis(t *testing.T) {
	l := redisLayer(t)
	r := channels.NewRouter()
	r.RouteFunc("websocket.connect", func(ctx context.Context, m *channels.Message) error {
		if err := m.Group("everyone").Add(ctx, m.ReplyChannel); err != nil {
			return err
		}
		return m.Reply(ctx, channels.Content{"accept": true})
	})
	r.RouteFunc("websocket.receive", func(ctx context.Context, m *channels.Message) error {
		if m.Content.String("text") == "all" {
			return m.Group("everyone").Send(ctx, channels.Content{"text": "broadcast"})
		}
		return m.Reply(ctx, channels.Content{"text": "echo " + m.Content.String("text")})
	})
	r.RouteFunc("http.request", func(ctx context.Context, m *channels.Message) error {
		return m.Reply(ctx, channels.Content{"status": 200, "content": []byte("redis " + m.Content.String("path"))})
	})
	srv := channelstest.StartServer(t, channelstest.ServerConfig{Layer: l, Consumer: r})
	if _, body := get(t, srv, "/x"); body != "redis /x" {
		t.Fatalf("HTTP body %q", body)
	}
	const n = 10
	clients := make([]*channelstest.WSClient, n)
	var wg sync.WaitGroup
	for i := range n {
		clients[i] = srv.DialWS("/")
		wg.Go(func() {
			clients[i].SendText(fmt.Sprint(i))
			if got := clients[i].ReceiveText(); got != fmt.Sprintf("echo %d", i) {
				t.Errorf("client %d got %q", i, got)
			}
		})
	}
	wg.Wait()
	clients[0].SendText("all")
	for i, c := range clients {
		if got := c.ReceiveText(); got != "broadcast" {
			t.Fatalf("client %d got %q", i, got)
		}
	}
}

// BenchmarkEchoRedis is BenchmarkEcho over a Redis layer.
func BenchmarkEchoRedis(b *testing.B) {
	srv := channelstest.StartServer(b, channelstest.ServerConfig{Layer: redisLayer(b), Consumer: echoRouter()})
	ws := srv.DialWS("/echo/")
	b.ReportAllocs()
	for b.Loop() {
		ws.SendText("hello")
		if ws.ReceiveText() != "hello" {
			b.Fatal("wrong echo")
		}
	}
}
