package metrics_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"strings"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/inmemory"
	"github.com/gochannels/channels/metrics"
)

// A program that embeds the roles registers their collectors on its own
// registry and serves them with the health checks.
func ExampleHandler() {
	layer, _ := inmemory.New(inmemory.Config{})
	defer layer.Close()
	_ = layer.Send(context.Background(), "work", channels.Content{"n": int64(1)})

	reg := metrics.NewRegistry()
	reg.MustRegister(metrics.Layer(layer))
	srv := httptest.NewServer(metrics.Handler(reg, metrics.LayerReady(layer)))
	defer srv.Close()

	for _, path := range []string{"/healthz", "/readyz"} {
		resp, _ := srv.Client().Get(srv.URL + path)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Print(path, " ", resp.StatusCode, " ", string(body))
	}
	resp, _ := srv.Client().Get(srv.URL + "/metrics")
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, line := range strings.Split(string(body), "\n") {
		if line == "channels_layer_messages 1" || line == "channels_layer_sent_total 1" || line == `channels_layer_dropped_total{reason="full"} 0` {
			fmt.Println(line)
		}
	}
	// Output:
	// /healthz 200 ok
	// /readyz 200 ready
	// channels_layer_dropped_total{reason="full"} 0
	// channels_layer_messages 1
	// channels_layer_sent_total 1
}

// Ready runs the checks as /readyz does and names the ones that fail.
func ExampleReady() {
	database := metrics.Check{Name: "database", Func: func(ctx context.Context) error {
		return errors.New("connection refused")
	}}
	layer, _ := inmemory.New(inmemory.Config{})
	defer layer.Close()
	fmt.Println(metrics.Ready(context.Background(), metrics.LayerReady(layer)))
	fmt.Println(metrics.Ready(context.Background(), metrics.LayerReady(layer), database))
	// Output:
	// <nil>
	// metrics: database: connection refused
}
