package gateway_test

import (
	"context"
	"testing"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/channelstest"
	"github.com/gochannels/channels/gateway"
	"github.com/gochannels/channels/internal/testenv"
	"github.com/gochannels/channels/redislayer"
)

// Redis restarted without its data: the sockets' group is gone, so the
// gateway closes every open socket with CloseLayerDataLost and counts
// them; a socket that connects afterwards joins and receives again.
func TestLayerDataLossClosesSockets(t *testing.T) {
	srv := testenv.StartRedis(t)
	l, err := redislayer.New(context.Background(), redislayer.Config{Hosts: []string{srv.URL}, Prefix: testenv.Prefix("gwloss"), Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	r := channels.NewRouter()
	r.RouteFunc("websocket.connect", func(ctx context.Context, m *channels.Message) error {
		if err := m.Group("room").Add(ctx, m.ReplyChannel); err != nil {
			return err
		}
		return m.Reply(ctx, channels.Content{"accept": true})
	})
	r.RouteFunc("websocket.receive", func(ctx context.Context, m *channels.Message) error {
		return m.Group("room").Send(ctx, channels.Content{"text": m.Content.String("text")})
	})
	s := channelstest.StartServer(t, channelstest.ServerConfig{Layer: l, Consumer: r})
	const n = 5
	clients := make([]*channelstest.WSClient, n)
	for i := range clients {
		clients[i] = s.DialWS("/")
	}
	clients[0].SendText("before")
	for _, c := range clients {
		if got := c.ReceiveText(); got != "before" {
			t.Fatalf("got %q before the restart", got)
		}
	}

	srv.Restart(t)
	for i, c := range clients {
		if code := c.WaitClosed(); code != gateway.CloseLayerDataLost {
			t.Errorf("socket %d closed with %d; want %d", i, code, gateway.CloseLayerDataLost)
		}
	}
	st := s.Gateway.Stats()
	if st.LayerDataLosses != 1 || st.DataLossCloses != n {
		t.Errorf("Stats: LayerDataLosses %d, DataLossCloses %d; want 1 and %d", st.LayerDataLosses, st.DataLossCloses, n)
	}
	// A client that reconnects is in the group again.
	again := s.DialWS("/")
	again.SendText("after")
	if got := again.ReceiveText(); got != "after" {
		t.Fatalf("got %q after reconnecting", got)
	}
}
