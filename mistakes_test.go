package channels_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/channelstest"
	"github.com/gochannels/channels/internal/testenv"
	"github.com/gochannels/channels/worker"
)

// A WebSocket to a path that no route handles is refused with 403 when the
// application routes sockets; Router.AcceptUnrouted restores accepting
// every path; an application that routes no socket at all accepts them
// (the Channels 1.0 default connect route).
func TestUnroutedWebSocketPathRefused(t *testing.T) {
	echo := func(ctx context.Context, m *channels.Message) error {
		return m.Reply(ctx, channels.Content{"text": m.Content.String("text")})
	}
	for _, tc := range []struct {
		name       string
		router     func() *channels.Router
		path       string
		wantStatus int
	}{
		{"routed path", func() *channels.Router {
			r := channels.NewRouter()
			r.RouteFunc("websocket.receive", echo, channels.Path(`^/echo/$`))
			return r
		}, "/echo/", 101},
		{"unrouted path", func() *channels.Router {
			r := channels.NewRouter()
			r.RouteFunc("websocket.receive", echo, channels.Path(`^/echo/$`))
			return r
		}, "/ecko/", 403},
		{"unrouted path, connect route elsewhere", func() *channels.Router {
			r := channels.NewRouter()
			r.Route("websocket.connect", channels.AcceptConnection, channels.Path(`^/chat/$`))
			return r
		}, "/other/", 403},
		{"AcceptUnrouted", func() *channels.Router {
			r := channels.NewRouter()
			r.RouteFunc("websocket.receive", echo, channels.Path(`^/echo/$`))
			r.AcceptUnrouted = true
			return r
		}, "/ecko/", 101},
		{"no socket routes", channels.NewRouter, "/anything/", 101},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs testenv.Output
			srv := channelstest.StartServer(t, channelstest.ServerConfig{
				Consumer: tc.router(),
				Worker:   func(w *worker.Worker) { w.Logger = slog.New(slog.NewTextHandler(&logs, nil)) },
			})
			c := channelstest.NewWSClient(t, srv.WSURL(tc.path))
			if status, _ := c.TryDial(); status != tc.wantStatus {
				t.Fatalf("handshake on %s: status %d; want %d", tc.path, status, tc.wantStatus)
			}
			warned := strings.Contains(logs.String(), "no route handles this WebSocket's path")
			if warned != (tc.wantStatus == 403) {
				t.Errorf("warning logged: %v; want %v:\n%s", warned, tc.wantStatus == 403, logs.String())
			}
		})
	}
}

// A websocket.connect consumer that returns without accepting, rejecting,
// closing or sending makes the worker that ran it log a warning naming the
// consumer and the path; one that accepts does not.
func TestSilentConnectConsumerWarned(t *testing.T) {
	var logs testenv.Output
	log := slog.New(slog.NewTextHandler(&logs, nil))
	r := channels.NewRouter()
	r.RouteFunc("websocket.connect", func(ctx context.Context, m *channels.Message) error {
		return nil // forgot to accept
	}, channels.Path(`^/silent/$`))
	r.RouteFunc("websocket.connect", func(ctx context.Context, m *channels.Message) error {
		return m.Reply(ctx, channels.Content{"accept": true})
	}, channels.Path(`^/polite/$`))
	r.RouteFunc("websocket.connect", func(ctx context.Context, m *channels.Message) error {
		return m.Reply(ctx, channels.Content{"accept": true}, channels.Immediately)
	}, channels.Path(`^/eager/$`))
	srv := channelstest.StartServer(t, channelstest.ServerConfig{
		Consumer: r,
		Worker:   func(w *worker.Worker) { w.Logger = log },
	})
	for _, p := range []string{"/polite/", "/eager/"} {
		channelstest.DialWS(t, srv.WSURL(p))
	}
	c := channelstest.NewWSClient(t, srv.WSURL("/silent/"))
	c.Timeout = 300 * time.Millisecond
	if status, _ := c.TryDial(); status != 0 { // no answer within Timeout: the gateway waits for the connect timeout
		t.Fatalf("silent connect: status %d; want no answer yet", status)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "websocket.connect consumer returned without accepting") {
		if time.Now().After(deadline) {
			t.Fatalf("no warning for the silent connect consumer in:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	out := logs.String()
	if n := strings.Count(out, "returned without accepting"); n != 1 || !strings.Contains(out, "path=/silent/") || !strings.Contains(out, "level=WARN") {
		t.Errorf("want one WARN for /silent/ only, got %d in:\n%s", n, out)
	}
}
