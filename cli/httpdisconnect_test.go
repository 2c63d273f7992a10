package cli_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/cli"
	"github.com/gochannels/channels/internal/testenv"
)

// runserver sends http.disconnect after a completed response only for the
// paths where the application's router routes it: the worker receives one
// for /poll/ and none for /plain/.
func TestRunserverHTTPDisconnectOnlyWhereRouted(t *testing.T) {
	t.Setenv(cli.LayerEnv, "")
	polled := make(chan string, 10)
	r := channels.NewRouter()
	r.RouteFunc("http.disconnect", func(ctx context.Context, m *channels.Message) error {
		polled <- m.Content.String("path")
		return nil
	}, channels.Path(`^/poll/`))
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	maddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	base := runserver(t, &cli.App{Router: r, HTTP: mux}, "127.0.0.1:0", "--nodelay", "--metrics", maddr)
	for _, p := range []string{"/plain/", "/poll/", "/plain/", "/poll/"} {
		if code, body := get(t, base+p); code != 200 || body != "ok" {
			t.Fatalf("GET %s = %d %q", p, code, body)
		}
	}
	for range 2 {
		select {
		case p := <-polled:
			if p != "/poll/" {
				t.Fatalf("http.disconnect consumer got %q", p)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no http.disconnect for /poll/")
		}
	}
	waitMetric(t, maddr, `channels_worker_messages_total{channel="http.request"}`, 4)
	waitMetric(t, maddr, `channels_worker_messages_total{channel="http.disconnect"}`, 2)
}
