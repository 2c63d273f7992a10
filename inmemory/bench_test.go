package inmemory_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/inmemory"
)

var benchContent = channels.Content{
	"reply_channel": "websocket.send!abcdefghijkl",
	"path":          "/chat/lobby/",
	"order":         int64(12),
	"text":          `{"message": "hello, everybody in the lobby"}`,
}

// One send and one receive of a typical websocket.receive message.
func BenchmarkSendReceive(b *testing.B) {
	ctx := context.Background()
	l := inmemory.MustNew(inmemory.Config{})
	b.ReportAllocs()
	for b.Loop() {
		if err := l.Send(ctx, "websocket.receive", benchContent); err != nil {
			b.Fatal(err)
		}
		if _, _, err := l.Receive(ctx, "websocket.receive", "websocket.disconnect"); err != nil {
			b.Fatal(err)
		}
	}
}

// Senders and receivers on separate goroutines, as gateway and workers are.
func BenchmarkSendReceiveParallel(b *testing.B) {
	ctx := context.Background()
	l := inmemory.MustNew(inmemory.Config{Capacity: 10000})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			for {
				err := l.Send(ctx, "websocket.receive", benchContent)
				if err == nil {
					break
				}
			}
			if _, _, err := l.Receive(ctx, "websocket.receive"); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// A group send to 100 members, each of which receives it.
func BenchmarkGroupSend100(b *testing.B) {
	ctx := context.Background()
	l := inmemory.MustNew(inmemory.Config{})
	members := make([]string, 100)
	for i := range members {
		members[i] = fmt.Sprintf("websocket.send.gw!m%d", i)
		if err := l.GroupAdd(ctx, "room", members[i]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := l.GroupSend(ctx, "room", benchContent); err != nil {
			b.Fatal(err)
		}
		for range members {
			if _, _, err := l.ReceivePrefix(ctx, "websocket.send.gw!"); err != nil {
				b.Fatal(err)
			}
		}
	}
}
