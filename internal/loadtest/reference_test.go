package loadtest_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/gochannels/channels/internal/loadtest"
)

func dialWS(t *testing.T, u string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, u, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", u, err)
	}
	c.SetReadLimit(-1)
	t.Cleanup(func() { c.CloseNow() })
	return c
}

func readWS(t *testing.T, c *websocket.Conn) (websocket.MessageType, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	typ, b, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return typ, b
}

func writeWS(t *testing.T, c *websocket.Conn, typ websocket.MessageType, b []byte) {
	t.Helper()
	if err := c.Write(context.Background(), typ, b); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// waitFor polls cond until it holds, failing the test after a generous while.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
	}
}

func TestReferenceHTTP(t *testing.T) {
	_, base := startReference(t, &loadtest.Reference{})
	for _, tc := range []struct {
		method, path string
		code         int
		body         string
	}{
		{"GET", "/http/", 200, "ok"},
		{"POST", "/http/", 405, ""},
		{"GET", "/http/more", 404, ""},
		{"GET", "/elsewhere/", 404, ""},
	} {
		req, _ := http.NewRequest(tc.method, base+tc.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.code || (tc.body != "" && string(body) != tc.body) {
			t.Errorf("%s %s: %d %q, want %d %q", tc.method, tc.path, resp.StatusCode, body, tc.code, tc.body)
		}
	}
	http.DefaultClient.CloseIdleConnections()
}

func TestReferenceEchoesFramesExactly(t *testing.T) {
	ws, _ := startReference(t, &loadtest.Reference{})
	c := dialWS(t, ws+"/echo/")
	big := bytes.Repeat([]byte("0123456789"), 10_000)
	frames := []struct {
		typ websocket.MessageType
		b   []byte
	}{
		{websocket.MessageText, []byte(`{"seq":1}`)},
		{websocket.MessageBinary, []byte{0, 1, 2, 255}},
		{websocket.MessageText, big},
		{websocket.MessageText, []byte("")},
	}
	for _, f := range frames {
		writeWS(t, c, f.typ, f.b)
	}
	for i, f := range frames {
		typ, b := readWS(t, c)
		if typ != f.typ || !bytes.Equal(b, f.b) {
			t.Errorf("echo %d: type %v, %d bytes; want type %v, %d bytes, identical", i, typ, len(b), f.typ, len(f.b))
		}
	}
}

func TestReferenceRoomsAreSeparate(t *testing.T) {
	ref := &loadtest.Reference{}
	ws, _ := startReference(t, ref)
	a1, a2 := dialWS(t, ws+"/fanout/a/"), dialWS(t, ws+"/fanout/a/")
	b1 := dialWS(t, ws+"/fanout/b/")
	waitFor(t, "three members in two rooms", func() bool { s := ref.Stats(); return s.Conns == 3 && s.Rooms == 2 })

	writeWS(t, a1, websocket.MessageText, []byte("to a"))
	for i, c := range []*websocket.Conn{a1, a2} {
		if _, b := readWS(t, c); string(b) != "to a" {
			t.Errorf("member %d of room a got %q, want \"to a\" (the sender included)", i+1, b)
		}
	}
	writeWS(t, b1, websocket.MessageText, []byte("to b"))
	if _, b := readWS(t, b1); string(b) != "to b" {
		t.Errorf("room b's member got %q first, want \"to b\": frames leak between rooms", b)
	}

	a2.Close(websocket.StatusNormalClosure, "")
	b1.Close(websocket.StatusNormalClosure, "")
	waitFor(t, "empty rooms to go", func() bool { s := ref.Stats(); return s.Conns == 1 && s.Rooms == 1 })
}

func TestReferenceEvictsSlowClients(t *testing.T) {
	for _, direct := range []bool{false, true} {
		// SlowTimeout leaves the healthy members, slowed down by -race on a
		// busy machine, plenty of time per write.
		ref := &loadtest.Reference{QueueSize: 2, SlowTimeout: 500 * time.Millisecond, DirectWrite: direct}
		ws, _ := startReference(t, ref)
		pub, healthy := dialWS(t, ws+"/fanout/r/"), dialWS(t, ws+"/fanout/r/")
		dialWS(t, ws+"/fanout/r/") // never reads
		waitFor(t, "three members", func() bool { return ref.Stats().Conns == 3 })

		// Publish 64 KiB frames until the slow member, its kernel buffers
		// full, has been evicted (a few MB on Linux's defaults), then an
		// end marker. The healthy member must get every one of them.
		frame := bytes.Repeat([]byte("x"), 64<<10)
		got, sent := 0, 0
		healthyDone := make(chan struct{})
		go func() {
			defer close(healthyDone)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			for {
				_, b, err := healthy.Read(ctx)
				if err != nil {
					t.Errorf("direct=%v: healthy member: %v", direct, err)
					return
				}
				if string(b) == "end" {
					return
				}
				got++
			}
		}()
		pubDone := make(chan struct{})
		go func() { // the publisher hears itself too
			defer close(pubDone)
			for {
				if _, _, err := pub.Read(context.Background()); err != nil {
					return
				}
			}
		}()
		for ref.Stats().Evicted == 0 {
			if sent == 4000 { // 256 MB
				t.Fatalf("direct=%v: the member that never reads was not evicted", direct)
			}
			writeWS(t, pub, websocket.MessageText, frame)
			sent++
		}
		writeWS(t, pub, websocket.MessageText, []byte("end"))
		<-healthyDone
		waitFor(t, "the slow member's release", func() bool { return ref.Stats().Conns == 2 })
		pub.CloseNow()
		<-pubDone
		if got != sent {
			t.Errorf("direct=%v: the healthy member got %d of %d frames", direct, got, sent)
		}
		if ev := ref.Stats().Evicted; ev != 1 {
			t.Errorf("direct=%v: %d evictions, want exactly the slow member", direct, ev)
		}
	}
}

func TestReferenceShutdownClosesWebSockets(t *testing.T) {
	ref := &loadtest.Reference{}
	srvWS, _ := startServer(t, ref)
	echo, fan := dialWS(t, srvWS+"/echo/"), dialWS(t, srvWS+"/fanout/x/")
	waitFor(t, "two connections", func() bool { return ref.Stats().Conns == 2 })

	var wg sync.WaitGroup
	codes := make([]websocket.StatusCode, 2)
	for i, c := range []*websocket.Conn{echo, fan} {
		wg.Go(func() {
			_, _, err := c.Read(context.Background())
			codes[i] = websocket.CloseStatus(err)
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ref.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	wg.Wait()
	for i, code := range codes {
		if code != websocket.StatusGoingAway {
			t.Errorf("connection %d closed with %v, want 1001 (going away)", i, code)
		}
	}
	if s := ref.Stats(); s.Conns != 0 || s.Rooms != 0 {
		t.Errorf("after Shutdown: %+v, want nothing open", s)
	}

	late := dialWS(t, srvWS+"/echo/")
	if _, _, err := late.Read(context.Background()); websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Errorf("a connection after Shutdown read %v, want a 1001 close", err)
	}
	if !strings.Contains(srvWS, "ws://") {
		t.Fatal(srvWS)
	}
}

// TestReferenceKeepsBytesSentWithTheHandshake sends the upgrade request and
// a first frame in one write: the frame is then already in net/http's
// buffer when the connection is hijacked, and must not be lost with it.
func TestReferenceKeepsBytesSentWithTheHandshake(t *testing.T) {
	ws, _ := startReference(t, &loadtest.Reference{})
	host := strings.TrimPrefix(ws, "ws://")
	conn, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	mask := [4]byte{1, 2, 3, 4}
	frame := []byte{0x81, 0x80 | 2, mask[0], mask[1], mask[2], mask[3], 'h' ^ mask[0], 'i' ^ mask[1]}
	req := "GET /echo/ HTTP/1.1\r\nHost: " + host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := conn.Write(append([]byte(req), frame...)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %v, %v", resp, err)
	}
	echo := make([]byte, 4)
	if _, err := io.ReadFull(br, echo); err != nil {
		t.Fatalf("reading the echo: %v", err)
	}
	if want := []byte{0x81, 2, 'h', 'i'}; !bytes.Equal(echo, want) {
		t.Errorf("echo % x, want % x", echo, want)
	}
}
