package gateway

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gochannels/channels/internal/testenv"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	server, client = testenv.TCPPair(t)
	// A read that waits for bytes that never come fails the test.
	_ = server.SetReadDeadline(time.Now().Add(10 * time.Second))
	return server, client
}

func newIdleForTest(t *testing.T, conn net.Conn, buffered string) (*idleConn, *bufio.Reader) {
	t.Helper()
	if runtime.GOOS == "windows" || !rawReads {
		t.Skip("no raw socket reads here")
	}
	pre := bufio.NewReader(strings.NewReader(buffered))
	if buffered != "" {
		if _, err := pre.Peek(len(buffered)); err != nil {
			t.Fatal(err)
		}
	}
	in, br := newIdleReader(conn, plainSocket(conn), pre)
	if in == nil {
		t.Fatal("no idle reader for a plain TCP socket")
	}
	return in, br
}

// Bytes arrive whole and in order through the library's buffer, in reads
// of every size (through a chunk, and straight into large buffers), after
// what net/http had already read; a drained socket holds no chunk; the end
// of the stream is io.EOF.
func TestIdleConnReads(t *testing.T) {
	server, client := tcpPair(t)
	in, br := newIdleForTest(t, server, "before")

	sizes := []int{1, 2, 14, 100, 127, 128, 129, 4095, 4096, 4097, 10000, 70000, 3}
	var want bytes.Buffer
	want.WriteString("before")
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range sizes {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		want.Write(b)
	}
	go func() {
		// In pieces with pauses, so that reads find the socket empty.
		rest := want.Bytes()[len("before"):]
		for len(rest) > 0 {
			n := min(len(rest), 1+r.IntN(9000))
			client.Write(rest[:n])
			rest = rest[n:]
			time.Sleep(time.Millisecond)
		}
	}()
	got := make([]byte, 0, want.Len())
	got = append(got, make([]byte, len("before"))...)
	if _, err := io.ReadFull(br, got); err != nil {
		t.Fatal(err)
	}
	for _, n := range sizes {
		b := make([]byte, n)
		if _, err := io.ReadFull(br, b); err != nil {
			t.Fatalf("reading %d bytes: %v", n, err)
		}
		got = append(got, b...)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatal("the bytes read differ from the bytes sent")
	}
	if in.chunk != nil || br.Buffered() != 0 {
		t.Fatalf("a drained socket holds a chunk (%v) or buffered bytes (%d)", in.chunk != nil, br.Buffered())
	}

	// await reads what arrives into a chunk, which goes back once read.
	client.Write([]byte("x"))
	in.await()
	if in.chunk == nil {
		t.Fatal("await returned without reading")
	}
	if c, err := br.ReadByte(); err != nil || c != 'x' {
		t.Fatalf("read %q, %v", c, err)
	}
	if in.chunk != nil {
		t.Fatal("the chunk was kept after it was read")
	}

	client.Close()
	in.await()
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("after the client closed: %v, want io.EOF", err)
	}
}

// Closing the socket ends a wait, and the read after it fails with
// net.ErrClosed.
func TestIdleConnCloseEndsWait(t *testing.T) {
	server, _ := tcpPair(t)
	in, br := newIdleForTest(t, server, "")
	done := make(chan struct{})
	go func() {
		in.await()
		close(done)
	}()
	time.Sleep(20 * time.Millisecond)
	server.Close()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("await still waits after the socket was closed")
	}
	if _, err := br.ReadByte(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after close: %v, want net.ErrClosed", err)
	}
}

// A busy socket's wait (awaitHot) ends with false once hotWait has passed
// since the last frame without a byte, and lifts its read deadline, so the
// read loop then waits as an idle socket's, as long as it takes. When
// bytes come in time, a read after the wait that outlasts the deadline
// (the rest of a frame, late) lifts it and goes on instead of failing.
func TestIdleConnHotWait(t *testing.T) {
	server, client := tcpPair(t)
	in, br := newIdleForTest(t, server, "")

	// Nothing comes: the wait ends about when the deadline passes.
	start := time.Now()
	if in.awaitHot(start.Add(100*time.Millisecond - hotWait)) {
		t.Fatal("awaitHot reported bytes on a silent socket")
	}
	if el := time.Since(start); el < 80*time.Millisecond || el > 5*time.Second {
		t.Fatalf("awaitHot waited %v; want about 100ms", el)
	}
	if !in.hot.IsZero() {
		t.Fatal("the read deadline was kept after the wait ended")
	}
	// The idle wait that follows has no deadline.
	go func() {
		time.Sleep(300 * time.Millisecond)
		client.Write([]byte("a"))
	}()
	in.await()
	if c, err := br.ReadByte(); err != nil || c != 'a' {
		t.Fatalf("after the idle wait: read %q, %v", c, err)
	}

	// A byte comes in time; the next comes after the deadline.
	client.Write([]byte("b"))
	if !in.awaitHot(time.Now().Add(100*time.Millisecond - hotWait)) {
		t.Fatal("awaitHot missed a byte that had come")
	}
	if c, err := br.ReadByte(); err != nil || c != 'b' {
		t.Fatalf("read %q, %v", c, err)
	}
	go func() {
		time.Sleep(300 * time.Millisecond)
		client.Write([]byte("c"))
	}()
	if c, err := br.ReadByte(); err != nil || c != 'c' {
		t.Fatalf("a read outlasting the busy wait's deadline: %q, %v; want 'c'", c, err)
	}
	if !in.hot.IsZero() {
		t.Fatal("the read deadline was kept after a read reached it")
	}
}
