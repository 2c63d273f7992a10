package gateway_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/channelstest"
	"github.com/gochannels/channels/inmemory"
)

// plainLayer exposes only the three methods of channels.Layer, hiding the
// in-memory layer's extensions (PrefixReceiver among them).
type plainLayer struct{ l channels.Layer }

func (p plainLayer) Send(ctx context.Context, ch string, c channels.Content) error {
	return p.l.Send(ctx, ch, c)
}

func (p plainLayer) Receive(ctx context.Context, chs ...string) (string, channels.Content, error) {
	return p.l.Receive(ctx, chs...)
}

func (p plainLayer) NewChannel(ctx context.Context, pattern string) (string, error) {
	return p.l.NewChannel(ctx, pattern)
}

// Without channels.PrefixReceiver the receive loop lists every live reply
// channel; connections that open while it waits are still served.
func TestReceiveLoopWithoutPrefixReceive(t *testing.T) {
	l := plainLayer{newLayer(t, inmemory.Config{})}
	if _, ok := any(l).(channels.PrefixReceiver); ok {
		t.Fatal("plainLayer must hide PrefixReceiver")
	}
	r := channels.NewRouter()
	r.RouteFunc("websocket.receive", func(ctx context.Context, m *channels.Message) error {
		return m.Reply(ctx, channels.Content{"text": "echo " + m.Content.String("text")})
	})
	r.RouteFunc("http.request", func(ctx context.Context, m *channels.Message) error {
		return m.Reply(ctx, channels.Content{"status": 200, "content": []byte(m.Content.String("path"))})
	})
	srv := channelstest.StartServer(t, channelstest.ServerConfig{Layer: l, Consumer: r})
	idle := srv.DialWS("/idle/") // keeps the loop busy receiving on one name
	var wg sync.WaitGroup
	for i := range 10 {
		ws := srv.DialWS("/")
		wg.Go(func() {
			if _, body := get(t, srv, fmt.Sprintf("/%d", i)); body != fmt.Sprintf("/%d", i) {
				t.Errorf("HTTP %d: body %q", i, body)
			}
		})
		ws.SendText(fmt.Sprint(i))
		if got := ws.ReceiveText(); got != fmt.Sprintf("echo %d", i) {
			t.Fatalf("got %q", got)
		}
	}
	wg.Wait()
	idle.SendText("still there")
	if got := idle.ReceiveText(); got != "echo still there" {
		t.Fatalf("got %q", got)
	}
}

// Layer errors in the receive loop are counted and retried; requests that
// cannot reach the layer get 503; Close still returns.
func TestReceiveLoopLayerErrors(t *testing.T) {
	l := inmemory.MustNew(inmemory.Config{})
	srv := appless(t, l, nil)
	srv.Gateway.ServerID() // start the loop
	l.Close()
	waitFor(t, "a counted layer error", func() bool { return srv.Gateway.Stats().LayerErrors > 0 })
	if resp, _ := get(t, srv, "/"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", resp.StatusCode)
	}
	if err := srv.Gateway.Close(); err != nil {
		t.Fatal(err)
	}
}
