package httpconsumer_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/httpconsumer"
	"github.com/gochannels/channels/inmemory"
	"github.com/gochannels/channels/worker"
)

// Checklist B.32 end to end: under a running worker, with the default
// routes, a streaming handler's parts reach the reply channel as they are
// produced, and a request and its upload chunks work as an interface server
// sends them.
func TestInWorker(t *testing.T) {
	l := inmemory.MustNew(inmemory.Config{})
	t.Cleanup(func() { l.Close() })
	next := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ticks/", func(w http.ResponseWriter, r *http.Request) {
		for i := range 3 {
			fmt.Fprintf(w, "tick %d\n", i)
			w.(http.Flusher).Flush()
			select {
			case <-next:
			case <-r.Context().Done():
				return
			}
		}
	})
	mux.HandleFunc("POST /echo/", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(w, r.Body)
	})
	app := channels.NewRouter()
	app.Route("http.request", &httpconsumer.Consumer{Handler: mux, Logger: testLogger(t)})
	w := &worker.Worker{Layer: l, Consumer: channels.WithDefaults(app, nil), Logger: testLogger(t)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})

	receive := func(ch string) channels.Content {
		t.Helper()
		rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
		defer rcancel()
		_, c, err := l.Receive(rctx, ch)
		if err != nil {
			t.Fatalf("receive on %s: %v", ch, err)
		}
		return c
	}

	reply, _ := l.NewChannel(ctx, "http.response.w1!")
	if err := l.Send(ctx, "http.request", with(get("/ticks/"), "reply_channel", reply)); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		m := receive(reply) // tick i arrives while the handler waits for the test
		if got, want := string(m.Bytes("content")), fmt.Sprintf("tick %d\n", i); got != want || !m.Bool("more_content") {
			t.Fatalf("message %d: %v", i, m)
		}
		next <- struct{}{}
	}
	if m := receive(reply); m.Bool("more_content") || m.Has("content") {
		t.Errorf("final message %v", m)
	}

	reply2, _ := l.NewChannel(ctx, "http.response.w1!")
	body, _ := l.NewChannel(ctx, "http.request.body?")
	for _, part := range []string{"up", "lo", "ad"} {
		if err := l.Send(ctx, body, channels.Content{"content": []byte(part), "more_content": part != "ad"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Send(ctx, "http.request", with(get("/echo/"), "method", "POST", "reply_channel", reply2, "body", []byte(">"), "body_channel", body)); err != nil {
		t.Fatal(err)
	}
	if m := receive(reply2); m["status"] != int64(200) || string(m.Bytes("content")) != ">upload" {
		t.Errorf("echo response %v", m)
	}
}
