package gateway_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/channelstest"
)

// A consumer in the gateway's own process that sends a group of one socket
// far more frames at once than its outbound queue holds (256) is held back while
// the writer catches up: a client that reads gets every frame, in order,
// and is not closed as too slow. (The replies skip the receive loop and the
// layer's queue, so without that back-pressure the burst would overflow
// the connection's queue.)
func TestBurstFromLocalConsumerIsNotASlowClient(t *testing.T) {
	const n = 3000
	r := channels.NewRouter()
	r.RouteFunc("websocket.connect", func(ctx context.Context, m *channels.Message) error {
		if err := m.Group("burst").Add(ctx, m.ReplyChannel); err != nil {
			return err
		}
		return m.Reply(ctx, channels.Content{"accept": true})
	})
	r.RouteFunc("websocket.receive", func(ctx context.Context, m *channels.Message) error {
		for i := range n {
			if err := m.Group("burst").Send(ctx, channels.Content{"text": strconv.Itoa(i)}, channels.Immediately); err != nil {
				return err
			}
		}
		return nil
	})
	srv := channelstest.NewServer(t, r)
	ws := srv.DialWS("/burst/")
	ws.SendText("go")
	for i := range n {
		if got := ws.ReceiveText(); got != strconv.Itoa(i) {
			t.Fatalf("frame %d is %q", i, got)
		}
	}
	if st := srv.Gateway.Stats(); st.SlowClients != 0 {
		t.Fatalf("%d slow clients closed; want none", st.SlowClients)
	}
}
