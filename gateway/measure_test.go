package gateway_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/inmemory"
)

// measureReader reads frames from one socket and records, for each, the
// delay since the time the broadcaster wrote into its first 8 bytes.
type measureReader struct {
	br      *bufio.Reader
	reading atomic.Bool // false: stop reading (the slow client)
	mu      sync.Mutex
	lat     []time.Duration
	at      []time.Time
}

func (m *measureReader) run() {
	var h [10]byte
	payload := make([]byte, 64<<10)
	for {
		for !m.reading.Load() {
			time.Sleep(10 * time.Millisecond)
		}
		if _, err := io.ReadFull(m.br, h[:2]); err != nil {
			return
		}
		n := int(h[1] & 0x7f)
		if n == 126 {
			if _, err := io.ReadFull(m.br, h[2:4]); err != nil {
				return
			}
			n = int(h[2])<<8 | int(h[3])
		}
		if _, err := io.ReadFull(m.br, payload[:n]); err != nil {
			return
		}
		if h[0]&0x0f != 0x2 || n < 8 {
			continue
		}
		now := time.Now()
		sent := time.Unix(0, int64(binary.BigEndian.Uint64(payload)))
		m.mu.Lock()
		m.lat = append(m.lat, now.Sub(sent))
		m.at = append(m.at, now)
		m.mu.Unlock()
	}
}

// percentiles of the latencies the readers recorded between from and to.
func percentiles(rs []*measureReader, from, to time.Time) (p50, p99, max time.Duration, n int) {
	var all []time.Duration
	for _, r := range rs {
		r.mu.Lock()
		for i, at := range r.at {
			if !at.Before(from) && at.Before(to) {
				all = append(all, r.lat[i])
			}
		}
		r.mu.Unlock()
	}
	if len(all) == 0 {
		return 0, 0, 0, 0
	}
	slices.Sort(all)
	return all[len(all)/2], all[len(all)*99/100], all[len(all)-1], len(all)
}

// The other members of a group while one of them stops reading: their
// latency (group send to frame read) before, while the slow member is
// being noticed, and after it has been closed. 50 readers and one that
// stops, 4 KiB frames to the group at 128 KiB/s, default limits. A
// measurement, not a test: run with
//
//	GATEWAY_MEASURE=1 go test -run TestMeasureSlowReaderLatency -v ./gateway/
func TestMeasureSlowReaderLatency(t *testing.T) {
	if os.Getenv("GATEWAY_MEASURE") == "" {
		t.Skip("a measurement; set GATEWAY_MEASURE=1 to run it")
	}
	const members, frame, rate = 50, 4 << 10, 128 << 10
	l := newLayer(t, inmemory.Config{})
	srv := appless(t, l, nil)
	var readers []*measureReader
	var slow *measureReader
	var conns []net.Conn
	var wg sync.WaitGroup
	defer func() {
		for _, c := range conns {
			c.Close()
		}
		slow.reading.Store(true)
		wg.Wait()
	}()
	for i := range members + 1 {
		c, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		io.WriteString(c, upgradeRequest("/"))
		connect := layerMessage(t, l, "websocket.connect")
		if err := l.GroupAdd(context.Background(), "room", connect.String("reply_channel")); err != nil {
			t.Fatal(err)
		}
		send(t, l, connect.String("reply_channel"), channels.Content{"accept": true})
		raw := &rawConn{t: t, c: c, br: bufio.NewReaderSize(c, 64<<10)}
		if resp := raw.response(nil); resp.StatusCode != 101 {
			t.Fatalf("handshake %d", resp.StatusCode)
		}
		m := &measureReader{br: raw.br}
		m.reading.Store(true)
		wg.Go(m.run)
		if i == members {
			slow = m
		} else {
			readers = append(readers, m)
		}
	}

	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(time.Second * frame / rate)
		defer tick.Stop()
		b := make([]byte, frame)
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			binary.BigEndian.PutUint64(b, uint64(time.Now().UnixNano()))
			_ = l.GroupSend(context.Background(), "room", channels.Content{"bytes": b})
		}
	}()

	time.Sleep(time.Second) // warm up
	t0 := time.Now()
	time.Sleep(10 * time.Second)
	t1 := time.Now()
	slow.reading.Store(false)
	for srv.Gateway.Stats().SlowClients == 0 && time.Since(t1) < 60*time.Second {
		time.Sleep(10 * time.Millisecond)
	}
	t2 := time.Now()
	time.Sleep(5 * time.Second)
	t3 := time.Now()
	close(stop)
	<-done

	report := func(what string, from, to time.Time) {
		p50, p99, max, n := percentiles(readers, from, to)
		t.Logf("%-38s %6d frames  p50 %8v  p99 %8v  max %8v", what, n, p50.Round(time.Microsecond), p99.Round(time.Microsecond), max.Round(time.Microsecond))
	}
	t.Logf("%d members + 1 that stops reading; %d B frames to the group at %d KiB/s", members, frame, rate>>10)
	report("all reading (10 s)", t0, t1)
	report("one stopped, until it was closed", t1, t2)
	report("after it was closed (5 s)", t2, t3)
	t.Logf("the slow member was closed %v after it stopped reading (SlowClients %d)", t2.Sub(t1).Round(10*time.Millisecond), srv.Gateway.Stats().SlowClients)
}
