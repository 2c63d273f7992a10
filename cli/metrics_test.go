package cli_test

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/channelstest"
	"github.com/gochannels/channels/cli"
	"github.com/gochannels/channels/delay"
	"github.com/gochannels/channels/internal/testenv"
)

// scrape reads the Prometheus text of addr's /metrics as a map from
// `name{labels}` (labels as exposed, sorted by name) to value.
func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("scrape: status %d", resp.StatusCode)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("scrape: bad line %q", line)
		}
		out[line[:i]] = v
	}
	return out
}

// waitMetric waits until the metric named reaches want on addr, and fails
// the test with the metric's last value otherwise.
func waitMetric(t *testing.T, addr, name string, want float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, ok := scrape(t, addr)[name]
		if ok && got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v (present %v); want %v", name, got, ok, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// status returns the status and body of GET url.
func status(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// runRole runs `args...` of app until the test ends, with its logs in a
// buffer that is printed if the role fails.
func runRole(t *testing.T, app *cli.App, args ...string) *syncBuffer {
	t.Helper()
	var out syncBuffer
	app.Stdout, app.Stderr = &out, &out
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx, args) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%v: %v\n%s", args, err, out.String())
		}
	})
	return &out
}

// waitReady waits for the metrics server on addr to answer /readyz with
// want (200 or 503).
func waitReady(t *testing.T, addr string, want int, logs *syncBuffer) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("/readyz = %d %s; want %d\n%s", resp.StatusCode, b, want, logs)
			}
		} else if time.Now().After(deadline) {
			t.Fatalf("/readyz: %v\n%s", err, logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// metricsApp is an application with an echo socket on /echo/, a socket on
// /flood/ that answers any frame with 600 binary frames of 64 KiB, and an
// HTTP view on /ok/.
func metricsApp() *cli.App {
	r := channels.NewRouter()
	accept := func(ctx context.Context, m *channels.Message) error {
		return m.Reply(ctx, channels.Content{"accept": true})
	}
	r.RouteFunc("websocket.connect", accept, channels.Path(`^/(?:echo|flood)/$`))
	r.RouteFunc("websocket.receive", func(ctx context.Context, m *channels.Message) error {
		return m.Reply(ctx, channels.Content{"text": m.Content.String("text")})
	}, channels.Path(`^/echo/$`))
	big := bytes.Repeat([]byte("x"), 64<<10)
	r.RouteFunc("websocket.receive", func(ctx context.Context, m *channels.Message) error {
		for range 600 {
			if err := m.Reply(ctx, channels.Content{"bytes": big}); err != nil {
				return err
			}
		}
		return nil
	}, channels.Path(`^/flood/$`))
	mux := http.NewServeMux()
	mux.HandleFunc("/ok/", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	return &cli.App{Router: r, HTTP: mux}
}

// dialNonReader opens a WebSocket on path of addr that never reads, sends
// one text frame on it, and returns the connection.
func dialNonReader(t *testing.T, addr, path string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.(*net.TCPConn).SetReadBuffer(4096)
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nOrigin: http://%s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", path, addr, addr)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 {
		t.Fatalf("handshake status %d", resp.StatusCode)
	}
	// A masked text frame "go" (mask 0 leaves the payload as it is).
	if _, err := c.Write([]byte{0x81, 0x82, 0, 0, 0, 0, 'g', 'o'}); err != nil {
		t.Fatal(err)
	}
	return c
}

// A running runserver counts its traffic, a rejected origin and a slow
// client on /metrics, and answers /healthz and /readyz.
func TestRunserverMetrics(t *testing.T) {
	t.Setenv(cli.LayerEnv, "")
	maddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	base := runserver(t, metricsApp(), "127.0.0.1:0", "--nodelay", "--metrics", maddr)
	host := strings.TrimPrefix(base, "http://")
	waitReady(t, maddr, 200, nil)

	if code, body := status(t, "http://"+maddr+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz = %d %q", code, body)
	}
	if code, body := status(t, "http://"+maddr+"/readyz"); code != 200 || body != "ready\n" {
		t.Errorf("/readyz = %d %q", code, body)
	}

	for range 3 {
		if code, body := get(t, base+"/ok/"); code != 200 || body != "ok" {
			t.Fatalf("GET /ok/ = %d %q", code, body)
		}
	}
	ws := channelstest.DialWS(t, "ws://"+host+"/echo/")
	for i := range 5 {
		ws.SendText(fmt.Sprint(i))
		if f := ws.Receive(); string(f.Data) != fmt.Sprint(i) {
			t.Fatalf("echo %d = %v", i, f)
		}
	}
	waitMetric(t, maddr, "channels_gateway_http_requests_total", 3)
	waitMetric(t, maddr, `channels_worker_messages_total{channel="http.request"}`, 3)
	waitMetric(t, maddr, `channels_worker_messages_total{channel="websocket.receive"}`, 5)
	waitMetric(t, maddr, `channels_worker_consumer_duration_seconds_count{channel="websocket.receive"}`, 5)
	waitMetric(t, maddr, `channels_gateway_websocket_handshakes_total{outcome="accepted"}`, 1)
	waitMetric(t, maddr, "channels_gateway_websockets_open", 1)
	waitMetric(t, maddr, `channels_gateway_websocket_frames_total{direction="in"}`, 5)
	waitMetric(t, maddr, `channels_gateway_websocket_frames_total{direction="out"}`, 5)
	waitMetric(t, maddr, `channels_layer_dropped_total{reason="full"}`, 0)

	// A handshake from another site's page is refused and counted.
	evil := channelstest.NewWSClient(t, "ws://"+host+"/echo/")
	evil.Header = http.Header{"Origin": {"http://evil.example"}}
	if code, _ := evil.TryDial(); code != 403 {
		t.Fatalf("handshake from another origin: status %d; want 403", code)
	}
	waitMetric(t, maddr, `channels_gateway_dropped_total{reason="origin_rejected"}`, 1)
	waitMetric(t, maddr, `channels_gateway_websocket_handshakes_total{outcome="origin_rejected"}`, 1)

	// A client that does not read its flood is closed as slow, once.
	dialNonReader(t, host, "/flood/")
	waitMetric(t, maddr, `channels_gateway_dropped_total{reason="slow_client"}`, 1)
	waitMetric(t, maddr, `channels_gateway_websocket_handshakes_total{outcome="accepted"}`, 2)
	waitMetric(t, maddr, `channels_gateway_dropped_total{reason="request_queue_full"}`, 0)
}

// A runserver whose http.request channel is full answers 503 and counts the
// refusal in the gateway and in the layer; a request nobody answers counts
// as a timeout.
func TestRunserverMetricsFullChannel(t *testing.T) {
	t.Setenv(cli.LayerEnv, "")
	maddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	// No worker: the first request stays in http.request (capacity 1) and
	// times out; the second finds the channel full.
	base := runserver(t, metricsApp(), "127.0.0.1:0", "--nodelay", "--noworker", "--layer", "memory://?capacity=1",
		"--http-timeout", "0.3", "--metrics", maddr)
	if code, _ := get(t, base+"/first/"); code != 503 {
		t.Fatalf("first request: %d; want 503 after the timeout", code)
	}
	if code, _ := get(t, base+"/second/"); code != 503 {
		t.Fatalf("second request: %d; want 503 for the full channel", code)
	}
	waitMetric(t, maddr, `channels_gateway_dropped_total{reason="http_timeout"}`, 1)
	waitMetric(t, maddr, `channels_gateway_dropped_total{reason="request_queue_full"}`, 1)
	waitMetric(t, maddr, "channels_gateway_http_requests_total", 2)
	// Each request's http.disconnect goes to a channel of capacity 1 that
	// nobody reads: the first fits, the second is retried for 5 s, then
	// dropped and counted. The layer counts every refused send, retries
	// included.
	waitMetric(t, maddr, `channels_gateway_full_queue_depth{channel="http.disconnect"}`, 1)
	waitMetric(t, maddr, `channels_gateway_dropped_total{reason="disconnect_not_sent"}`, 1)
	waitMetric(t, maddr, `channels_gateway_full_queue_depth{channel="http.disconnect"}`, 0)
	waitMetric(t, maddr, "channels_layer_messages", 2)
	if n := scrape(t, maddr)[`channels_layer_dropped_total{reason="full"}`]; n < 2 {
		t.Errorf("layer full = %v; want at least 2 (http.request once, http.disconnect retried)", n)
	}
}

// The gateway and runworker roles over a private Redis: both count the
// traffic; the gateway counts a rejected origin, a slow client, a request
// that timed out and one refused because http.request (capacity 1, not
// consumed) was full; /readyz of both turns 503 while Redis is stopped and
// 200 again once it is back.
func TestGatewayAndWorkerMetricsOverRedis(t *testing.T) {
	rs := testenv.StartRedis(t)
	u, _ := url.Parse(rs.URL)
	u.RawQuery = "channel_capacity=http.request:1"
	layerURL := u.String()
	gport := testenv.FreePort(t)
	gm := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	wm := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	glog := runRole(t, metricsApp(), "gateway", "--layer", layerURL, "-p", fmt.Sprint(gport), "-t", "0.5", "--metrics", gm)
	wlog := runRole(t, metricsApp(), "runworker", "--layer", layerURL, "--threads", "2", "--exclude-channels", "http.request", "--metrics", wm)
	waitReady(t, gm, 200, glog)
	waitReady(t, wm, 200, wlog)

	host := fmt.Sprintf("127.0.0.1:%d", gport)
	ws := channelstest.DialWS(t, "ws://"+host+"/echo/")
	for i := range 4 {
		ws.SendText(fmt.Sprint(i))
		if f := ws.Receive(); string(f.Data) != fmt.Sprint(i) {
			t.Fatalf("echo %d = %v", i, f)
		}
	}
	evil := channelstest.NewWSClient(t, "ws://"+host+"/echo/")
	evil.Header = http.Header{"Origin": {"http://evil.example"}}
	if code, _ := evil.TryDial(); code != 403 {
		t.Fatalf("handshake from another origin: status %d; want 403", code)
	}
	waitMetric(t, gm, `channels_gateway_websocket_handshakes_total{outcome="accepted"}`, 1)
	waitMetric(t, gm, `channels_gateway_dropped_total{reason="origin_rejected"}`, 1)
	waitMetric(t, gm, "channels_gateway_websockets_open", 1)
	waitMetric(t, wm, `channels_worker_messages_total{channel="websocket.connect"}`, 1)
	waitMetric(t, wm, `channels_worker_messages_total{channel="websocket.receive"}`, 4)
	waitMetric(t, wm, "channels_worker_panics_total", 0)
	waitMetric(t, wm, "channels_layer_up", 1)
	if m := scrape(t, gm); m["channels_layer_sent_total"] < 5 || m["channels_layer_received_total"] < 4 {
		t.Errorf("gateway layer sent %v, received %v; want at least 5 and 4", m["channels_layer_sent_total"], m["channels_layer_received_total"])
	}

	// No worker takes http.request: the first request times out and stays
	// in the channel, the second finds it full.
	for i, path := range []string{"/first/", "/second/"} {
		if code, _ := status(t, "http://"+host+path); code != 503 {
			t.Fatalf("request %d: status %d; want 503", i+1, code)
		}
	}
	waitMetric(t, gm, `channels_gateway_dropped_total{reason="http_timeout"}`, 1)
	waitMetric(t, gm, `channels_gateway_dropped_total{reason="request_queue_full"}`, 1)
	waitMetric(t, gm, `channels_layer_dropped_total{reason="full"}`, 1)

	// A client that does not read its flood is closed as slow.
	dialNonReader(t, host, "/flood/")
	waitMetric(t, gm, `channels_gateway_dropped_total{reason="slow_client"}`, 1)
	waitMetric(t, wm, "channels_worker_consumer_errors_total", 0)

	rs.Stop()
	waitReady(t, gm, 503, glog)
	waitReady(t, wm, 503, wlog)
	if code, body := status(t, "http://"+gm+"/readyz"); code != 503 || !strings.HasPrefix(body, "layer: ") {
		t.Errorf("/readyz without Redis = %d %q; want 503 naming the layer", code, body)
	}
	if code, _ := status(t, "http://"+gm+"/healthz"); code != 200 {
		t.Errorf("/healthz without Redis = %d; want 200", code)
	}
	waitMetric(t, wm, "channels_layer_up", 0)

	rs.Restart(t)
	waitReady(t, gm, 200, glog)
	waitReady(t, wm, 200, wlog)
}

// runbinding counts the changes it relays on /metrics and is ready while
// its layer and database answer.
func TestRunbindingMetrics(t *testing.T) {
	rs := testenv.StartRedis(t)
	app, path := notesApp(t)
	maddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	logs := runRole(t, app, "runbinding", "--layer", rs.URL, "--database", path, "--sleep", "0.05", "--metrics", maddr)
	waitReady(t, maddr, 200, logs)
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var n int
		_ = db.QueryRow(`SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'notes'`).Scan(&n)
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("runbinding installed no triggers:\n%s", logs)
		}
	}
	if _, err := db.Exec(`INSERT INTO notes (id, text) VALUES (7, 'hello')`); err != nil {
		t.Fatal(err)
	}
	waitMetric(t, maddr, "channels_binding_changes_total", 1)
	waitMetric(t, maddr, "channels_binding_sent_total", 1)
	waitMetric(t, maddr, `channels_binding_dropped_total{reason="expired"}`, 0)
	waitMetric(t, maddr, "channels_binding_errors_total", 0)
}

// rundelay counts what it stores and sends, with the lateness histogram,
// and counts an invalid message by reason.
func TestRundelayMetrics(t *testing.T) {
	rs := testenv.StartRedis(t)
	maddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	dbPath := filepath.Join(t.TempDir(), "delay.db")
	logs := runRole(t, &cli.App{Router: channels.NewRouter()}, "rundelay", "--layer", rs.URL, "--database", dbPath, "--metrics", maddr)
	waitReady(t, maddr, 200, logs)
	ctx := t.Context()
	l, err := cli.OpenLayer(ctx, rs.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer l.(io.Closer).Close()
	if err := delay.Send(ctx, l, "later", channels.Content{"n": int64(1)}, 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := l.Send(ctx, "asgi.delay", channels.Content{"channel": "later", "content": channels.Content{}, "delay": int64(-5)}); err != nil {
		t.Fatal(err)
	}
	waitMetric(t, maddr, "channels_delay_stored_total", 1)
	waitMetric(t, maddr, "channels_delay_sent_total", 1)
	waitMetric(t, maddr, "channels_delay_lateness_seconds_count", 1)
	waitMetric(t, maddr, `channels_delay_lateness_seconds_bucket{le="+Inf"}`, 1)
	waitMetric(t, maddr, `channels_delay_lateness_seconds_bucket{le="10"}`, 1)
	waitMetric(t, maddr, `channels_delay_rejected_total{reason="negative_delay"}`, 1)
	waitMetric(t, maddr, "channels_delay_pending", 0)
	if _, m, err := l.Receive(ctx, "later"); err != nil || m["n"] != int64(1) {
		t.Fatalf("due message: %v, %v", m, err)
	}
}
