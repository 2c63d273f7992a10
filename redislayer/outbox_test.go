package redislayer_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/internal/testenv"
	"github.com/gochannels/channels/redislayer"
)

// A consumer's sends wait in its outbox until it returns; over Redis they
// wait encoded (package encoded), not as copies. What goes out is the
// content as it was when the consumer sent it, whatever the consumer does
// with its map afterwards; a send to a full channel is retried at the
// flush until the channel has room, and arrives once; content the layer
// refuses is reported at the send, as before.
func TestOutboxHoldsEncoded(t *testing.T) {
	ctx := context.Background()
	l := newLayer(t, redislayer.Config{
		Hosts:           []string{testenv.RedisURL(t)},
		ChannelCapacity: []channels.CapacityRule{{Pattern: "tight", Capacity: 1}},
	})
	reply, err := l.NewChannel(ctx, "outbox.reply!")
	if err != nil {
		t.Fatal(err)
	}
	// The tight channel is full before the consumer runs.
	if err := l.Send(ctx, "tight", channels.Content{"n": int64(0)}); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	r := &channels.Runner{
		Logger:        slog.New(slog.NewTextHandler(&logs, nil)),
		FlushTimeout:  5 * time.Second,
		FlushInterval: 20 * time.Millisecond,
	}
	var invalid error
	consumer := channels.ConsumerFunc(func(ctx context.Context, m *channels.Message) error {
		c := channels.Content{"status": int64(200), "headers": []any{[]any{[]byte("x-a"), []byte("1")}}, "content": []byte("hello")}
		if err := m.Reply(ctx, c); err != nil {
			return err
		}
		tight := channels.Content{"n": int64(1)}
		if err := (channels.Channel{Name: "tight"}).Send(ctx, tight); err != nil {
			return err
		}
		invalid = m.Reply(ctx, channels.Content{"bad": make(chan int)})
		// The outbox holds what was sent, not these maps.
		c["status"] = int64(500)
		c["content"].([]byte)[0] = 'J'
		c["headers"].([]any)[0].([]any)[1].([]byte)[0] = '9'
		c["extra"] = "x"
		tight["n"] = int64(2)
		return nil
	})
	// Room in the tight channel comes 200 ms into the flush.
	drained := make(chan channels.Content, 1)
	go func() {
		time.Sleep(200 * time.Millisecond)
		_, c, err := l.Receive(ctx, "tight")
		if err != nil {
			t.Error(err)
		}
		drained <- c
	}()
	start := time.Now()
	_ = r.Run(ctx, consumer, channels.NewMessage(l, "outbox.request", channels.Content{"reply_channel": reply}))
	if took := time.Since(start); took < 150*time.Millisecond {
		t.Errorf("the consumer's run ended after %v; want it to wait at the flush for room in the full channel", took)
	}
	if invalid == nil || !strings.Contains(invalid.Error(), "chan int") {
		t.Errorf("reply with a channel value: %v; want the content refused at the send", invalid)
	}
	if c := <-drained; num(c, "n") != 0 {
		t.Errorf("the tight channel's first message: %v; want n=0", c)
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, got, err := l.Receive(rctx, reply)
	if err != nil {
		t.Fatalf("receiving the reply: %v", err)
	}
	hs, _ := got["headers"].([]any)
	if num(got, "status") != 200 || string(got.Bytes("content")) != "hello" || got.Has("extra") ||
		len(hs) != 1 || string(hs[0].([]any)[1].([]byte)) != "1" {
		t.Errorf("reply %v; want the content as it was sent: status 200, content hello, header x-a: 1", got)
	}
	_, got, err = l.Receive(rctx, "tight")
	if err != nil {
		t.Fatalf("receiving the retried send: %v", err)
	}
	if num(got, "n") != 1 {
		t.Errorf("retried send %v; want n=1", got)
	}
	short, cancel2 := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel2()
	if ch, c, err := l.Receive(short, "tight", reply); err == nil && c != nil {
		t.Errorf("a second message on %s: %v; want each send delivered once", ch, c)
	}
	if s, err := l.Stats(ctx); err != nil || s.Full == 0 {
		t.Errorf("Stats().Full = 0; want the full channel counted at the flush")
	}
	if strings.Contains(logs.String(), "dropped") {
		t.Errorf("the runner dropped a message: %s", logs.String())
	}
}

func num(c channels.Content, key string) int64 {
	n, _ := c.Int(key)
	return n
}
