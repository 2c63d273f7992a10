package cli_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gochannels/channels/internal/testenv"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/channelstest"
	"github.com/gochannels/channels/cli"
	"github.com/gochannels/channels/delay"
)

// runserver starts `runserver args...` for app and returns its base URL.
func runserver(t *testing.T, app *cli.App, args ...string) string {
	t.Helper()
	pr, pw := io.Pipe()
	app.Stdout = pw
	var stderr syncBuffer
	app.Stderr = &stderr
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- app.Run(ctx, append([]string{"runserver"}, args...))
		pw.Close()
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("runserver: %v\n%s", err, stderr.String())
		}
	})
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		re := regexp.MustCompile(`Starting Channels development server at (http://\S+)/`)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
		close(addr)
	}()
	select {
	case u, ok := <-addr:
		if !ok {
			t.Fatalf("runserver exited before it started:\n%s", stderr.String())
		}
		return u
	case <-time.After(10 * time.Second):
		t.Fatalf("runserver did not start:\n%s", stderr.String())
	}
	return ""
}

type syncBuffer = testenv.Output

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestRunserverServesHTTPAndWebSockets(t *testing.T) {
	r := channels.NewRouter()
	r.RouteFunc("websocket.receive", func(ctx context.Context, m *channels.Message) error {
		return m.Reply(ctx, channels.Content{"text": "echo: " + m.Content.String("text")})
	})
	app := &cli.App{Router: r, HTTP: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s", r.URL.Path)
	})}
	base := runserver(t, app, "127.0.0.1:0", "--nodelay")
	if code, body := get(t, base+"/page/"); code != 200 || body != "hello from /page/" {
		t.Fatalf("GET /page/ = %d %q", code, body)
	}
	ws := channelstest.DialWS(t, "ws"+strings.TrimPrefix(base, "http")+"/anything/")
	ws.SendText("hi")
	if got := ws.ReceiveText(); got != "echo: hi" {
		t.Fatalf("echo = %q", got)
	}
	// runserver's own log format. The line is written once the response is
	// finished, which may be just after the client has read it.
	var log string
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if log = app.Stderr.(*syncBuffer).String(); strings.Contains(log, "HTTP GET /page/") {
			break
		}
	}
	if !regexp.MustCompile(`msg="HTTP GET /page/ 200 \[\d+\.\d\d, 127\.0\.0\.1:\d+\]`).MatchString(log) {
		t.Errorf("no runserver HTTP log line in:\n%s", log)
	}
	if !strings.Contains(log, "WebSocket CONNECT /anything/ [127.0.0.1:") {
		t.Errorf("no WebSocket CONNECT log line in:\n%s", log)
	}
}

// Checklist B.26: runserver uses FORCE_SCRIPT_NAME as root_path.
func TestB26ForceScriptName(t *testing.T) {
	t.Setenv("FORCE_SCRIPT_NAME", "/forum")
	r := channels.NewRouter()
	r.RouteFunc("http.request", func(ctx context.Context, m *channels.Message) error {
		return m.Reply(ctx, channels.Content{"status": 200, "content": []byte("root_path=" + m.Content.String("root_path"))})
	})
	base := runserver(t, &cli.App{Router: r}, "127.0.0.1:0", "--nodelay")
	if _, body := get(t, base+"/forum/x"); body != "root_path=/forum" {
		t.Fatalf("body %q; want root_path=/forum", body)
	}
}

// Checklist B.29: --nothreading runs exactly one consumer at a time; the
// default runs several.
func TestB29Nothreading(t *testing.T) {
	for _, tc := range []struct {
		args []string
		max  func(int64) bool
		want string
	}{
		{[]string{"--nothreading"}, func(n int64) bool { return n == 1 }, "exactly 1"},
		{nil, func(n int64) bool { return n > 1 }, "more than 1"},
	} {
		var running, peak atomic.Int64
		r := channels.NewRouter()
		r.RouteFunc("http.request", func(ctx context.Context, m *channels.Message) error {
			n := running.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			time.Sleep(150 * time.Millisecond)
			running.Add(-1)
			return m.Reply(ctx, channels.Content{"status": 200})
		})
		base := runserver(t, &cli.App{Router: r}, append([]string{"127.0.0.1:0", "--nodelay"}, tc.args...)...)
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() { get(t, base+"/") })
		}
		wg.Wait()
		if !tc.max(peak.Load()) {
			t.Errorf("runserver %v ran %d consumers at once; want %s", tc.args, peak.Load(), tc.want)
		}
	}
}

// Checklist B.30: the HTTP timeout option (both spellings); no worker ⇒ 503.
func TestB30HTTPTimeout(t *testing.T) {
	for _, flag := range []string{"--http-timeout", "--http_timeout"} {
		base := runserver(t, &cli.App{Router: channels.NewRouter()}, "127.0.0.1:0", "--nodelay", "--noworker", flag, "0.5")
		start := time.Now()
		code, body := get(t, base+"/")
		if code != 503 || !strings.Contains(body, "Worker server failed to respond within time limit") {
			t.Fatalf("%s: %d %q; want 503", flag, code, body)
		}
		t.Logf("%s 0.5: 503 after %v", flag, time.Since(start).Round(time.Millisecond))
	}
}

// runserver runs a delay server in process (checklist A5 through the
// command): a consumer asks for a reply 300 ms later.
func TestRunserverDelayServer(t *testing.T) {
	r := channels.NewRouter()
	r.RouteFunc("websocket.receive", func(ctx context.Context, m *channels.Message) error {
		return delay.Send(ctx, nil, m.ReplyChannel, channels.Content{"text": "later"}, 300*time.Millisecond)
	})
	db := filepath.Join(t.TempDir(), "delay.db")
	base := runserver(t, &cli.App{Router: r}, "127.0.0.1:0", "--delay-database", db)
	ws := channelstest.DialWS(t, "ws"+strings.TrimPrefix(base, "http")+"/")
	start := time.Now()
	ws.SendText("now")
	if got := ws.ReceiveText(); got != "later" {
		t.Fatalf("got %q", got)
	}
	if el := time.Since(start); el < 300*time.Millisecond {
		t.Fatalf("delayed reply after %v; want at least 300ms", el)
	}
}

func TestMultiProcessCommandsRefuseInMemory(t *testing.T) {
	t.Setenv(cli.LayerEnv, "")
	for _, args := range [][]string{{"runworker"}, {"rundelay"}, {"gateway", "-p", "0"}} {
		app := &cli.App{Router: channels.NewRouter(), Stdout: io.Discard, Stderr: io.Discard}
		err := app.Run(context.Background(), args)
		if !errors.Is(err, cli.ErrInMemoryLayer) {
			t.Errorf("%v on the in-memory layer = %v; want ErrInMemoryLayer", args, err)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{"bogus"}, {"runserver", "not-a-port"}, {"runserver", "1.2.3.4:99999"}, {"runserver", "--workers", "0"}, {"runworker", "--threads", "0"}} {
		app := &cli.App{Router: channels.NewRouter(), Stdout: io.Discard, Stderr: io.Discard}
		if err := app.Run(context.Background(), args); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}

func TestOpenLayer(t *testing.T) {
	ctx := context.Background()
	for _, u := range []string{"", "memory://", "memory://?capacity=5&expiry=2.5&group_expiry=60"} {
		l, err := cli.OpenLayer(ctx, u)
		if err != nil || !cli.IsInMemory(l) {
			t.Errorf("OpenLayer(%q) = %v, %v", u, l, err)
		}
	}
	l, _ := cli.OpenLayer(ctx, "memory://?capacity=2")
	for i := range 3 {
		err := l.Send(ctx, "x", channels.Content{})
		if i == 2 && !errors.Is(err, channels.ErrChannelFull) {
			t.Errorf("capacity=2: third send = %v", err)
		}
	}
	for _, u := range []string{"memory://?capacity=0", "memory://?expiry=x", "bogus://x"} {
		if _, err := cli.OpenLayer(ctx, u); err == nil {
			t.Errorf("OpenLayer(%q) succeeded", u)
		}
	}
}

// runserver serves a static files directory under --static-url, in the
// workers, falling through to the application's views for other paths.
func TestRunserverStaticFiles(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "app.css"), []byte("body{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	app := &cli.App{Router: channels.NewRouter(), HTTP: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "view")
	})}
	base := runserver(t, app, "127.0.0.1:0", "--nodelay", "--static", dir, "--static-url", "/assets/")
	if code, body := get(t, base+"/assets/app.css"); code != 200 || body != "body{}" {
		t.Fatalf("GET /assets/app.css = %d %q", code, body)
	}
	if code, _ := get(t, base+"/assets/missing.css"); code != 404 {
		t.Fatalf("GET /assets/missing.css = %d; want 404", code)
	}
	if code, body := get(t, base+"/other"); code != 200 || body != "view" {
		t.Fatalf("GET /other = %d %q; want the view", code, body)
	}
}

// runserver refuses a WebSocket handshake without Origin, as the gateway
// does, unless --allow-missing-origin lets non-browser clients in.
func TestRunserverAllowMissingOrigin(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want int
	}{
		{nil, http.StatusForbidden},
		{[]string{"--allow-missing-origin"}, http.StatusSwitchingProtocols},
	} {
		base := runserver(t, &cli.App{Router: channels.NewRouter()}, append([]string{"127.0.0.1:0", "--nodelay"}, tc.args...)...)
		ws := channelstest.NewWSClient(t, "ws"+strings.TrimPrefix(base, "http")+"/")
		ws.Header["Origin"] = nil
		status, _ := ws.TryDial()
		if status != tc.want {
			t.Errorf("runserver %v: handshake without Origin = %d, want %d", tc.args, status, tc.want)
		}
	}
}
