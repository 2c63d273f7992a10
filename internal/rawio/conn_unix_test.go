//go:build unix

package rawio

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"testing"
	"time"

	"github.com/gochannels/channels/internal/testenv"
)

// pair returns a wrapped client connection and the plain server side.
func pair(t *testing.T) (wrapped, peer net.Conn) {
	t.Helper()
	s, c := testenv.TCPPair(t)
	w := Wrap(c)
	if _, ok := w.(*conn); !ok {
		t.Fatalf("Wrap(%T) = %T, want the raw connection", c, w)
	}
	return w, s
}

// TestLargeTransfers moves more than the sockets' buffers hold each way,
// so that writes meet a full buffer (EAGAIN) and wait in the poller, and
// reads wait for data, with a Read and a Write running at once.
func TestLargeTransfers(t *testing.T) {
	w, peer := pair(t)
	out := make([]byte, 8<<20)
	in := make([]byte, 8<<20)
	for i := range out {
		out[i] = byte(rand.IntN(256))
		in[i] = byte(rand.IntN(256))
	}
	errc := make(chan error, 3)
	var gotByPeer, gotByWrapped []byte
	go func() { // the peer reads slowly at first
		buf := make([]byte, 0, len(out))
		b := make([]byte, 4096)
		for len(buf) < len(out) {
			if len(buf) < 1<<20 {
				time.Sleep(100 * time.Microsecond)
			}
			n, err := peer.Read(b)
			buf = append(buf, b[:n]...)
			if err != nil {
				errc <- err
				return
			}
		}
		gotByPeer = buf
		errc <- nil
	}()
	go func() {
		_, err := peer.Write(in)
		errc <- err
	}()
	go func() {
		var err error
		gotByWrapped, err = io.ReadAll(io.LimitReader(w, int64(len(in))))
		errc <- err
	}()
	n, err := w.Write(out)
	if err != nil || n != len(out) {
		t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(out))
	}
	for range 3 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(gotByPeer, out) {
		t.Error("the peer received other bytes than the wrapped connection wrote")
	}
	if !bytes.Equal(gotByWrapped, in) {
		t.Error("the wrapped connection read other bytes than the peer wrote")
	}
}

func TestReadDeadline(t *testing.T) {
	w, _ := pair(t)
	w.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	start := time.Now()
	n, err := w.Read(make([]byte, 10))
	if n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past the deadline = %d, %v; want 0, a deadline error", n, err)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("the deadline error %v is not a net.Error with Timeout()", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Read returned after %v", d)
	}
}

func TestWriteDeadline(t *testing.T) {
	w, _ := pair(t) // the peer never reads
	w.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	n, err := w.Write(make([]byte, 64<<20))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Write to a peer that does not read = %d, %v; want a deadline error", n, err)
	}
	if n <= 0 || n >= 64<<20 {
		t.Errorf("Write reported %d bytes written, want the part the buffers took", n)
	}
}

func TestEOFAndErrors(t *testing.T) {
	w, peer := pair(t)
	if _, err := peer.Write([]byte("last")); err != nil {
		t.Fatal(err)
	}
	peer.Close()
	got, err := io.ReadAll(w)
	if err != nil || string(got) != "last" {
		t.Fatalf("ReadAll after the peer closed = %q, %v; want \"last\", nil", got, err)
	}
	if n, err := w.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("Read at the end = %d, %v; want 0, io.EOF", n, err)
	}
	// The peer is gone: writes fail sooner or later (reset, broken pipe).
	var werr error
	for i := 0; i < 100 && werr == nil; i++ {
		_, werr = w.Write(make([]byte, 1<<16))
		time.Sleep(time.Millisecond)
	}
	var oe *net.OpError
	if !errors.As(werr, &oe) || oe.Op != "write" {
		t.Errorf("writing to a closed peer: %v, want a *net.OpError from write", werr)
	}
	w.Close()
	if _, err := w.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read after Close: %v, want net.ErrClosed", err)
	}
	if _, err := w.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write after Close: %v, want net.ErrClosed", err)
	}
}

func TestWrapOtherConns(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if got := Wrap(a); got != a {
		t.Errorf("Wrap(net.Pipe()) = %T, want the connection itself", got)
	}
}

func TestNoAllocations(t *testing.T) {
	w, peer := pair(t)
	b := []byte("0123456789")
	buf := make([]byte, 10)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := w.Write(b); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(peer, buf); err != nil {
			t.Fatal(err)
		}
		if _, err := peer.Write(b); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(w, buf); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 0 {
		t.Errorf("a write and a read through the wrapped connection allocate %v times, want 0", allocs)
	}
}

// TestConcurrentWrites has several goroutines write whole records at once:
// each Write is all or nothing, never interleaved with another.
func TestConcurrentWrites(t *testing.T) {
	w, peer := pair(t)
	const writers, records, size = 4, 200, 3000
	done := make(chan error, writers)
	for g := range writers {
		go func() {
			rec := bytes.Repeat([]byte{byte('a' + g)}, size)
			for range records {
				if _, err := w.Write(rec); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	buf := make([]byte, size)
	for i := range writers * records {
		if _, err := io.ReadFull(peer, buf); err != nil {
			t.Fatal(err)
		}
		if n := bytes.Count(buf, buf[:1]); n != size {
			t.Fatalf("record %d mixes writers: %d of %d bytes are %q", i, n, size, buf[0])
		}
	}
	for range writers {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
