package gateway

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"

	"github.com/gochannels/channels"
)

// Frames written past the library have the header RFC 6455 gives their
// length (7-bit, 16-bit and 64-bit forms), alone or corked, and nothing is
// written after the library's close frame.
func TestCorkWriterDataFramesAndClose(t *testing.T) {
	server, client := net.Pipe()
	defer client.Close()
	w := &corkWriter{conn: server}
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(client)
		got <- b
	}()
	var want []byte
	for _, n := range []int{5, 125, 126, 300, 70000} {
		p := bytes.Repeat([]byte{'x'}, n)
		if err := w.writeData(false, p); err != nil {
			t.Fatal(err)
		}
		want = appendFrame(want, false, p)
	}
	hdr := func(b ...byte) []byte { return b }
	for _, h := range [][]byte{hdr(0x81, 5), hdr(0x81, 125), hdr(0x81, 126, 0, 126), hdr(0x81, 126, 1, 44), hdr(0x81, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70)} {
		if !bytes.Contains(want, h) {
			t.Fatalf("frames lack header % x", h)
		}
	}
	w.cork()
	if err := w.writeData(true, []byte("ab")); err != nil {
		t.Fatal(err)
	}
	frame := prepare(channels.Content{"text": "hello"}).frame
	if err := w.writeFrame(frame); err != nil {
		t.Fatal(err)
	}
	want = append(append(want, 0x82, 2, 'a', 'b'), frame...)
	closeFrame := []byte{0x88, 2, 0x03, 0xe8}
	if _, err := w.Write(closeFrame); err != nil { // the library's close
		t.Fatal(err)
	}
	want = append(want, closeFrame...)
	if err := w.writeFrame(frame); !errors.Is(err, errCloseSent) {
		t.Fatalf("frame after close: %v", err)
	}
	if err := w.writeData(false, []byte("late")); !errors.Is(err, errCloseSent) {
		t.Fatalf("data after close: %v", err)
	}
	if err := w.uncork(); err != nil {
		t.Fatal(err)
	}
	server.Close()
	if b := <-got; !bytes.Equal(b, want) {
		t.Fatalf("wrote %d bytes, want %d:\n% x\nwant\n% x", len(b), len(want), b[len(b)-40:], want[len(want)-40:])
	}
	if !bytes.Equal(frame, []byte("\x81\x05hello")) {
		t.Fatalf("prepared frame % x", frame)
	}
}

// A group message that is not a plain frame (a close, an invalid reply) is
// not prepared as a frame: each member applies it as any reply.
func TestPrepareOnlyPlainFrames(t *testing.T) {
	for _, m := range []channels.Content{
		{"text": "bye", "close": true},
		{"text": "x", "bytes": []byte("y")},
		{"close": 4000},
		{"text": ""},
	} {
		if p := prepare(m); p.frame != nil {
			t.Errorf("%v prepared as frame % x", m, p.frame)
		}
	}
	if p := prepare(channels.Content{"bytes": []byte{1, 2}}); !bytes.Equal(p.frame, []byte{0x82, 2, 1, 2}) {
		t.Errorf("binary frame % x", p.frame)
	}
}
