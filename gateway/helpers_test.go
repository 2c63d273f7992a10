package gateway_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gochannels/channels/internal/testenv"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/channelstest"
	"github.com/gochannels/channels/gateway"
	"github.com/gochannels/channels/inmemory"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const wait = 5 * time.Second

// recorder is a consumer that hands every message it consumes to the test.
type recorder struct {
	ch chan *channels.Message
}

func newRecorder() *recorder { return &recorder{ch: make(chan *channels.Message, 1000)} }

func (r *recorder) Consume(_ context.Context, m *channels.Message) error {
	r.ch <- m.Copy()
	return nil
}

// next returns the next recorded message on channel, skipping others.
func (r *recorder) next(t *testing.T, channel string) *channels.Message {
	t.Helper()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case m := <-r.ch:
			if m.Channel == channel {
				return m
			}
		case <-timer.C:
			t.Fatalf("no %s message within %v", channel, wait)
			return nil
		}
	}
}

// layerMessage receives the next message on channel straight from the
// layer, for tests that play the application themselves.
func layerMessage(t *testing.T, l channels.Layer, channel string) channels.Content {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	_, c, err := l.Receive(ctx, channel)
	if err != nil {
		t.Fatalf("no message on %s: %v", channel, err)
	}
	return c
}

func send(t *testing.T, l channels.Layer, channel string, c channels.Content) {
	t.Helper()
	if err := l.Send(context.Background(), channel, c); err != nil {
		t.Fatalf("send to %s: %v", channel, err)
	}
}

// newLayer returns an in-memory layer closed at the end of the test.
func newLayer(t *testing.T, cfg inmemory.Config) *inmemory.Layer {
	t.Helper()
	l := inmemory.MustNew(cfg)
	t.Cleanup(func() { l.Close() })
	return l
}

// appless starts a gateway with no worker: the test plays the application
// on the returned layer.
func appless(t *testing.T, l channels.Layer, tweak func(*gateway.Server)) *channelstest.Server {
	t.Helper()
	return channelstest.StartServer(t, channelstest.ServerConfig{Layer: l, NoWorker: true, Gateway: tweak})
}

// syncBuffer is an io.Writer safe for concurrent use.
type syncBuffer = testenv.Output

// rawConn is a plain TCP connection to a test server, for checks at the
// byte level.
type rawConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, url string) *rawConn {
	t.Helper()
	addr := strings.TrimPrefix(strings.TrimPrefix(url, "http://"), "ws://")
	if i := strings.IndexByte(addr, '/'); i >= 0 {
		addr = addr[:i]
	}
	c, err := net.DialTimeout("tcp", addr, wait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(wait))
	return &rawConn{t: t, c: c, br: bufio.NewReader(c)}
}

// openRaw opens a WebSocket to path on url at the byte level, failing the
// test unless the server switches protocols.
func openRaw(t *testing.T, url, path string) *rawConn {
	t.Helper()
	raw := dialRaw(t, url)
	raw.write(upgradeRequest(path))
	if resp := raw.response(nil); resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d, want 101", resp.StatusCode)
	}
	return raw
}

func (r *rawConn) write(s string) {
	r.t.Helper()
	if _, err := io.WriteString(r.c, s); err != nil {
		r.t.Fatal(err)
	}
}

// response reads one HTTP response head (and body for non-101 responses).
func (r *rawConn) response(req *http.Request) *http.Response {
	r.t.Helper()
	resp, err := http.ReadResponse(r.br, req)
	if err != nil {
		r.t.Fatalf("reading the response: %v", err)
	}
	return resp
}

// upgradeRequest is a WebSocket handshake for path with the spec's key,
// from a page on the request's own host unless extra has an Origin.
func upgradeRequest(path string, extra ...string) string {
	more := strings.Join(extra, "")
	origin := "Origin: http://example.com\r\n"
	if strings.HasPrefix(more, "Origin:") || strings.Contains(more, "\nOrigin:") {
		origin = ""
	}
	return "GET " + path + " HTTP/1.1\r\nHost: example.com\r\n" + origin + "Upgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\nSec-WebSocket-Version: 13\r\n" + more + "\r\n"
}

// waitFor polls cond until it holds, failing the test after wait.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// recordingRouter accepts every WebSocket and answers HTTP with 200 "ok",
// recording every message on rec first.
func recordingRouter(rec *recorder) *channels.Router {
	r := channels.NewRouter()
	r.RouteFunc("websocket.connect", func(ctx context.Context, m *channels.Message) error {
		_ = rec.Consume(ctx, m)
		return m.Reply(ctx, channels.Content{"accept": true})
	})
	r.Route("websocket.receive", rec)
	r.Route("websocket.disconnect", rec)
	r.RouteFunc("http.request", func(ctx context.Context, m *channels.Message) error {
		_ = rec.Consume(ctx, m)
		return m.Reply(ctx, channels.Content{"status": 200, "content": []byte("ok")})
	})
	r.Route("http.disconnect", rec)
	return r
}

// clientFrame is a masked client-to-server WebSocket frame.
func clientFrame(opcode byte, payload []byte) []byte {
	mask := [4]byte{1, 2, 3, 4}
	b := []byte{0x80 | opcode}
	switch n := len(payload); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n < 1<<16:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x80|127, 0, 0, 0, 0, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	b = append(b, mask[:]...)
	for i, c := range payload {
		b = append(b, c^mask[i%4])
	}
	return b
}

// readFrame reads one unmasked server frame: opcode and payload.
func (r *rawConn) readFrame() (byte, []byte) {
	r.t.Helper()
	var h [2]byte
	if _, err := io.ReadFull(r.br, h[:]); err != nil {
		r.t.Fatalf("reading a frame: %v", err)
	}
	n := int(h[1] & 0x7f)
	switch n {
	case 126:
		var e [2]byte
		io.ReadFull(r.br, e[:])
		n = int(e[0])<<8 | int(e[1])
	case 127:
		var e [8]byte
		io.ReadFull(r.br, e[:])
		n = 0
		for _, c := range e {
			n = n<<8 | int(c)
		}
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r.br, p); err != nil {
		r.t.Fatalf("reading a frame payload: %v", err)
	}
	return h[0], p
}

// intOf is m's integer under key, 0 when none.
func intOf(m *channels.Message, key string) int64 {
	v, _ := m.Content.Int(key)
	return v
}

// pingingServer starts a server with recordingRouter on a fresh recorder,
// whose gateway pings idle sockets every interval and waits timeout for
// the pong (0: the default).
func pingingServer(t *testing.T, interval, timeout time.Duration) (*recorder, *channelstest.Server) {
	t.Helper()
	rec := newRecorder()
	srv := channelstest.StartServer(t, channelstest.ServerConfig{
		Consumer: recordingRouter(rec),
		Gateway: func(g *gateway.Server) {
			g.PingInterval = interval
			if timeout > 0 {
				g.PingTimeout = timeout
			}
		},
	})
	return rec, srv
}
