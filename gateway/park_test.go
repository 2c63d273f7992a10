//go:build linux

package gateway_test

import (
	"context"
	"encoding/binary"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/channelstest"
	"github.com/gochannels/channels/gateway"
)

// Idle sockets park: their read loops end, and the server holds no
// goroutine for them. A parked socket still does everything an open one
// does: a frame from its client is read and sent on, the client's close
// and the client going away end it with the right disconnect code, a close
// from the application reaches the client, pings are answered, and the
// server's shutdown ends the parked ones too.
func TestIdleSocketsPark(t *testing.T) {
	const n = 40
	rec := newRecorder()
	srv := channelstest.StartServer(t, channelstest.ServerConfig{
		Consumer: recordingRouter(rec),
		Gateway: func(g *gateway.Server) {
			g.PingInterval = time.Hour // pings are tested below, on one socket of their own
		},
	})
	socks := make([]*rawConn, n)
	replies := make([]string, n)
	for i := range socks {
		socks[i] = openRaw(t, srv.URL, "/")
		replies[i] = rec.next(t, "websocket.connect").ReplyChannel
	}
	waitFor(t, "every idle socket to park", func() bool { return srv.Gateway.Stats().WebSocketsParked == n })
	// Without parking every socket keeps a read loop goroutine.
	if loops := readLoops(); loops != 0 {
		t.Fatalf("%d read loop goroutines while every socket is parked, want 0", loops)
	}

	// A frame on a parked socket is read and sent on.
	socks[0].write(string(clientFrame(0x1, []byte("hello"))))
	if m := rec.next(t, "websocket.receive"); m.Content.String("text") != "hello" || m.ReplyChannel != replies[0] {
		t.Fatalf("websocket.receive %v, want hello from the first socket", m.Content)
	}
	waitFor(t, "the busy socket to park again", func() bool { return srv.Gateway.Stats().WebSocketsParked == n })

	// The client closes with a close frame: 1000, and the server answers.
	payload := binary.BigEndian.AppendUint16(nil, 1000)
	socks[1].write(string(clientFrame(0x8, payload)))
	if op, _ := socks[1].readFrame(); op != 0x88 {
		t.Fatalf("opcode %x after the client's close, want the server's close", op)
	}
	if d := rec.next(t, "websocket.disconnect"); d.ReplyChannel != replies[1] || intOf(d, "code") != 1000 {
		t.Fatalf("disconnect %v, want code 1000 from the second socket", d.Content)
	}

	// The client goes away without a close frame: 1006.
	socks[2].c.Close()
	if d := rec.next(t, "websocket.disconnect"); d.ReplyChannel != replies[2] || intOf(d, "code") != 1006 {
		t.Fatalf("disconnect %v, want code 1006 from the third socket", d.Content)
	}

	// The application closes a parked socket: the close frame reaches
	// the client, which answers it.
	send(t, srv.Layer, replies[3], channels.Content{"close": 4001})
	op, p := socks[3].readFrame()
	if op != 0x88 || len(p) < 2 || binary.BigEndian.Uint16(p) != 4001 {
		t.Fatalf("opcode %x payload %q, want a close with 4001", op, p)
	}
	socks[3].write(string(clientFrame(0x8, p[:2])))
	if d := rec.next(t, "websocket.disconnect"); d.ReplyChannel != replies[3] || intOf(d, "code") != 4001 {
		t.Fatalf("disconnect %v, want code 4001 from the fourth socket", d.Content)
	}
	waitFor(t, "the closed sockets to leave the parked ones", func() bool { return srv.Gateway.Stats().WebSocketsParked == n-3 })

	// The server's shutdown closes the parked sockets (1001), the clients
	// answer, and it waits for their read loops, which start again to end.
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- srv.Gateway.Shutdown(ctx) }()
	open := append([]*rawConn{socks[0]}, socks[4:]...)
	for i, sock := range open {
		op, p := sock.readFrame()
		if op != 0x88 || len(p) < 2 || binary.BigEndian.Uint16(p) != 1001 {
			t.Fatalf("socket %d: opcode %x payload %q at shutdown, want a close with 1001", i, op, p)
		}
		sock.write(string(clientFrame(0x8, p[:2])))
	}
	if err := <-done; err != nil {
		t.Fatalf("shutdown with %d parked sockets: %v", len(open), err)
	}
	for range open {
		if d := rec.next(t, "websocket.disconnect"); intOf(d, "code") != 1001 {
			t.Fatalf("disconnect %v at shutdown, want code 1001", d.Content)
		}
	}
	if got := srv.Gateway.Stats().WebSocketsParked; got != 0 {
		t.Fatalf("WebSocketsParked = %d after shutdown, want 0", got)
	}
}

// A parked socket answers pings: the pong wakes its read loop, so a client
// that answers stays connected well past PingTimeout; one that stops
// answering is dropped, and its parked read loop ends the connection.
func TestParkedSocketPings(t *testing.T) {
	rec := newRecorder()
	srv := channelstest.StartServer(t, channelstest.ServerConfig{
		Consumer: recordingRouter(rec),
		Gateway: func(g *gateway.Server) {
			g.PingInterval = 200 * time.Millisecond
			g.PingTimeout = 300 * time.Millisecond
		},
	})
	raw := openRaw(t, srv.URL, "/")
	waitFor(t, "the socket to park", func() bool { return srv.Gateway.Stats().WebSocketsParked == 1 })
	for i := range 4 {
		op, p := raw.readFrame()
		if op != 0x89 {
			t.Fatalf("frame %d: opcode %x, want ping", i, op)
		}
		raw.write(string(clientFrame(0xA, p)))
	}
	if got := srv.Gateway.Stats().PingTimeouts; got != 0 {
		t.Fatalf("PingTimeouts = %d while a parked socket answered every ping", got)
	}
	if got := srv.Gateway.Stats().WebSocketsOpen; got != 1 {
		t.Fatalf("WebSocketsOpen = %d, want 1", got)
	}
	// A ping from the client is answered, and the socket parks again.
	waitFor(t, "the socket to park again", func() bool { return srv.Gateway.Stats().WebSocketsParked == 1 })
	raw.write(string(clientFrame(0x9, []byte("are you there"))))
	for {
		op, p := raw.readFrame()
		if op == 0x89 { // the server's own ping may come first
			raw.write(string(clientFrame(0xA, p)))
			continue
		}
		if op != 0x8A || string(p) != "are you there" {
			t.Fatalf("opcode %x payload %q after the client's ping, want its pong", op, p)
		}
		break
	}
	// Stop answering: the socket, parked again, is dropped when a ping
	// times out; its read loop starts again to end the connection.
	waitFor(t, "the socket to park again", func() bool { return srv.Gateway.Stats().WebSocketsParked == 1 })
	if d := rec.next(t, "websocket.disconnect"); intOf(d, "code") != 1006 {
		t.Fatalf("disconnect %v after a ping timeout, want code 1006", d.Content)
	}
	if got := srv.Gateway.Stats().PingTimeouts; got != 1 {
		t.Fatalf("PingTimeouts = %d, want 1", got)
	}
}

func intOf(m *channels.Message, key string) int64 {
	v, _ := m.Content.Int(key)
	return v
}

// readLoops counts the goroutines in a WebSocket's read loop.
func readLoops() int {
	var b strings.Builder
	_ = pprof.Lookup("goroutine").WriteTo(&b, 1)
	n := 0
	for _, g := range strings.Split(b.String(), "\n\n") {
		if strings.Contains(g, "gateway.(*wsConn).readLoop") {
			count, _, _ := strings.Cut(g, " @")
			k, _ := strconv.Atoi(count)
			n += k
		}
	}
	return n
}
