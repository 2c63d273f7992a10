package gateway_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/channelstest"
	"github.com/gochannels/channels/gateway"
	"github.com/gochannels/channels/inmemory"
	"github.com/gochannels/channels/worker"
)

// connectRouter routes websocket.connect to connect and records receive and
// disconnect messages on rec.
func connectRouter(rec *recorder, connect func(ctx context.Context, m *channels.Message) error) *channels.Router {
	r := channels.NewRouter()
	r.RouteFunc("websocket.connect", connect)
	r.Route("websocket.receive", rec)
	r.Route("websocket.disconnect", rec)
	return r
}

// Checklist A1.1: the handshake is held open while websocket.connect is
// consumed; the 101 arrives only after the application has answered.
func TestA1_1_HandshakeWaitsForTheApplication(t *testing.T) {
	var answered atomic.Bool
	srv := channelstest.NewServer(t, connectRouter(newRecorder(), func(ctx context.Context, m *channels.Message) error {
		time.Sleep(300 * time.Millisecond)
		answered.Store(true)
		return m.Reply(ctx, channels.Content{"accept": true})
	}))
	ws := srv.DialWS("/")
	if !answered.Load() {
		t.Fatal("the handshake completed before the connect consumer answered")
	}
	ws.ReceiveNothing(50 * time.Millisecond)
}

// Checklist A1.2: {"accept": true} completes the handshake and sends no
// frame.
func TestA1_2_AcceptSendsNoFrame(t *testing.T) {
	srv := channelstest.NewServer(t, nil) // the default connect consumer accepts
	ws := srv.DialWS("/")
	if got := ws.Response.StatusCode; got != http.StatusSwitchingProtocols {
		t.Fatalf("status %d, want 101", got)
	}
	ws.ReceiveNothing(100 * time.Millisecond)
}

// Checklist A1.3: {"close": true} during the handshake answers 403; the
// socket never opens and bytes sent afterwards are never read as frames.
func TestA1_3_CloseDuringHandshakeIs403(t *testing.T) {
	rec := newRecorder()
	srv := channelstest.NewServer(t, connectRouter(rec, func(ctx context.Context, m *channels.Message) error {
		return m.Reply(ctx, channels.Content{"close": true})
	}))
	raw := dialRaw(t, srv.URL)
	raw.write(upgradeRequest("/chat/"))
	resp := raw.response(nil)
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("status %d, want 403", resp.StatusCode)
	}
	if resp.Header.Get("Upgrade") != "" || resp.Header.Get("Sec-WebSocket-Accept") != "" {
		t.Fatalf("a rejected handshake carried upgrade headers: %v", resp.Header)
	}
	if !strings.Contains(string(body), "403 Forbidden") || !strings.Contains(string(body), "Access denied") {
		t.Fatalf("body %q is not the 403 error page", body)
	}
	// A frame sent anyway is not a frame to the server: it is answered as
	// a malformed HTTP request.
	raw.write(string(clientFrame(0x1, []byte("sneaky"))) + "\r\n\r\n")
	if resp, err := http.ReadResponse(raw.br, nil); err == nil && resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("the bytes after a rejection got %d", resp.StatusCode)
	}
	d := rec.next(t, "websocket.disconnect")
	select {
	case m := <-rec.ch:
		t.Fatalf("unexpected %s after a rejected handshake: %v", m.Channel, m.Content)
	default:
	}
	if got := srv.Gateway.Stats().WebSocketsRejected; got != 1 {
		t.Fatalf("WebSocketsRejected = %d, want 1", got)
	}
	_ = d
}

// Checklist A1.4: a close with an integer code during the handshake is
// still a plain 403.
func TestA1_4_RejectWithCodeIs403(t *testing.T) {
	for _, close := range []any{int64(4000), int64(1000), true, int64(1002)} {
		srv := channelstest.NewServer(t, connectRouter(newRecorder(), func(ctx context.Context, m *channels.Message) error {
			return m.Reply(ctx, channels.Content{"close": close})
		}))
		status, err := srv.NewWSClient("/").TryDial()
		if status != http.StatusForbidden || err == nil {
			t.Fatalf("close %v: status %d (%v), want 403", close, status, err)
		}
	}
}

// Checklist A1.5: a text or bytes reply during the handshake accepts it,
// then the frame is delivered.
func TestA1_5_FrameAcceptsImplicitly(t *testing.T) {
	for _, tc := range []struct {
		name  string
		reply channels.Content
		want  channelstest.WSFrame
	}{
		{"text", channels.Content{"text": "hi"}, channelstest.WSFrame{Data: []byte("hi")}},
		{"bytes", channels.Content{"bytes": []byte{0xAA, 0xBB}}, channelstest.WSFrame{Binary: true, Data: []byte{0xAA, 0xBB}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := channelstest.NewServer(t, connectRouter(newRecorder(), func(ctx context.Context, m *channels.Message) error {
				return m.Reply(ctx, tc.reply)
			}))
			ws := srv.DialWS("/")
			if got := ws.Receive(); got.Binary != tc.want.Binary || !bytes.Equal(got.Data, tc.want.Data) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// Checklist A1.6: frame + close during the handshake accepts, sends the
// frame, then closes with 1000 or the given code.
func TestA1_6_FrameAndCloseDuringHandshake(t *testing.T) {
	for _, tc := range []struct {
		close any
		code  int
	}{{true, 1000}, {int64(4001), 4001}} {
		srv := channelstest.NewServer(t, connectRouter(newRecorder(), func(ctx context.Context, m *channels.Message) error {
			return m.Reply(ctx, channels.Content{"text": "bye", "close": tc.close})
		}))
		ws := srv.DialWS("/")
		if got := ws.ReceiveText(); got != "bye" {
			t.Fatalf("got %q, want bye", got)
		}
		if got := ws.WaitClosed(); got != tc.code {
			t.Fatalf("close %v: closed with %d, want %d", tc.close, got, tc.code)
		}
	}
}

// Checklist A1.7: no websocket.receive before acceptance; connect is order
// 0, frames 1, 2, ..., the disconnect n+1.
func TestA1_7_OrderNumbering(t *testing.T) {
	rec := newRecorder()
	srv := channelstest.NewServer(t, recordingRouter(rec))
	ws := srv.DialWS("/room/?x=1")
	connect := rec.next(t, "websocket.connect")
	if o, _ := connect.Content.Int("order"); o != 0 {
		t.Fatalf("connect order %d, want 0", o)
	}
	for i, text := range []string{"a", "b", "c"} {
		ws.SendText(text)
		m := rec.next(t, "websocket.receive")
		if o, _ := m.Content.Int("order"); o != int64(i+1) || m.Content.String("text") != text {
			t.Fatalf("receive %d: order %d text %q", i, o, m.Content.String("text"))
		}
		if m.ReplyChannel != connect.ReplyChannel || m.Content.String("path") != "/room/" {
			t.Fatalf("receive %d: reply_channel %q path %q", i, m.ReplyChannel, m.Content.String("path"))
		}
		if _, ok := m.Content["bytes"]; ok {
			t.Fatalf("a text frame's message has a bytes key: %v", m.Content)
		}
	}
	ws.SendBytes([]byte{1, 2})
	m := rec.next(t, "websocket.receive")
	if o, _ := m.Content.Int("order"); o != 4 || !bytes.Equal(m.Content.Bytes("bytes"), []byte{1, 2}) {
		t.Fatalf("binary receive: %v", m.Content)
	}
	if _, ok := m.Content["text"]; ok {
		t.Fatalf("a binary frame's message has a text key: %v", m.Content)
	}
	ws.Close(1000, "")
	d := rec.next(t, "websocket.disconnect")
	if o, _ := d.Content.Int("order"); o != 5 {
		t.Fatalf("disconnect order %d, want 5", o)
	}
	if c, _ := d.Content.Int("code"); c != 1000 {
		t.Fatalf("disconnect code %d, want 1000", c)
	}
}

// Checklist A1.8: a connect consumer that never answers leaves the
// handshake pending until the connect timeout, then 403.
func TestA1_8_ConnectTimeoutIs403(t *testing.T) {
	rec := newRecorder()
	srv := channelstest.StartServer(t, channelstest.ServerConfig{
		Consumer: connectRouter(rec, func(context.Context, *channels.Message) error { return nil }),
		Gateway:  func(g *gateway.Server) { g.ConnectTimeout = 200 * time.Millisecond },
	})
	status, err := srv.NewWSClient("/").TryDial()
	if status != http.StatusForbidden {
		t.Fatalf("status %d (%v), want 403", status, err)
	}
	d := rec.next(t, "websocket.disconnect")
	if c, _ := d.Content.Int("code"); c != 1006 {
		t.Fatalf("disconnect code %d, want 1006", c)
	}
}

// Checklist A1.9: connect runs to completion (including what it sent)
// before the first receive is consumed.
func TestA1_9_ConnectCompletesBeforeReceive(t *testing.T) {
	var store sync.Map
	r := channels.NewRouter()
	r.RouteFunc("websocket.connect", func(ctx context.Context, m *channels.Message) error {
		time.Sleep(20 * time.Millisecond)
		store.Store(m.ReplyChannel, "ready")
		return m.Reply(ctx, channels.Content{"accept": true})
	})
	r.RouteFunc("websocket.receive", func(ctx context.Context, m *channels.Message) error {
		v, _ := store.Load(m.ReplyChannel)
		s, _ := v.(string)
		return m.Reply(ctx, channels.Content{"text": s + ":" + m.Content.String("text")})
	})
	srv := channelstest.NewServer(t, r)
	for i := range 5 {
		ws := srv.DialWS("/")
		ws.SendText("x")
		if got := ws.ReceiveText(); got != "ready:x" {
			t.Fatalf("connection %d: first receive saw %q, want ready:x", i, got)
		}
	}
}

// Checklist B.27: a consumer closes a socket with a chosen code; the client
// sees it and the disconnect carries the client's echo.
func TestB27_CloseWithCode(t *testing.T) {
	rec := newRecorder()
	r := connectRouter(rec, func(ctx context.Context, m *channels.Message) error {
		return m.Reply(ctx, channels.Content{"accept": true})
	})
	r2 := channels.NewRouter()
	r2.RouteFunc("websocket.receive", func(context.Context, *channels.Message) error {
		return &channels.CloseError{Code: 4000}
	})
	r2.Include(r)
	srv := channelstest.NewServer(t, r2)
	ws := srv.DialWS("/")
	ws.SendText("close me")
	if got := ws.WaitClosed(); got != 4000 {
		t.Fatalf("client saw close code %d, want 4000", got)
	}
	d := rec.next(t, "websocket.disconnect")
	if c, _ := d.Content.Int("code"); c != 4000 {
		t.Fatalf("disconnect code %d, want 4000", c)
	}
	if o, _ := d.Content.Int("order"); o != 2 {
		t.Fatalf("disconnect order %d, want 2", o)
	}
}

// The client's own close code reaches the application.
func TestClientCloseCode(t *testing.T) {
	for _, code := range []int{1000, 1001, 4321} {
		rec := newRecorder()
		srv := channelstest.NewServer(t, recordingRouter(rec))
		ws := srv.DialWS("/")
		if echo := ws.Close(code, "bye"); echo != code {
			t.Fatalf("server echoed %d, want %d", echo, code)
		}
		d := rec.next(t, "websocket.disconnect")
		if c, _ := d.Content.Int("code"); c != int64(code) {
			t.Fatalf("disconnect code %d, want %d", c, code)
		}
	}
}

// A rejected handshake still produces websocket.disconnect (code 1006,
// order 1) so that the application can undo what connect did.
func TestRejectedSocketGetsDisconnect(t *testing.T) {
	rec := newRecorder()
	srv := channelstest.NewServer(t, connectRouter(rec, func(ctx context.Context, m *channels.Message) error {
		rec.ch <- m.Copy()
		return channels.ErrDenyConnection
	}))
	if status, _ := srv.NewWSClient("/bye/").TryDial(); status != http.StatusForbidden {
		t.Fatalf("status %d, want 403", status)
	}
	c := rec.next(t, "websocket.connect")
	d := rec.next(t, "websocket.disconnect")
	code, _ := d.Content.Int("code")
	order, _ := d.Content.Int("order")
	if code != 1006 || order != 1 || d.ReplyChannel != c.ReplyChannel || d.Content.String("path") != "/bye/" {
		t.Fatalf("disconnect %v, want code 1006 order 1 on %s", d.Content, c.ReplyChannel)
	}
}

// {"accept": false} alone rejects the handshake (Daphne ignored it).
func TestAcceptFalseRejects(t *testing.T) {
	srv := channelstest.NewServer(t, connectRouter(newRecorder(), func(ctx context.Context, m *channels.Message) error {
		return m.Reply(ctx, channels.Content{"accept": false})
	}))
	if status, _ := srv.NewWSClient("/").TryDial(); status != http.StatusForbidden {
		t.Fatalf("status %d, want 403", status)
	}
}

// Malformed replies are logged and ignored; the connection carries on.
func TestInvalidRepliesIgnored(t *testing.T) {
	for _, tc := range []struct {
		name  string
		reply channels.Content
	}{
		{"both text and bytes", channels.Content{"text": "a", "bytes": []byte("b")}},
		{"unknown key", channels.Content{"text": "a", "extra": int64(1)}},
		{"close code not allowed", channels.Content{"close": int64(1002)}},
		{"close code out of range", channels.Content{"close": int64(5000)}},
		{"text of the wrong type", channels.Content{"text": []byte("a")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := channels.NewRouter()
			r.RouteFunc("websocket.receive", func(ctx context.Context, m *channels.Message) error {
				if err := m.Reply(ctx, tc.reply); err != nil {
					return err
				}
				return m.Reply(ctx, channels.Content{"text": "after"})
			})
			srv := channelstest.NewServer(t, r)
			ws := srv.DialWS("/")
			ws.SendText("go")
			if got := ws.ReceiveText(); got != "after" {
				t.Fatalf("first frame %q, want the one after the invalid reply", got)
			}
			if ws.CloseStatus() != 0 {
				t.Fatal("the connection closed")
			}
			if got := srv.Gateway.Stats().InvalidReplies; got != 1 {
				t.Fatalf("InvalidReplies = %d, want 1", got)
			}
		})
	}
}

// During the handshake an invalid reply is ignored too: the handshake
// stays pending and a later accept opens it.
func TestInvalidReplyDuringHandshake(t *testing.T) {
	srv := channelstest.NewServer(t, connectRouter(newRecorder(), func(ctx context.Context, m *channels.Message) error {
		if err := m.Reply(ctx, channels.Content{"text": "x", "bytes": []byte("y")}); err != nil {
			return err
		}
		return m.Reply(ctx, channels.Content{"text": "hello"})
	}))
	ws := srv.DialWS("/")
	if got := ws.ReceiveText(); got != "hello" {
		t.Fatalf("got %q", got)
	}
}

// The spec's handshake on a raw connection: the Sec-WebSocket-Accept for
// the key x3JJHMbDL1EzLkh9GBhXDw==, unmasked text, binary and close frames.
func TestRawHandshakeAndFrames(t *testing.T) {
	r := channels.NewRouter()
	r.RouteFunc("websocket.receive", func(ctx context.Context, m *channels.Message) error {
		if err := m.Reply(ctx, channels.Content{"text": "Hello World!"}); err != nil {
			return err
		}
		if err := m.Reply(ctx, channels.Content{"bytes": []byte{0xAA, 0xBB, 0xCC, 0xDD}}); err != nil {
			return err
		}
		return m.Reply(ctx, channels.Content{"close": true})
	})
	srv := channelstest.NewServer(t, r)
	raw := dialRaw(t, srv.URL)
	raw.write(upgradeRequest("/"))
	resp := raw.response(nil)
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d, want 101", resp.StatusCode)
	}
	if got := resp.Header.Get("Sec-WebSocket-Accept"); got != "HSmrc0sMlYUkAGmm5OPpG2HaGWk=" {
		t.Fatalf("Sec-WebSocket-Accept %q", got)
	}
	if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != "" {
		t.Fatalf("unexpected subprotocol %q", got)
	}
	raw.write(string(clientFrame(0x1, []byte("go"))))
	want := append([]byte{0x81, 0x0C}, "Hello World!"...)
	want = append(want, 0x82, 0x04, 0xAA, 0xBB, 0xCC, 0xDD, 0x88, 0x02, 0x03, 0xE8)
	got := make([]byte, len(want))
	if _, err := io.ReadFull(raw.br, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("frames\n got % x\nwant % x", got, want)
	}
}

// Checklist B.27 / IS §4.4: a close with a code after frames, on an open
// socket, goes out after them.
func TestCloseAfterFramesInOneMessage(t *testing.T) {
	r := channels.NewRouter()
	r.RouteFunc("websocket.receive", func(ctx context.Context, m *channels.Message) error {
		return m.Reply(ctx, channels.Content{"text": "last", "close": int64(3001)})
	})
	srv := channelstest.NewServer(t, r)
	ws := srv.DialWS("/")
	ws.SendText("x")
	if got := ws.ReceiveText(); got != "last" {
		t.Fatalf("got %q", got)
	}
	if got := ws.WaitClosed(); got != 3001 {
		t.Fatalf("closed with %d, want 3001", got)
	}
}

// A full websocket.connect channel answers 503 and sends nothing more.
func TestConnectQueueFullIs503(t *testing.T) {
	l := newLayer(t, inmemory.Config{ChannelCapacity: []channels.CapacityRule{{Pattern: "websocket.connect", Capacity: 1}}})
	send(t, l, "websocket.connect", channels.Content{"filler": true})
	srv := appless(t, l, nil)
	ws := srv.NewWSClient("/")
	status, _ := ws.TryDial()
	if status != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", status)
	}
	body, _ := io.ReadAll(ws.Response.Body)
	if !strings.Contains(string(body), "Connection queue at capacity") {
		t.Fatalf("body %q", body)
	}
	if got := srv.Gateway.Stats().ConnectQueueFull; got != 1 {
		t.Fatalf("ConnectQueueFull = %d", got)
	}
	if ch, c, _ := channels.Poll(context.Background(), l, "websocket.disconnect"); c != nil {
		t.Fatalf("unexpected message on %s: %v", ch, c)
	}
}

// A websocket.receive channel that stays full closes the socket with 1013
// and mutes it: no more receive messages and no disconnect.
func TestReceiveQueueFullCloses1013(t *testing.T) {
	l := newLayer(t, inmemory.Config{ChannelCapacity: []channels.CapacityRule{{Pattern: "websocket.receive", Capacity: 1}}})
	srv := channelstest.StartServer(t, channelstest.ServerConfig{
		Layer:  l,
		Worker: func(w *worker.Worker) { w.Only = []string{"websocket.connect"} },
	})
	ws := srv.DialWS("/")
	ws.SendText("one")
	ws.SendText("two")
	if got := ws.WaitClosed(); got != 1013 {
		t.Fatalf("closed with %d, want 1013", got)
	}
	waitFor(t, "the socket to be closed", func() bool { return srv.Gateway.Stats().WebSocketsOpen == 0 })
	if got := srv.Gateway.Stats().ReceiveQueueFull; got != 1 {
		t.Fatalf("ReceiveQueueFull = %d", got)
	}
	m := layerMessage(t, l, "websocket.receive")
	if m.String("text") != "one" {
		t.Fatalf("queued receive %v", m)
	}
	if ch, c, _ := channels.Poll(context.Background(), l, "websocket.receive", "websocket.disconnect"); c != nil {
		t.Fatalf("muted socket sent %s: %v", ch, c)
	}
}

// A burst of more sockets than websocket.receive holds, each with one frame
// in flight, is served first come, first served while the worker keeps up:
// a frame that finds the channel full waits its turn behind earlier ones
// instead of racing fresh frames on a backoff of its own, so none of them
// is closed with 1013. (The worker needs 200 ms for the 100 frames, within
// the half second a frame may wait; on separate backoffs most lost.)
func TestReceiveQueueFullServesABurstInOrderOfArrival(t *testing.T) {
	l := newLayer(t, inmemory.Config{ChannelCapacity: []channels.CapacityRule{{Pattern: "websocket.receive", Capacity: 2}}})
	r := channels.NewRouter()
	r.RouteFunc("websocket.receive", func(ctx context.Context, m *channels.Message) error {
		time.Sleep(2 * time.Millisecond)
		return m.Reply(ctx, channels.Content{"text": m.Content.String("text")})
	})
	srv := channelstest.StartServer(t, channelstest.ServerConfig{
		Layer:    l,
		Consumer: r,
		Worker:   func(w *worker.Worker) { w.Concurrency = 1 },
	})
	const n = 100
	socks := make([]*channelstest.WSClient, n)
	for i := range socks {
		socks[i] = srv.DialWS("/")
	}
	for i, ws := range socks {
		ws.SendText(strconv.Itoa(i))
	}
	for i, ws := range socks {
		if got := ws.ReceiveText(); got != strconv.Itoa(i) {
			t.Fatalf("socket %d got %q", i, got)
		}
	}
	if got := srv.Gateway.Stats().ReceiveQueueFull; got != 0 {
		t.Fatalf("%d sockets closed with 1013 although the worker kept up", got)
	}
}

// Many sockets closing at once against a small websocket.disconnect
// channel: every disconnect still reaches the application (retried in the
// background while the channel is full), so none of them misses its chance
// to leave groups.
func TestDisconnectStormLosesNothing(t *testing.T) {
	l := newLayer(t, inmemory.Config{ChannelCapacity: []channels.CapacityRule{{Pattern: "websocket.disconnect", Capacity: 2}}})
	var mu sync.Mutex
	seen := map[string]bool{}
	r := channels.NewRouter()
	r.RouteFunc("websocket.disconnect", func(ctx context.Context, m *channels.Message) error {
		time.Sleep(2 * time.Millisecond)
		mu.Lock()
		seen[m.ReplyChannel] = true
		mu.Unlock()
		return nil
	})
	srv := channelstest.StartServer(t, channelstest.ServerConfig{
		Layer:    l,
		Consumer: r,
		Worker:   func(w *worker.Worker) { w.Concurrency = 1 },
	})
	const n = 100
	socks := make([]*channelstest.WSClient, n)
	for i := range socks {
		socks[i] = srv.DialWS("/")
	}
	var wg sync.WaitGroup
	for _, ws := range socks {
		wg.Go(func() { ws.Close(1000, "") })
	}
	wg.Wait()
	waitFor(t, "every disconnect to be consumed", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == n
	})
	if got := srv.Gateway.Stats().DroppedDisconnects; got != 0 {
		t.Fatalf("DroppedDisconnects = %d, want 0", got)
	}
}

// Disconnects still waiting for room when the gateway is closed are given
// up at once, and counted; Close does not wait out the retry.
func TestCloseGivesUpWaitingDisconnects(t *testing.T) {
	l := newLayer(t, inmemory.Config{ChannelCapacity: []channels.CapacityRule{{Pattern: "websocket.disconnect", Capacity: 1}}})
	srv := channelstest.StartServer(t, channelstest.ServerConfig{
		Layer:  l,
		Worker: func(w *worker.Worker) { w.Only = []string{"websocket.connect"} },
	})
	const n = 10
	for range n {
		srv.DialWS("/")
	}
	start := time.Now()
	if err := srv.Gateway.Close(); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Fatalf("Close took %v", el)
	}
	if got := srv.Gateway.Stats().DroppedDisconnects; got != n-1 {
		t.Fatalf("DroppedDisconnects = %d, want %d (one fits in the channel)", got, n-1)
	}
}

// A message over MaxMessageSize closes the socket with 1009.
func TestMessageTooLargeCloses1009(t *testing.T) {
	rec := newRecorder()
	srv := channelstest.StartServer(t, channelstest.ServerConfig{
		Consumer: recordingRouter(rec),
		Gateway:  func(g *gateway.Server) { g.MaxMessageSize = 1024 },
	})
	ws := srv.DialWS("/")
	ws.SendText(strings.Repeat("a", 1024))
	if m := rec.next(t, "websocket.receive"); len(m.Content.String("text")) != 1024 {
		t.Fatal("a message of exactly MaxMessageSize was not delivered")
	}
	ws.SendText(strings.Repeat("a", 1025))
	if got := ws.WaitClosed(); got != 1009 {
		t.Fatalf("closed with %d, want 1009", got)
	}
	d := rec.next(t, "websocket.disconnect")
	if c, _ := d.Content.Int("code"); c != 1009 {
		t.Fatalf("disconnect code %d, want 1009", c)
	}
	if got := srv.Gateway.Stats().TooLarge; got != 1 {
		t.Fatalf("TooLarge = %d", got)
	}
}

// Text frames must be UTF-8; invalid text closes with 1007.
func TestInvalidUTF8Closes1007(t *testing.T) {
	rec := newRecorder()
	srv := channelstest.NewServer(t, recordingRouter(rec))
	raw := openRaw(t, srv.URL, "/")
	raw.write(string(clientFrame(0x1, []byte{0xff, 0xfe})))
	op, p := raw.readFrame()
	if op != 0x88 || len(p) < 2 || int(p[0])<<8|int(p[1]) != 1007 {
		t.Fatalf("got frame %x % x, want close 1007", op, p)
	}
}

// dialNonReader opens a WebSocket whose client never reads (with a small
// receive buffer, so that it fills quickly) and returns its reply channel.
func dialNonReader(t *testing.T, srv *channelstest.Server, rec *recorder) string {
	t.Helper()
	raw := dialRaw(t, srv.URL)
	_ = raw.c.(*net.TCPConn).SetReadBuffer(4096)
	raw.write(upgradeRequest("/"))
	if resp := raw.response(nil); resp.StatusCode != 101 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	return rec.next(t, "websocket.connect").ReplyChannel
}

// A client that does not read is closed once its outbound queue overflows
// (or a write times out), and counted.
func TestSlowClientClosed(t *testing.T) {
	rec := newRecorder()
	srv := channelstest.StartServer(t, channelstest.ServerConfig{
		Consumer: recordingRouter(rec),
		Gateway: func(g *gateway.Server) {
			g.OutboundQueue = 4
			g.WriteTimeout = 300 * time.Millisecond
		},
	})
	reply := dialNonReader(t, srv, rec)
	big := bytes.Repeat([]byte("x"), 256<<10)
	for srv.Gateway.Stats().SlowClients == 0 {
		err := srv.Layer.Send(context.Background(), reply, channels.Content{"bytes": big})
		if err != nil && !strings.Contains(err.Error(), "full") {
			t.Fatal(err)
		}
		if err != nil {
			time.Sleep(time.Millisecond)
		}
	}
	d := rec.next(t, "websocket.disconnect")
	if c, _ := d.Content.Int("code"); c != 1008 && c != 1006 {
		t.Fatalf("disconnect code %d, want 1008 or 1006", c)
	}
}

// A client that does not read is closed once the frames waiting for it
// pass OutboundBytes, long before their number reaches OutboundQueue or a
// timeout runs out: large frames cannot pile up to OutboundQueue × their
// size in memory.
func TestSlowClientClosedByQueuedBytes(t *testing.T) {
	rec := newRecorder()
	const limit = 1 << 20
	srv := channelstest.StartServer(t, channelstest.ServerConfig{
		Consumer: recordingRouter(rec),
		Gateway: func(g *gateway.Server) {
			g.OutboundQueue = 1000
			g.OutboundBytes = limit
			// The frame being written when the queue overflows ends with
			// this timeout: the disconnect follows then.
			g.SlowClientTimeout = 2 * time.Second
		},
	})
	reply := dialNonReader(t, srv, rec)
	big := bytes.Repeat([]byte("x"), 256<<10)
	start := time.Now()
	sent := 0
	for srv.Gateway.Stats().SlowClients == 0 {
		if time.Since(start) > time.Second {
			t.Fatalf("not closed within 1 s (before the 2 s SlowClientTimeout) after %d frames of %d KiB (%d MiB) with OutboundBytes %d MiB", sent, len(big)>>10, sent*len(big)>>20, limit>>20)
		}
		err := srv.Layer.Send(context.Background(), reply, channels.Content{"bytes": big})
		if err != nil && !strings.Contains(err.Error(), "full") {
			t.Fatal(err)
		}
		if err != nil {
			time.Sleep(time.Millisecond)
			continue
		}
		sent++
	}
	// The kernel's buffers and the frame being written hold some; the
	// queue holds at most 1 MiB more.
	if max := limit/len(big) + 8; sent > max {
		t.Errorf("closed after %d frames of 256 KiB; want at most %d", sent, max)
	}
	d := rec.next(t, "websocket.disconnect")
	if c, _ := d.Content.Int("code"); c != 1008 && c != 1006 {
		t.Fatalf("disconnect code %d, want 1008 or 1006", c)
	}
}

// One frame that a client does not read is bounded by WriteTimeout alone
// (the outbound queue is far from full): the socket is dropped, with 1008
// for the application, and counted.
func TestSlowClientDroppedByWriteTimeout(t *testing.T) {
	rec := newRecorder()
	srv := channelstest.StartServer(t, channelstest.ServerConfig{
		Layer:    newLayer(t, inmemory.Config{MaxMessageSize: 64 << 20}),
		Consumer: recordingRouter(rec),
		Gateway: func(g *gateway.Server) {
			g.OutboundQueue = 1000
			g.WriteTimeout = 300 * time.Millisecond
		},
	})
	reply := dialNonReader(t, srv, rec)
	start := time.Now()
	if err := srv.Layer.Send(context.Background(), reply, channels.Content{"bytes": bytes.Repeat([]byte("x"), 32<<20)}); err != nil {
		t.Fatal(err)
	}
	d := rec.next(t, "websocket.disconnect")
	if c, _ := d.Content.Int("code"); c != 1008 {
		t.Fatalf("disconnect code %d, want 1008", c)
	}
	if el := time.Since(start); el < 250*time.Millisecond {
		t.Fatalf("dropped after %v, before the 300 ms WriteTimeout", el)
	}
	if got := srv.Gateway.Stats().SlowClients; got != 1 {
		t.Fatalf("SlowClients = %d, want 1", got)
	}
}

// Pings go out on an idle socket; a peer that answers stays connected, one
// that does not is dropped after PingTimeout (disconnect code 1006).
func TestPingKeepalive(t *testing.T) {
	rec, srv := pingingServer(t, 30*time.Millisecond, 150*time.Millisecond)
	raw := openRaw(t, srv.URL, "/")
	for i := range 3 {
		op, p := raw.readFrame()
		if op != 0x89 {
			t.Fatalf("frame %d: opcode %x, want ping", i, op)
		}
		raw.write(string(clientFrame(0xA, p)))
	}
	if got := srv.Gateway.Stats().PingTimeouts; got != 0 {
		t.Fatalf("PingTimeouts = %d while pongs were sent", got)
	}
	// Stop answering: the next ping times out.
	d := rec.next(t, "websocket.disconnect")
	if c, _ := d.Content.Int("code"); c != 1006 {
		t.Fatalf("disconnect code %d, want 1006", c)
	}
	if got := srv.Gateway.Stats().PingTimeouts; got != 1 {
		t.Fatalf("PingTimeouts = %d, want 1", got)
	}
}

// A connection that ends while a ping waits for its pong is not counted as
// a ping timeout.
func TestPingEndsWithConnection(t *testing.T) {
	rec, srv := pingingServer(t, 30*time.Millisecond, 400*time.Millisecond)
	raw := openRaw(t, srv.URL, "/")
	if op, _ := raw.readFrame(); op != 0x89 {
		t.Fatalf("opcode %x, want ping", op)
	}
	raw.c.Close() // gone, with the ping unanswered
	if d := rec.next(t, "websocket.disconnect"); intOf(d, "code") != 1006 {
		t.Fatalf("disconnect %v, want code 1006", d.Content)
	}
	time.Sleep(600 * time.Millisecond) // past the ping's timeout
	if got := srv.Gateway.Stats().PingTimeouts; got != 0 {
		t.Fatalf("PingTimeouts = %d for a connection that ended while its ping waited, want 0", got)
	}
}

// In one process a frame's consumer may run in the read loop, which then
// reads no pong: a consumer running for longer than the ping interval and
// the ping timeout together does not get its own socket dropped.
func TestSlowConsumerInReadLoopKeepsSocket(t *testing.T) {
	r := channels.NewRouter()
	r.RouteFunc("websocket.receive", func(ctx context.Context, m *channels.Message) error {
		text := m.Content.String("text")
		if text == "slow" {
			time.Sleep(400 * time.Millisecond)
		}
		return m.Reply(ctx, channels.Content{"text": text})
	})
	srv := channelstest.StartServer(t, channelstest.ServerConfig{
		Consumer: r,
		Gateway: func(g *gateway.Server) {
			g.PingInterval = 30 * time.Millisecond
			g.PingTimeout = 100 * time.Millisecond
		},
	})
	raw := openRaw(t, srv.URL, "/")
	// expect reads frames, answering pings, until a text frame comes.
	expect := func(want string) {
		t.Helper()
		for {
			op, p := raw.readFrame()
			switch op {
			case 0x89:
				raw.write(string(clientFrame(0xA, p)))
			case 0x81:
				if string(p) != want {
					t.Fatalf("echo %q, want %q", p, want)
				}
				return
			default:
				t.Fatalf("opcode %x (payload %q), want a ping or the echo", op, p)
			}
		}
	}
	// A first echo: the worker is running (and attached to the layer).
	raw.write(string(clientFrame(0x1, []byte("fast"))))
	expect("fast")
	raw.write(string(clientFrame(0x1, []byte("slow"))))
	expect("slow")
	if got := srv.Gateway.Stats().PingTimeouts; got != 0 {
		t.Fatalf("PingTimeouts = %d: the socket was dropped while its consumer ran", got)
	}
	raw.write(string(clientFrame(0x1, []byte("after"))))
	expect("after")
}

// WebSocketTimeout closes a socket with 1000 when its lifetime is over;
// IdleTimeout closes one that carried no data for that long.
func TestLifetimeAndIdleLimits(t *testing.T) {
	for _, tc := range []struct {
		name  string
		tweak func(*gateway.Server)
	}{
		{"lifetime", func(g *gateway.Server) { g.WebSocketTimeout = 100 * time.Millisecond }},
		{"idle", func(g *gateway.Server) {
			g.IdleTimeout = 100 * time.Millisecond
			g.PingInterval = 20 * time.Millisecond
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder()
			srv := channelstest.StartServer(t, channelstest.ServerConfig{Consumer: recordingRouter(rec), Gateway: tc.tweak})
			ws := srv.DialWS("/")
			if got := ws.WaitClosed(); got != 1000 {
				t.Fatalf("closed with %d, want 1000", got)
			}
			d := rec.next(t, "websocket.disconnect")
			if c, _ := d.Content.Int("code"); c != 1000 {
				t.Fatalf("disconnect code %d, want 1000", c)
			}
		})
	}
}

// The layer's group expiry is the default WebSocket lifetime.
func TestLifetimeDefaultsToGroupExpiry(t *testing.T) {
	l := newLayer(t, inmemory.Config{GroupExpiry: 150 * time.Millisecond})
	srv := channelstest.StartServer(t, channelstest.ServerConfig{Layer: l})
	ws := srv.DialWS("/")
	if got := ws.WaitClosed(); got != 1000 {
		t.Fatalf("closed with %d, want 1000", got)
	}
}

// The first subprotocol the client offers that the server accepts wins.
func TestSubprotocolNegotiation(t *testing.T) {
	for _, tc := range []struct {
		name    string
		server  []string
		offered []string
		header  string // raw header instead of offered
		want    string
	}{
		{"first offered wins", []string{"v2", "v1"}, []string{"v1", "v2"}, "", "v1"},
		{"skips unknown", []string{"chat"}, []string{"other", "chat"}, "", "chat"},
		{"no match", []string{"chat"}, []string{"other"}, "", ""},
		{"server has none", nil, []string{"chat"}, "", ""},
		{"percent-encoded list", []string{"b.v1"}, nil, "a%2C%20b.v1", "b.v1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := channelstest.StartServer(t, channelstest.ServerConfig{
				Gateway: func(g *gateway.Server) { g.Subprotocols = tc.server },
			})
			raw := dialRaw(t, srv.URL)
			h := tc.header
			if h == "" {
				h = strings.Join(tc.offered, ", ")
			}
			raw.write(upgradeRequest("/", "Sec-WebSocket-Protocol: "+h+"\r\n"))
			resp := raw.response(nil)
			if resp.StatusCode != 101 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			got, present := resp.Header["Sec-Websocket-Protocol"]
			if tc.want == "" && present {
				t.Fatalf("unexpected Sec-WebSocket-Protocol %q", got)
			}
			if tc.want != "" && resp.Header.Get("Sec-WebSocket-Protocol") != tc.want {
				t.Fatalf("subprotocol %q, want %q", resp.Header.Get("Sec-WebSocket-Protocol"), tc.want)
			}
		})
	}
}

// Shutdown closes every socket with 1001 and emits its disconnect; new
// requests get 503.
func TestShutdownClosesWith1001(t *testing.T) {
	rec := newRecorder()
	srv := channelstest.NewServer(t, recordingRouter(rec))
	var clients []*channelstest.WSClient
	for range 3 {
		clients = append(clients, srv.DialWS("/"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := srv.Gateway.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for i, ws := range clients {
		if got := ws.WaitClosed(); got != 1001 {
			t.Fatalf("client %d closed with %d, want 1001", i, got)
		}
	}
	for range clients {
		d := rec.next(t, "websocket.disconnect")
		if c, _ := d.Content.Int("code"); c != 1001 {
			t.Fatalf("disconnect code %d, want 1001", c)
		}
	}
	resp, err := srv.HTTP.Client().Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("after Shutdown: status %d, want 503", resp.StatusCode)
	}
	if status, _ := srv.NewWSClient("/").TryDial(); status != http.StatusServiceUnavailable {
		t.Fatalf("handshake after Shutdown: status %d, want 503", status)
	}
}

// Shutdown refuses handshakes still waiting for the application with 503.
func TestShutdownRefusesPendingHandshakes(t *testing.T) {
	srv := channelstest.StartServer(t, channelstest.ServerConfig{
		Consumer: connectRouter(newRecorder(), func(context.Context, *channels.Message) error { return nil }),
	})
	result := make(chan int, 1)
	ws := srv.NewWSClient("/")
	go func() {
		status, _ := ws.TryDial()
		result <- status
	}()
	waitFor(t, "the handshake to be pending", func() bool { return srv.Gateway.Stats().WebSocketsHandshaking == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := srv.Gateway.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if got := <-result; got != http.StatusServiceUnavailable {
		t.Fatalf("pending handshake got %d, want 503", got)
	}
}

// Close drops every socket at once; disconnects report 1006.
func TestCloseDropsSockets(t *testing.T) {
	rec := newRecorder()
	srv := channelstest.NewServer(t, recordingRouter(rec))
	ws := srv.DialWS("/")
	if err := srv.Gateway.Close(); err != nil {
		t.Fatal(err)
	}
	if got := ws.WaitClosed(); got != 1006 {
		t.Fatalf("closed with %d, want 1006", got)
	}
	d := rec.next(t, "websocket.disconnect")
	if c, _ := d.Content.Int("code"); c != 1006 {
		t.Fatalf("disconnect code %d, want 1006", c)
	}
	if err := srv.Gateway.Shutdown(context.Background()); err != gateway.ErrServerClosed {
		t.Fatalf("Shutdown after Close: %v", err)
	}
}

// Invalid handshakes are refused before the application hears of them.
func TestInvalidHandshake(t *testing.T) {
	for _, tc := range []struct {
		name, req string
		want      int
	}{
		{"no key", "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n", 400},
		{"bad version", "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\nSec-WebSocket-Version: 8\r\n\r\n", 400},
		{"no Connection upgrade", "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nSec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\nSec-WebSocket-Version: 13\r\n\r\n", 426},
		{"POST", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\nSec-WebSocket-Version: 13\r\n\r\n", 405},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLayer(t, inmemory.Config{})
			srv := appless(t, l, nil)
			raw := dialRaw(t, srv.URL)
			raw.write(tc.req)
			if resp := raw.response(nil); resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
			}
			if ch, c, _ := channels.Poll(context.Background(), l, "websocket.connect"); c != nil {
				t.Fatalf("the application heard of an invalid handshake on %s", ch)
			}
		})
	}
}

// Checklist D.42 / A1.7: frames a client sends before the handshake is
// answered are not relayed until the application accepts; then they are,
// numbered from 1.
func TestD42_NoFramesBeforeAcceptance(t *testing.T) {
	l := newLayer(t, inmemory.Config{})
	srv := appless(t, l, nil)
	raw := dialRaw(t, srv.URL)
	raw.write(upgradeRequest("/early/") + string(clientFrame(0x1, []byte("too early"))))
	c := layerMessage(t, l, "websocket.connect")
	time.Sleep(50 * time.Millisecond) // give a wrong implementation time to relay it
	if ch, m, _ := channels.Poll(context.Background(), l, "websocket.receive"); m != nil {
		t.Fatalf("relayed %s before acceptance: %v", ch, m)
	}
	send(t, l, c.String("reply_channel"), channels.Content{"accept": true})
	if resp := raw.response(nil); resp.StatusCode != 101 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	m := layerMessage(t, l, "websocket.receive")
	if o, _ := m.Int("order"); o != 1 || m.String("text") != "too early" {
		t.Fatalf("receive %v", m)
	}
}

// Keys starting with "__" are framework metadata (such as the delay
// server's "__delay_id__"): they do not make a reply invalid.
func TestMetadataKeysInReplies(t *testing.T) {
	r := channels.NewRouter()
	r.RouteFunc("websocket.receive", func(ctx context.Context, m *channels.Message) error {
		return m.Reply(ctx, channels.Content{"text": "delayed", "__delay_id__": int64(7)})
	})
	srv := channelstest.NewServer(t, r)
	ws := srv.DialWS("/")
	ws.SendText("x")
	if got := ws.ReceiveText(); got != "delayed" {
		t.Fatalf("got %q", got)
	}
}

// Many sockets at once through the single receive loop: every client gets
// its own replies, in order.
func TestManyConcurrentSockets(t *testing.T) {
	r := channels.NewRouter()
	r.RouteFunc("websocket.receive", func(ctx context.Context, m *channels.Message) error {
		return m.Reply(ctx, channels.Content{"text": m.Content.String("text")})
	})
	srv := channelstest.NewServer(t, r)
	const sockets, frames = 50, 10
	clients := make([]*channelstest.WSClient, sockets)
	for i := range clients {
		clients[i] = srv.DialWS("/")
	}
	var wg sync.WaitGroup
	for i, ws := range clients {
		wg.Go(func() {
			for j := range frames {
				ws.SendText(fmt.Sprintf("%d-%d", i, j))
			}
			for j := range frames {
				if got, want := ws.ReceiveText(), fmt.Sprintf("%d-%d", i, j); got != want {
					t.Errorf("client %d: got %q, want %q", i, got, want)
					return
				}
			}
		})
	}
	wg.Wait()
	if s := srv.Gateway.Stats(); s.WebSocketsOpen != sockets || s.DroppedReplies != 0 || s.SlowClients != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// A websocket.receive channel that is full only for a moment does not
// close the socket: the frame waits for room.
func TestReceiveQueueBrieflyFull(t *testing.T) {
	l := newLayer(t, inmemory.Config{ChannelCapacity: []channels.CapacityRule{{Pattern: "websocket.receive", Capacity: 1}}})
	srv := channelstest.StartServer(t, channelstest.ServerConfig{
		Layer:  l,
		Worker: func(w *worker.Worker) { w.Only = []string{"websocket.connect"} },
	})
	ws := srv.DialWS("/")
	send(t, l, "websocket.receive", channels.Content{"filler": true})
	ws.SendText("one")
	waitFor(t, "the gateway to find the channel full", func() bool {
		st, _ := l.Stats(context.Background())
		return st.Full >= 1
	})
	if m := layerMessage(t, l, "websocket.receive"); !m.Bool("filler") {
		t.Fatalf("first message %v", m)
	}
	if m := layerMessage(t, l, "websocket.receive"); m.String("text") != "one" {
		t.Fatalf("second message %v", m)
	}
	if got := ws.CloseStatus(); got != 0 {
		t.Fatalf("socket closed with %d", got)
	}
}

// A client that leaves during the handshake still produces
// websocket.disconnect (1006, order 1).
func TestClientLeavesDuringHandshake(t *testing.T) {
	l := newLayer(t, inmemory.Config{})
	srv := appless(t, l, nil)
	raw := dialRaw(t, srv.URL)
	raw.write(upgradeRequest("/leaving/"))
	c := layerMessage(t, l, "websocket.connect")
	raw.c.Close()
	d := layerMessage(t, l, "websocket.disconnect")
	code, _ := d.Int("code")
	order, _ := d.Int("order")
	if d.String("reply_channel") != c.String("reply_channel") || code != 1006 || order != 1 || d.String("path") != "/leaving/" {
		t.Fatalf("disconnect %v", d)
	}
	waitFor(t, "no handshake in progress", func() bool { return srv.Gateway.Stats().WebSocketsHandshaking == 0 })
}
