package httpconsumer_test

import (
	"context"
	"fmt"
	"net/http"
	"testing/fstest"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/httpconsumer"
	"github.com/gochannels/channels/inmemory"
)

// An http.ServeMux served by a worker: the interface server's request goes
// over the layer, the handler runs in the consumer, and the response comes
// back on the reply channel.
func Example() {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /hello/{name}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "Hello, %s! (port %s)\n", r.PathValue("name"), httpconsumer.ServerPort(r))
	})
	router := channels.NewRouter()
	router.Route("http.request", httpconsumer.New(mux))

	ctx := context.Background()
	layer := inmemory.MustNew(inmemory.Config{})
	defer layer.Close()

	// The interface server's side: GET /app/hello/gopher on a site mounted
	// at /app.
	reply, _ := layer.NewChannel(ctx, "http.response.example!")
	_ = layer.Send(ctx, "http.request", channels.Content{
		"reply_channel": reply,
		"http_version":  "1.1",
		"method":        "GET",
		"path":          "/app/hello/gopher",
		"root_path":     "/app",
		"query_string":  []byte(""),
		"headers":       []any{[]any{[]byte("host"), []byte("example.com")}},
		"server":        []any{"10.0.0.2", 80},
	})

	// The worker's side.
	ch, content, _ := layer.Receive(ctx, "http.request")
	var runner channels.Runner
	_ = runner.Run(ctx, router, channels.NewMessage(layer, ch, content))

	// What the interface server receives.
	_, resp, _ := layer.Receive(ctx, reply)
	fmt.Println("status", resp["status"])
	for _, h := range resp["headers"].([]any) {
		fmt.Printf("%s: %s\n", h.([]any)...)
	}
	fmt.Printf("%q more_content=%v\n", resp["content"], resp["more_content"])
	// Output:
	// status 200
	// Content-Length: 25
	// Content-Type: text/plain; charset=utf-8
	// "Hello, gopher! (port 80)\n" more_content=false
}

// A streaming handler: every Flush sends what was written at once, while the
// handler is still running.
func Example_streaming() {
	events := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 3 {
			fmt.Fprintf(w, "data: %d\n\n", i)
			w.(http.Flusher).Flush()
		}
	})

	ctx := context.Background()
	layer := inmemory.MustNew(inmemory.Config{})
	defer layer.Close()
	reply, _ := layer.NewChannel(ctx, "http.response.example!")
	m := channels.NewMessage(layer, "http.request", channels.Content{
		"reply_channel": reply, "method": "GET", "path": "/events/",
	})
	_ = httpconsumer.New(events).Consume(ctx, m)

	for {
		_, msg, _ := layer.Receive(ctx, reply)
		fmt.Printf("status=%v content=%q more_content=%v\n", msg["status"], msg.Bytes("content"), msg["more_content"])
		if !msg.Bool("more_content") {
			break
		}
	}
	// Output:
	// status=200 content="data: 0\n\n" more_content=true
	// status=<nil> content="data: 1\n\n" more_content=true
	// status=<nil> content="data: 2\n\n" more_content=true
	// status=<nil> content="" more_content=false
}

// Static files are an http.FileServer inside the adapter, routed by path.
func Example_staticFiles() {
	files := http.FileServerFS(fstest.MapFS{"style.css": {Data: []byte("body { color: teal }\n")}})
	router := channels.NewRouter()
	router.Route("http.request", httpconsumer.New(http.StripPrefix("/static/", files)), channels.Path(`^/static/`))

	ctx := context.Background()
	layer := inmemory.MustNew(inmemory.Config{})
	defer layer.Close()
	reply, _ := layer.NewChannel(ctx, "http.response.example!")
	m := channels.NewMessage(layer, "http.request", channels.Content{
		"reply_channel": reply, "method": "GET", "path": "/static/style.css",
	})
	var runner channels.Runner
	_ = runner.Run(ctx, router, m)

	_, resp, _ := layer.Receive(ctx, reply)
	fmt.Println(resp["status"])
	fmt.Printf("%s", resp["content"])
	// Output:
	// 200
	// body { color: teal }
}
