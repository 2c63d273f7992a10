//go:build linux

package gateway_test

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gochannels/channels"
)

// Idle sockets park: their read loops end, and the server holds no
// goroutine for them. A parked socket still does everything an open one
// does: a frame from its client is read and sent on, the client's close
// and the client going away end it with the right disconnect code, a close
// from the application reaches the client, pings are answered, and the
// server's shutdown ends the parked ones too.
func TestIdleSocketsPark(t *testing.T) {
	const n = 40
	rec, srv := pingingServer(t, time.Hour, 0) // pings are tested below, on one socket of their own
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
	rec, srv := pingingServer(t, 200*time.Millisecond, 300*time.Millisecond)
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

// Sockets that park and wake at random while their clients send frames,
// pings and closes, and the application closes some: every socket's frames
// arrive in order and its disconnect exactly once, with the right code, and
// none stays parked.
func TestParkingChurn(t *testing.T) {
	const n, frames = 60, 5
	rec, srv := pingingServer(t, 70*time.Millisecond, 5*time.Second)
	socks := make([]*rawConn, n)
	index := make(map[string]int, n)
	for i := range socks {
		socks[i] = openRaw(t, srv.URL, "/")
		index[rec.next(t, "websocket.connect").ReplyChannel] = i
	}
	seen := make([]chan struct{}, n) // closed when the application has every frame of socket i
	for i := range seen {
		seen[i] = make(chan struct{})
	}
	var wg sync.WaitGroup
	for i, sock := range socks {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(i), 7))
			// A reader answers the server's pings until the close comes.
			closed := make(chan []byte, 1)
			go func() {
				for {
					op, p := sock.readFrame()
					switch op {
					case 0x89:
						sock.write(string(clientFrame(0xA, p)))
					case 0x88:
						closed <- p
						return
					}
				}
			}()
			_ = sock.c.SetDeadline(time.Now().Add(4 * wait))
			for f := range frames {
				// Often long enough to park: after the handshake (50 ms),
				// and after a frame (a second).
				pause := time.Duration(r.IntN(120)) * time.Millisecond
				if r.IntN(4) == 0 {
					pause += time.Second
				}
				time.Sleep(pause)
				if r.IntN(3) == 0 {
					sock.write(string(clientFrame(0x9, []byte("ping"))))
				}
				sock.write(string(clientFrame(0x1, []byte(strconv.Itoa(f)))))
			}
			time.Sleep(time.Duration(r.IntN(120)) * time.Millisecond)
			if i%2 == 0 {
				sock.write(string(clientFrame(0x8, binary.BigEndian.AppendUint16(nil, 1000))))
				<-closed
			} else {
				// The application closes once it has every frame (a frame
				// that meets the server's close on the way is dropped, as
				// the protocol allows).
				<-seen[i]
				if err := srv.Layer.Send(context.Background(), replyOf(index, i), channels.Content{"close": 4000 + i}); err != nil {
					t.Errorf("socket %d: sending the close: %v", i, err)
					return
				}
				p := <-closed
				sock.write(string(clientFrame(0x8, p[:2])))
			}
		})
	}
	next := make([]int, n)
	ended := make([]bool, n)
	// How many sockets are parked at once, sampled while frames flow.
	stop := make(chan struct{})
	most := make(chan int64, 1)
	go func() {
		var m int64
		defer func() { most <- m }()
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
				m = max(m, srv.Gateway.Stats().WebSocketsParked)
			}
		}
	}()
	timeout := time.After(4 * wait)
	for left := n; left > 0; {
		var m *channels.Message
		select {
		case m = <-rec.ch:
		case <-timeout:
			t.Fatalf("%d sockets did not end", left)
		}
		i, ok := index[m.ReplyChannel]
		if !ok {
			continue
		}
		switch m.Channel {
		case "websocket.receive":
			if got := m.Content.String("text"); got != strconv.Itoa(next[i]) || ended[i] {
				t.Fatalf("socket %d: frame %q (ended %v), want %d", i, got, ended[i], next[i])
			}
			if next[i]++; next[i] == frames {
				close(seen[i])
			}
		case "websocket.disconnect":
			want := int64(1000)
			if i%2 == 1 {
				want = int64(4000 + i)
			}
			if ended[i] || next[i] != frames || intOf(m, "code") != want {
				t.Fatalf("socket %d: disconnect %v after %d frames (ended %v), want code %d after %d", i, m.Content, next[i], ended[i], want, frames)
			}
			ended[i] = true
			left--
		}
	}
	wg.Wait()
	close(stop)
	if m := <-most; m < n/4 {
		t.Fatalf("at most %d of %d sockets parked at once; the test did not park them", m, n)
	}
	waitFor(t, "no socket parked", func() bool { return srv.Gateway.Stats().WebSocketsParked == 0 })
}

func replyOf(index map[string]int, i int) string {
	for k, v := range index {
		if v == i {
			return k
		}
	}
	return ""
}
