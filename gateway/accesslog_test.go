package gateway_test

import (
	"context"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/channelstest"
	"github.com/gochannels/channels/gateway"
)

// writeRecorder keeps every Write call separately.
type writeRecorder struct {
	mu     sync.Mutex
	writes []string
}

func (w *writeRecorder) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes = append(w.writes, string(p))
	return len(p), nil
}

func (w *writeRecorder) lines() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.writes...)
}

// Checklist D.47: one NCSA-like access-log line per event, each written whole
// with one Write.
func TestD47_AccessLog(t *testing.T) {
	var log writeRecorder
	r := channels.NewRouter()
	r.RouteFunc("http.request", func(ctx context.Context, m *channels.Message) error {
		return m.Reply(ctx, channels.Content{"status": 200, "content": []byte("ok")})
	})
	r.RouteFunc("websocket.connect", func(ctx context.Context, m *channels.Message) error {
		if m.Content.String("path") == "/no/" {
			return channels.ErrDenyConnection
		}
		return m.Reply(ctx, channels.Content{"accept": true})
	})
	srv := channelstest.StartServer(t, channelstest.ServerConfig{
		Consumer: r,
		Gateway:  func(g *gateway.Server) { g.AccessLog = &log },
	})
	get(t, srv, "/a?b=1")
	ws := srv.DialWS("/ws/")
	ws.Close(1000, "")
	waitFor(t, "the disconnect line", func() bool { return len(log.lines()) >= 4 })
	srv.NewWSClient("/no/").TryDial()
	waitFor(t, "six access-log lines", func() bool { return len(log.lines()) >= 6 })

	const prefix = `^127\.0\.0\.1:\d+ - - \[\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\] `
	want := []string{
		`"GET /a\?b=1" 200 2`,
		`"WSCONNECTING /ws/" - -`,
		`"WSCONNECT /ws/" - -`,
		`"WSDISCONNECT /ws/" - -`,
		`"WSCONNECTING /no/" - -`,
		`"WSREJECT /no/" - -`,
	}
	lines := log.lines()
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(want), strings.Join(lines, ""))
	}
	for i, w := range want {
		re := regexp.MustCompile(prefix + w + "\n$")
		if !re.MatchString(lines[i]) {
			t.Errorf("line %d = %q, want %s", i, lines[i], re)
		}
	}
}

// OnAction reports the same events with their details.
func TestOnAction(t *testing.T) {
	type event struct {
		protocol, action string
		d                gateway.ActionDetails
	}
	var (
		mu     sync.Mutex
		events []event
	)
	srv := channelstest.StartServer(t, channelstest.ServerConfig{
		Consumer: recordingRouter(newRecorder()),
		Gateway: func(g *gateway.Server) {
			g.OnAction = func(protocol, action string, d gateway.ActionDetails) {
				mu.Lock()
				events = append(events, event{protocol, action, d})
				mu.Unlock()
			}
		},
	})
	get(t, srv, "/p%20q?x")
	ws := srv.DialWS("/ws/")
	ws.Close(1000, "")
	waitFor(t, "four events", func() bool { mu.Lock(); defer mu.Unlock(); return len(events) >= 4 })
	mu.Lock()
	defer mu.Unlock()
	h := events[0]
	if h.protocol != "http" || h.action != "complete" || h.d.Path != "/p q" || h.d.Method != "GET" ||
		h.d.Status != 200 || h.d.Size != 2 || h.d.TimeTaken <= 0 || !strings.HasPrefix(h.d.Client, "127.0.0.1:") {
		t.Errorf("http event %+v", h)
	}
	for i, action := range []string{"connecting", "connected", "disconnected"} {
		e := events[i+1]
		if e.protocol != "websocket" || e.action != action || e.d.Path != "/ws/" || !strings.HasPrefix(e.d.Client, "127.0.0.1:") {
			t.Errorf("event %d = %+v, want websocket %s", i+1, e, action)
		}
	}
}
