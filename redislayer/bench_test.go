package redislayer_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/internal/testenv"
	"github.com/gochannels/channels/redislayer"
)

var benchContent = channels.Content{
	"reply_channel": "websocket.send.abcdefghijkl!mnopqrstuvwx",
	"path":          "/chat/lobby/",
	"order":         int64(12),
	"text":          `{"message": "hello, everybody in the lobby"}`,
}

func benchLayer(b *testing.B, cfg redislayer.Config) *redislayer.Layer {
	b.Helper()
	cfg.Hosts = []string{testenv.RedisURL(b)}
	return newLayer(b, cfg)
}

// One send and one receive of a typical websocket.receive message: two
// round trips to Redis, with the default flush delay and with none.
func BenchmarkSendReceive(b *testing.B) {
	for _, tc := range []struct {
		name  string
		delay time.Duration
	}{{"default", 0}, {"no-flush-delay", -1}} {
		b.Run(tc.name, func(b *testing.B) {
			ctx := context.Background()
			l := benchLayer(b, redislayer.Config{FlushDelay: tc.delay})
			b.ReportAllocs()
			for b.Loop() {
				if err := l.Send(ctx, "websocket.receive", benchContent); err != nil {
					b.Fatal(err)
				}
				if _, _, err := l.Receive(ctx, "websocket.receive", "websocket.disconnect"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// One send to a process-specific channel and its receipt through
// ReceivePrefix, the gateway's path: the send, then the receive loop's pop.
func BenchmarkSendReceivePrefix(b *testing.B) {
	ctx := context.Background()
	l := benchLayer(b, redislayer.Config{})
	ch, err := l.NewChannel(ctx, "websocket.send.bench!")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := l.Send(ctx, ch, benchContent); err != nil {
			b.Fatal(err)
		}
		if _, _, err := l.ReceivePrefix(ctx, "websocket.send.bench!"); err != nil {
			b.Fatal(err)
		}
	}
}

// Sends and receives from 16 goroutines per CPU: the client pipelines
// their round trips.
func BenchmarkSendReceiveParallel(b *testing.B) {
	ctx := context.Background()
	l := benchLayer(b, redislayer.Config{Capacity: 100000})
	b.ReportAllocs()
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := l.Send(ctx, "websocket.receive", benchContent); err != nil {
				b.Error(err)
				return
			}
			if _, _, err := l.Receive(ctx, "websocket.receive"); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// A group send to 100 members (the connections of four gateways), each of
// which receives it by prefix: one Lua call, four Redis messages.
func BenchmarkGroupSend100(b *testing.B) {
	ctx := context.Background()
	l := benchLayer(b, redislayer.Config{})
	prefixes := []string{"websocket.send.gw1!", "websocket.send.gw2!", "websocket.send.gw3!", "websocket.send.gw4!"}
	for i := range 100 {
		m := fmt.Sprintf("%sm%d", prefixes[i%4], i)
		if err := l.GroupAdd(ctx, "room", m); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := l.GroupSend(ctx, "room", benchContent); err != nil {
			b.Fatal(err)
		}
		for range 100 {
			if _, _, err := l.ReceivePrefix(ctx, prefixes...); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// A group send to 1,000 members, the connections of four gateways whose
// messages nobody receives (the keys are emptied every 100 sends, outside
// the timing). Besides the client's cost it reports redis-server's CPU per
// delivery (redis-µs/delivery, from INFO cpu): meaningful only on a Redis
// nobody else uses, e.g. REDIS_URL=redis://127.0.0.1:PORT/0 of a private
// redis-server.
func BenchmarkGroupSend1000(b *testing.B) {
	ctx := context.Background()
	url := testenv.RedisURL(b)
	prefix := testenv.Prefix("rlb")
	l := newLayer(b, redislayer.Config{Hosts: []string{url}, Prefix: prefix})
	raw := rawClient(b, url)
	var keys []string
	for g := range 4 {
		keys = append(keys, fmt.Sprintf("%swebsocket.send.gw%d!", prefix, g))
	}
	for i := range 1000 {
		m := fmt.Sprintf("websocket.send.gw%d!%012d", i%4, i)
		if err := l.GroupAdd(ctx, "room", m); err != nil {
			b.Fatal(err)
		}
	}
	cpu := func() float64 {
		info, err := raw.Do(ctx, raw.B().Info().Section("cpu").Build()).ToString()
		if err != nil {
			b.Fatal(err)
		}
		var t float64
		for _, line := range strings.Split(info, "\n") {
			k, v, _ := strings.Cut(strings.TrimSpace(line), ":")
			if k == "used_cpu_sys" || k == "used_cpu_user" {
				f, _ := strconv.ParseFloat(v, 64)
				t += f
			}
		}
		return t
	}
	b.ReportAllocs()
	start, n := cpu(), 0
	for b.Loop() {
		if err := l.GroupSend(ctx, "room", benchContent); err != nil {
			b.Fatal(err)
		}
		if n++; n%100 == 0 {
			b.StopTimer()
			if err := raw.Do(ctx, raw.B().Del().Key(keys...).Build()).Error(); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	}
	b.ReportMetric((cpu()-start)*1e6/float64(n*1000), "redis-µs/delivery")
}
