package cli_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/cli"
	"github.com/gochannels/channels/internal/testenv"
	"github.com/gochannels/channels/js"
)

// checkJS fails unless base serves the JavaScript client at its stable
// path and at its content-named, immutable path, whatever the application
// routes.
func checkJS(t *testing.T, base string) {
	t.Helper()
	for path, cache := range map[string]string{
		js.Prefix + js.Classic: "no-cache",
		js.Path(js.Classic):    "public, max-age=31536000, immutable",
		js.Path(js.Module):     "public, max-age=31536000, immutable",
	} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != cache || len(body) == 0 {
			t.Errorf("GET %s: %d, Cache-Control %q, %d bytes; want 200, %q and the file", path, resp.StatusCode, resp.Header.Get("Cache-Control"), len(body), cache)
		}
	}
}

// serve runs one subcommand in the background until the test ends and
// waits until it serves the client.
func serve(t *testing.T, base string, run func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
	})
	testenv.WaitHTTP(t, base+js.Prefix+js.Classic, 10*time.Second, nil)
}

func TestRunserverServesTheJavaScriptClient(t *testing.T) {
	port := strconv.Itoa(testenv.FreePort(t))
	app := &cli.App{Router: channels.NewRouter(), Stdout: io.Discard, Stderr: io.Discard}
	base := "http://127.0.0.1:" + port
	serve(t, base, func(ctx context.Context) error {
		return app.Run(ctx, []string{"runserver", "127.0.0.1:" + port, "--nodelay"})
	})
	checkJS(t, base)
}

func TestGatewayServesTheJavaScriptClient(t *testing.T) {
	redisURL := testenv.RedisURL(t)
	port := testenv.FreePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	serve(t, base, func(ctx context.Context) error {
		return cli.RunGateway(ctx, []string{"-b", "127.0.0.1", "-p", strconv.Itoa(port), "--layer", redisURL}, io.Discard, io.Discard)
	})
	checkJS(t, base)
}
