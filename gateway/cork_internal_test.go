package gateway

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// countingConn counts the writes that reach the socket.
type countingConn struct {
	net.Conn
	writes atomic.Int32
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

func TestCorkWriterBatchesWrites(t *testing.T) {
	server, client := net.Pipe()
	defer client.Close()
	cc := &countingConn{Conn: server}
	w := &corkWriter{conn: cc}
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(client)
		got <- b
	}()

	w.cork()
	for _, p := range []string{"one ", "two ", "three"} {
		if _, err := w.Write([]byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	if n := cc.writes.Load(); n != 0 {
		t.Fatalf("%d writes reached the socket while corked", n)
	}
	if err := w.uncork(); err != nil {
		t.Fatal(err)
	}
	if n := cc.writes.Load(); n != 1 {
		t.Fatalf("uncork made %d writes; want 1", n)
	}
	// Uncorked, writes go straight through.
	if _, err := w.Write([]byte(" four")); err != nil {
		t.Fatal(err)
	}
	if n := cc.writes.Load(); n != 2 {
		t.Fatalf("uncorked write: %d writes; want 2", n)
	}
	server.Close()
	if b := <-got; string(b) != "one two three four" {
		t.Fatalf("the client read %q", b)
	}
}

// A batch larger than corkLimit writes through, in order.
func TestCorkWriterLimit(t *testing.T) {
	server, client := net.Pipe()
	defer client.Close()
	w := &corkWriter{conn: server}
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(client)
		got <- b
	}()
	w.cork()
	var want bytes.Buffer
	chunk := bytes.Repeat([]byte("x"), 10<<10)
	for i := range 10 {
		chunk[0] = byte('a' + i)
		want.Write(chunk)
		if _, err := w.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.uncork(); err != nil {
		t.Fatal(err)
	}
	server.Close()
	if b := <-got; !bytes.Equal(b, want.Bytes()) {
		t.Fatalf("the client read %d bytes, out of order or incomplete", len(b))
	}
}

// A client that does not read makes a corked batch fail at the deadline.
func TestCorkWriterDeadline(t *testing.T) {
	server, client := net.Pipe()
	defer client.Close()
	defer server.Close()
	w := &corkWriter{conn: server, timeout: 50 * time.Millisecond}
	w.cork()
	_, _ = w.Write([]byte("never read"))
	err := w.uncork()
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("uncork to a client that does not read = %v; want a deadline error", err)
	}
}

// An uncorked write to a client that does not read fails at the deadline
// too.
func TestCorkWriterDeadlineUncorked(t *testing.T) {
	server, client := net.Pipe()
	defer client.Close()
	defer server.Close()
	w := &corkWriter{conn: server, timeout: 50 * time.Millisecond}
	start := time.Now()
	_, err := w.Write([]byte("never read"))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write to a client that does not read = %v; want a deadline error", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("the write took %v", el)
	}
}

// TestPlainSocketThroughNewListener: a connection accepted by NewListener
// (read and written with raw system calls underneath) is still a plain TCP
// socket to the WebSocket paths: writes and idle reads go to it directly.
func TestPlainSocketThroughNewListener(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("raw socket paths are for Unix")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fl := NewListener(ln)
	defer fl.Close()
	go func() {
		if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
			defer c.Close()
			io.Copy(io.Discard, c)
		}
	}()
	c, err := fl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if plainSocket(c) == nil {
		t.Errorf("plainSocket(%T from NewListener) = nil, want its raw connection", c)
	}
	if tcpConn(c) == nil {
		t.Errorf("tcpConn(%T from NewListener) = nil, want the TCP connection", c)
	}
}
