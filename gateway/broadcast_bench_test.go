package gateway_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/channelstest"
)

// One group message to 1,000 WebSockets of one gateway on the in-memory
// layer, over real sockets: the layer's group send, the gateway's receive
// loop and every connection's write, until each client has read the frame.
// The clients are raw sockets that read frames without allocating, so the
// allocations reported are the server's (and the layer's).
func BenchmarkBroadcast1000(b *testing.B) {
	const members = 1000
	r := channels.NewRouter()
	r.RouteFunc("websocket.connect", func(ctx context.Context, m *channels.Message) error {
		if err := m.Group("bench").Add(ctx, m.ReplyChannel); err != nil {
			return err
		}
		return m.Reply(ctx, channels.Content{"accept": true})
	})
	srv := channelstest.NewServer(b, r)
	gl := srv.Layer.(channels.GroupLayer)
	addr := strings.TrimPrefix(srv.URL, "http://")
	got := make(chan struct{}, members)
	var wg sync.WaitGroup
	conns := make([]net.Conn, 0, members)
	for range members {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, c)
		if _, err := io.WriteString(c, upgradeRequest("/")); err != nil {
			b.Fatal(err)
		}
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 101 {
			b.Fatalf("handshake: %v %v", resp, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			readFrames(br, got)
		}()
	}
	b.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
		wg.Wait()
	})
	ctx := context.Background()
	for {
		m, err := gl.GroupChannels(ctx, "bench")
		if err != nil {
			b.Fatal(err)
		}
		if len(m) == members {
			break
		}
	}
	msg := channels.Content{"text": `{"type":"tick","payload":"` + strings.Repeat("x", 64) + `"}`}
	b.ReportAllocs()
	cpu0 := processCPU()
	b.ResetTimer()
	for range b.N {
		if err := gl.GroupSend(ctx, "bench", msg); err != nil {
			b.Fatal(err)
		}
		for range members {
			<-got
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*members), "ns/delivery")
	// CPU time of the whole process (server and the clients' readers)
	// per delivery: steadier than wall time on a shared machine.
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N*members), "cpu-ns/delivery")
}

// readFrames reads server frames (unmasked, payload under 64 KiB) until the
// connection ends, signalling got for each data frame.
func readFrames(br *bufio.Reader, got chan<- struct{}) {
	var hdr [8]byte
	for {
		if _, err := io.ReadFull(br, hdr[:2]); err != nil {
			return
		}
		n := int(hdr[1] & 0x7f)
		switch n {
		case 126:
			if _, err := io.ReadFull(br, hdr[:2]); err != nil {
				return
			}
			n = int(binary.BigEndian.Uint16(hdr[:2]))
		case 127:
			return
		}
		if _, err := br.Discard(n); err != nil {
			return
		}
		if op := hdr[0] & 0x0f; op == 1 || op == 2 {
			got <- struct{}{}
		}
	}
}
