package session_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/inmemory"
	"github.com/gochannels/channels/session"
)

// BenchmarkStores measures one session save and one load per operation on
// each store (the services ones need REDIS_URL and DATABASE_URL).
func BenchmarkStores(b *testing.B) {
	for name, open := range stores() {
		b.Run(name, func(b *testing.B) {
			st := open(b)
			ctx := context.Background()
			data := make([]byte, 200)
			exp := time.Now().Add(time.Hour)
			i := 0
			for b.Loop() {
				key := fmt.Sprint("bench-", i%1000)
				if err := st.CommitCtx(ctx, key, data, exp); err != nil {
					b.Fatal(err)
				}
				if _, _, err := st.FindCtx(ctx, key); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkChannelSession measures a message through ChannelSession that
// reads and writes the session (memory store), with the runner's flush.
func BenchmarkChannelSession(b *testing.B) {
	l := inmemory.MustNew(inmemory.Config{})
	defer l.Close()
	mgr := &session.Manager{Store: session.NewMemoryStore()}
	c := mgr.ChannelSession()(channels.ConsumerFunc(func(ctx context.Context, m *channels.Message) error {
		s := session.FromContext(ctx)
		n, _ := s.GetInt("n")
		s.Put("n", n+1)
		return nil
	}))
	var r channels.Runner
	ctx := context.Background()
	m := channels.NewMessage(l, "websocket.receive", channels.Content{"reply_channel": "websocket.send.bench!x", "text": "hi"})
	for b.Loop() {
		if err := r.Run(ctx, c, m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEnforceOrdering measures strictly ordered messages: in order,
// and in pairs that arrive swapped (the second of each pair is parked, then
// run by the first).
func BenchmarkEnforceOrdering(b *testing.B) {
	for _, swapped := range []bool{false, true} {
		name := "in-order"
		if swapped {
			name = "swapped-pairs"
		}
		b.Run(name, func(b *testing.B) {
			l := inmemory.MustNew(inmemory.Config{})
			defer l.Close()
			mgr := &session.Manager{Store: session.NewMemoryStore()}
			ordering, _ := mgr.EnforceOrdering(session.StrictOrdering)
			c := ordering(channels.Ignore)
			var r channels.Runner
			ctx := context.Background()
			reply := "websocket.send.bench!x"
			var order int64
			for b.Loop() {
				first, second := order, order+1
				if swapped {
					first, second = second, first
				}
				for _, o := range []int64{first, second} {
					m := channels.NewMessage(l, "websocket.receive", channels.Content{"reply_channel": reply, "order": o, "text": "x"})
					if err := r.Run(ctx, c, m); err != nil {
						b.Fatal(err)
					}
				}
				order += 2
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(order), "ns/message")
		})
	}
}
