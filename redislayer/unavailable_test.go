package redislayer_test

import (
	"errors"
	"testing"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/internal/testenv"
	"github.com/gochannels/channels/redislayer"
)

// A call that cannot reach Redis fails with an error that matches both
// redislayer.ErrUnavailable and the layer-independent
// channels.ErrUnavailable, and says which.
func TestUnavailableMatchesChannelsErrUnavailable(t *testing.T) {
	t.Parallel()
	srv := testenv.StartRedis(t)
	l := newLayer(t, redislayer.Config{Hosts: []string{srv.URL}, Timeout: 300 * time.Millisecond})
	ctx := t.Context()
	if err := l.Send(ctx, "unavailable.test", channels.Content{"n": int64(1)}); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	err := l.Send(ctx, "unavailable.test", channels.Content{"n": int64(2)})
	if !errors.Is(err, channels.ErrUnavailable) || !errors.Is(err, redislayer.ErrUnavailable) {
		t.Fatalf("Send without Redis = %v; want it to match channels.ErrUnavailable and redislayer.ErrUnavailable", err)
	}
	if errors.Is(channels.ErrChannelFull, redislayer.ErrUnavailable) || errors.Is(channels.ErrLayerClosed, channels.ErrUnavailable) {
		t.Fatal("other errors match ErrUnavailable")
	}
}
