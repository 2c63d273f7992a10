package gateway_test

import (
	"context"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/gateway"
	"github.com/gochannels/channels/inmemory"
)

// A client that stops reading while the application streams to it at
// 128 KiB/s is closed (websocket.disconnect 1008, counted in SlowClients)
// before 1 MiB more has been sent to it, which is 8 s at that rate: the
// time runs from when it stops reading, since the socket's kernel buffer
// is kept small, instead of from when megabytes of buffers have filled
// (about 2.75 MiB, over 20 s, before). The test's SlowClientTimeout is 1 s;
// the time taken is logged, not asserted.
func TestSlowReaderClosedSoon(t *testing.T) {
	l := newLayer(t, inmemory.Config{})
	srv := appless(t, l, func(g *gateway.Server) { g.SlowClientTimeout = time.Second })
	raw := dialRaw(t, srv.URL)
	_ = raw.c.SetDeadline(time.Time{})
	raw.write(upgradeRequest("/"))
	connect := layerMessage(t, l, "websocket.connect")
	replyTo := connect.String("reply_channel")
	send(t, l, replyTo, channels.Content{"accept": true})
	if resp := raw.response(nil); resp.StatusCode != 101 {
		t.Fatalf("handshake: %d", resp.StatusCode)
	}

	var reading atomic.Bool
	reading.Store(true)
	var read atomic.Int64
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		var h [4]byte
		for reading.Load() {
			if _, err := io.ReadFull(raw.br, h[:2]); err != nil {
				return
			}
			n := int64(h[1] & 0x7f)
			if n == 126 {
				if _, err := io.ReadFull(raw.br, h[2:4]); err != nil {
					return
				}
				n = int64(h[2])<<8 | int64(h[3])
			}
			m, err := io.CopyN(io.Discard, raw.br, n)
			read.Add(m)
			if err != nil {
				return
			}
		}
	}()
	defer func() {
		raw.c.Close()
		<-readerDone
	}()

	const frame = 4 << 10
	const rate = 128 << 10 // bytes per second
	text := strings.Repeat("x", frame)
	tick := time.NewTicker(time.Second * frame / rate)
	defer tick.Stop()
	var sent, sentAtStop int64
	var stopped time.Time
	start := time.Now()
	for {
		<-tick.C
		if stopped.IsZero() && time.Since(start) > time.Second {
			reading.Store(false) // the reader takes at most one more frame
			stopped, sentAtStop = time.Now(), sent
		}
		if err := l.Send(context.Background(), replyTo, channels.Content{"text": text}); err != nil {
			t.Fatalf("send: %v", err)
		}
		sent += frame
		if ch, d, _ := channels.Poll(context.Background(), l, "websocket.disconnect"); d != nil {
			if stopped.IsZero() {
				t.Fatalf("closed while the client was reading: %s %v", ch, d)
			}
			if code, _ := d.Int("code"); code != 1008 {
				t.Fatalf("disconnect code %d, want 1008", code)
			}
			if got := srv.Gateway.Stats().SlowClients; got != 1 {
				t.Fatalf("SlowClients = %d, want 1", got)
			}
			t.Logf("read %d KiB while reading; closed %v after the client stopped, %d KiB sent since",
				read.Load()>>10, time.Since(stopped).Round(10*time.Millisecond), (sent-sentAtStop)>>10)
			return
		}
		if !stopped.IsZero() && sent-sentAtStop > 1<<20 {
			t.Fatalf("still open %v after the client stopped reading, with %d KiB sent since (SlowClients %d)",
				time.Since(stopped).Round(10*time.Millisecond), (sent-sentAtStop)>>10, srv.Gateway.Stats().SlowClients)
		}
	}
}

// A frame that takes longer to deliver than SlowClientTimeout is not cut
// while the client keeps taking bytes: the limit is on time without
// progress, not on the time a frame takes.
func TestLargeFrameToASteadyReader(t *testing.T) {
	l := newLayer(t, inmemory.Config{MaxMessageSize: 4 << 20})
	srv := appless(t, l, func(g *gateway.Server) { g.SlowClientTimeout = time.Second })
	raw := dialRaw(t, srv.URL)
	_ = raw.c.SetDeadline(time.Now().Add(30 * time.Second))
	raw.write(upgradeRequest("/"))
	connect := layerMessage(t, l, "websocket.connect")
	send(t, l, connect.String("reply_channel"), channels.Content{"accept": true})
	if resp := raw.response(nil); resp.StatusCode != 101 {
		t.Fatalf("handshake: %d", resp.StatusCode)
	}
	const size = 768 << 10 // 3 s at the client's 256 KiB/s
	send(t, l, connect.String("reply_channel"), channels.Content{"bytes": make([]byte, size)})
	var h [10]byte
	if _, err := io.ReadFull(raw.br, h[:]); err != nil || h[1] != 127 {
		t.Fatalf("frame head %x: %v", h, err)
	}
	start := time.Now()
	got := 0
	for got < size {
		n, err := io.CopyN(io.Discard, raw.br, int64(min(16<<10, size-got)))
		got += int(n)
		if err != nil {
			t.Fatalf("after %d of %d bytes: %v (SlowClients %d)", got, size, err, srv.Gateway.Stats().SlowClients)
		}
		time.Sleep(time.Second * 16 / 256) // 256 KiB/s
	}
	t.Logf("768 KiB frame read in %v", time.Since(start).Round(10*time.Millisecond))
	if got := srv.Gateway.Stats().SlowClients; got != 0 {
		t.Fatalf("SlowClients = %d", got)
	}
}
