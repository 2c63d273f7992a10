package gateway

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/gochannels/channels/internal/rawio"
)

// newFramingForTest wraps the server end of a TCP pair as NewListener
// does, with bgReadDelay set to delay for the test, and reads head (sent
// by the client) through it, as net/http would.
func newFramingForTest(t *testing.T, delay time.Duration, head string) (*framingConn, net.Conn) {
	t.Helper()
	old := bgReadDelay
	bgReadDelay = delay
	t.Cleanup(func() { bgReadDelay = old })
	server, client := tcpPair(t)
	fc := &framingConn{Conn: rawio.Wrap(server)}
	if _, err := io.WriteString(client, head); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	for got := 0; got < len(head); {
		n, err := fc.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got += n
	}
	return fc, client
}

type readResult struct {
	n   int
	b   byte
	err error
}

// oneByteRead starts net/http's background read: one byte, in a goroutine.
func oneByteRead(fc *framingConn) <-chan readResult {
	done := make(chan readResult, 1)
	go func() {
		var b [1]byte
		n, err := fc.Read(b[:])
		done <- readResult{n, b[0], err}
	}()
	return done
}

func waitRead(t *testing.T, done <-chan readResult) readResult {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("the one-byte read did not end")
		return readResult{}
	}
}

// Between requests, a one-byte read is held without touching the socket,
// and a deadline in the past ends it with a timeout, as net/http ends its
// background read: a pipelined byte stays in the socket for the next
// request's read.
func TestBackgroundReadHeldAndEnded(t *testing.T) {
	fc, client := newFramingForTest(t, time.Hour, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, err := io.WriteString(client, "G"); err != nil { // the next request, pipelined
		t.Fatal(err)
	}
	done := oneByteRead(fc)
	select {
	case r := <-done:
		t.Fatalf("the background read was not held: %d byte(s) %q, %v", r.n, r.b, r.err)
	case <-time.After(50 * time.Millisecond):
	}
	if err := fc.SetReadDeadline(time.Unix(1, 0)); err != nil {
		t.Fatal(err)
	}
	r := waitRead(t, done)
	var ne net.Error
	if r.n != 0 || !errors.As(r.err, &ne) || !ne.Timeout() || !errors.Is(r.err, os.ErrDeadlineExceeded) {
		t.Fatalf("ended background read: %d, %v; want a timeout", r.n, r.err)
	}
	if err := fc.SetReadDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, err := fc.Read(buf)
	if err != nil || string(buf[:n]) != "G" {
		t.Fatalf("next read: %q, %v; want the pipelined byte", buf[:n], err)
	}
}

// When the handler is quick, net/http ends its background read before the
// read starts: the read must then fail at once, not be held.
func TestBackgroundReadEndedBeforeItStarts(t *testing.T) {
	fc, client := newFramingForTest(t, time.Hour, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, err := io.WriteString(client, "G"); err != nil {
		t.Fatal(err)
	}
	if err := fc.SetReadDeadline(time.Time{}); err != nil { // net/http's startBackgroundRead
		t.Fatal(err)
	}
	if err := fc.SetReadDeadline(time.Unix(1, 0)); err != nil { // its abortPendingRead
		t.Fatal(err)
	}
	start := time.Now()
	r := waitRead(t, oneByteRead(fc))
	if !errors.Is(r.err, os.ErrDeadlineExceeded) {
		t.Fatalf("background read ended before it started: %d, %v; want a timeout", r.n, r.err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("it took %v", d)
	}
	if err := fc.SetReadDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	if n, err := fc.Read(buf); err != nil || string(buf[:n]) != "G" {
		t.Fatalf("next read: %q, %v; want the pipelined byte", buf[:n], err)
	}
}

// A held read becomes a real one after bgReadDelay: a client that goes
// away during a long request is noticed.
func TestBackgroundReadNoticesClientGone(t *testing.T) {
	fc, client := newFramingForTest(t, 20*time.Millisecond, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
	done := oneByteRead(fc)
	time.Sleep(40 * time.Millisecond) // held, then reading the socket
	client.Close()
	if r := waitRead(t, done); r.n != 0 || !errors.Is(r.err, io.EOF) {
		t.Fatalf("background read after the client left: %d, %v; want EOF", r.n, r.err)
	}
}

// Closing the connection ends a held read at once.
func TestBackgroundReadEndsOnClose(t *testing.T) {
	fc, _ := newFramingForTest(t, time.Hour, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	done := oneByteRead(fc)
	time.Sleep(10 * time.Millisecond)
	fc.Close()
	if r := waitRead(t, done); r.err == nil {
		t.Fatal("the read of a closed connection succeeded")
	}
}

// A one-byte read in the middle of a head (net/http's read limit can make
// one) is an ordinary read.
func TestOneByteReadInHeadNotHeld(t *testing.T) {
	fc, client := newFramingForTest(t, time.Hour, "GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /next HT")
	if _, err := io.WriteString(client, "TP/1.1\r\n"); err != nil {
		t.Fatal(err)
	}
	if r := waitRead(t, oneByteRead(fc)); r.n != 1 || r.b != 'T' || r.err != nil {
		t.Fatalf("one-byte read mid-head: %d %q %v", r.n, r.b, r.err)
	}
}
