package gateway_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
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

// Concurrent requests over Redis, GETs and POSTs mixed: each consumer sees
// its own request, whole, and nothing of another's (the gateway reuses an
// http.request's map once a layer that encodes it has sent it).
func TestHTTPOverRedisConcurrent(t *testing.T) {
	l := redisLayer(t)
	r := channels.NewRouter()
	r.RouteFunc("http.request", func(ctx context.Context, m *channels.Message) error {
		c := m.Content
		out := fmt.Sprintf("%s %s?%s body=%q keys=%d", c.String("method"), c.String("path"), c.Bytes("query_string"), c.Bytes("body"), len(c))
		return m.Reply(ctx, channels.Content{"status": 200, "content": []byte(out)})
	})
	srv := channelstest.StartServer(t, channelstest.ServerConfig{Layer: l, Consumer: r})
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			for j := range 5 {
				path, query := fmt.Sprintf("/p/%d/%d", i, j), fmt.Sprintf("q=%d", i*10+j)
				var resp *http.Response
				var err error
				want := fmt.Sprintf("GET %s?%s body=\"\" keys=12", path, query)
				if (i+j)%2 == 0 {
					body := fmt.Sprintf("b%d-%d", i, j)
					want = fmt.Sprintf("POST %s?%s body=%q keys=12", path, query, body)
					resp, err = http.Post(srv.URL+path+"?"+query, "text/plain", strings.NewReader(body))
				} else {
					resp, err = http.Get(srv.URL + path + "?" + query)
				}
				if err != nil {
					t.Error(err)
					return
				}
				got, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if string(got) != want {
					t.Errorf("response %q; want %q", got, want)
				}
			}
		})
	}
	wg.Wait()
}
