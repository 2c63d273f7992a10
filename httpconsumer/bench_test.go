package httpconsumer_test

import (
	"context"
	"io"
	"net/http"
	"testing"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/httpconsumer"
	"github.com/gochannels/channels/inmemory"
)

// BenchmarkGet measures one small GET through the consumer: decode the
// message, run the handler, send the response to the in-memory layer and
// receive it there.
func BenchmarkGet(b *testing.B) {
	c := httpconsumer.New(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "Hello, world!\n")
	}))
	l := inmemory.MustNew(inmemory.Config{})
	defer l.Close()
	ctx := context.Background()
	reply, err := l.NewChannel(ctx, "http.response.bench!")
	if err != nil {
		b.Fatal(err)
	}
	content := with(get("/hello/"), "reply_channel", reply, "query_string", []byte("a=1"), "headers", []any{
		[]any{[]byte("host"), []byte("example.com")},
		[]any{[]byte("user-agent"), []byte("Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0")},
		[]any{[]byte("accept"), []byte("text/html,application/xhtml+xml")},
		[]any{[]byte("cookie"), []byte("sessionid=0123456789abcdef")},
	})
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Consume(ctx, channels.NewMessage(l, "http.request", content)); err != nil {
			b.Fatal(err)
		}
		if _, resp, err := l.Receive(ctx, reply); err != nil || resp["status"] != int64(200) {
			b.Fatal(resp, err)
		}
	}
}
