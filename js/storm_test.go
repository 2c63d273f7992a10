package js_test

import (
	"bufio"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"testing"
	"time"
)

// stormEnv turns TestReconnectStorm on; it takes about half a minute.
const stormEnv = "CHANNELS_JS_STORM"

// TestReconnectStorm measures a reconnect storm: node runs js/storm.mjs,
// CHANNELS_JS_STORM_CLIENTS clients (default 1,000) with the library's
// backoff, against a runserver process that is killed (SIGKILL) and
// started again on the same port after CHANNELS_JS_STORM_DOWN (default
// 3s); then the same with a fixed retry delay of 1.5 s and no jitter. It
// logs both reports and the ratio of their peaks; it measures, it does not
// judge:
//
//	CHANNELS_JS_STORM=1 go test -run TestReconnectStorm -v ./js/
func TestReconnectStorm(t *testing.T) {
	if os.Getenv(stormEnv) == "" {
		t.Skip("set " + stormEnv + "=1 to measure a reconnect storm")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("no node")
	}
	clients := 1000
	if s := os.Getenv("CHANNELS_JS_STORM_CLIENTS"); s != "" {
		if clients, err = strconv.Atoi(s); err != nil {
			t.Fatal(err)
		}
	}
	down := 3 * time.Second
	if s := os.Getenv("CHANNELS_JS_STORM_DOWN"); s != "" {
		if down, err = time.ParseDuration(s); err != nil {
			t.Fatal(err)
		}
	}
	reports := map[string]map[string]any{}
	for _, mode := range []string{"fixed", "jitter"} {
		srv := startServer(t)
		cmd := exec.Command(node, "storm.mjs", "-url", "ws://"+srv.addr+"/echo/", "-clients", strconv.Itoa(clients), "-mode", mode)
		cmd.Stderr = os.Stderr
		stdin, _ := cmd.StdinPipe()
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := bufio.NewScanner(stdout)
		next := func() map[string]any {
			t.Helper()
			if !lines.Scan() {
				t.Fatalf("%s: storm.mjs ended early: %v", mode, lines.Err())
			}
			var m map[string]any
			if err := json.Unmarshal(lines.Bytes(), &m); err != nil {
				t.Fatalf("%s: storm.mjs said %q", mode, lines.Text())
			}
			if m["event"] == "error" {
				t.Fatalf("%s: %v", mode, m["error"])
			}
			return m
		}
		next() // ready
		srv.kill()
		_, _ = io.WriteString(stdin, "down\n")
		time.Sleep(down)
		from := len(srv.out.String())
		srv.start()
		_, _ = io.WriteString(stdin, "up\n")
		r := next()
		_ = cmd.Wait()
		srv.kill()
		// The server's side: the handshakes its access log shows after
		// the restart.
		hs := handshakeTimes(srv.out.String()[from:])
		r["serverHandshakes"] = len(hs)
		r["serverPeakHandshakesPerSec1s"] = peakRate(hs, time.Second)
		r["serverPeakHandshakesPerSec100ms"] = peakRate(hs, 100*time.Millisecond)
		b, _ := json.Marshal(r)
		t.Logf("%s: %s", mode, b)
		reports[mode] = r
	}
	num := func(mode, key string) float64 { f, _ := reports[mode][key].(float64); return f }
	for _, key := range []string{"serverPeakHandshakesPerSec1s", "serverPeakHandshakesPerSec100ms", "peakScheduledPerSec1s", "peakScheduledPerSec100ms", "peakAttemptsPerSec1s", "peakAttemptsPerSec100ms", "peakOpensPerSec1s", "peakOpensPerSec100ms"} {
		t.Logf("%-24s fixed %6.0f  jitter %6.0f  jitter/fixed %.2f", key, num("fixed", key), num("jitter", key), num("jitter", key)/num("fixed", key))
	}
	t.Logf("last client back after the restart: fixed %.0f ms, jitter %.0f ms (maximum delay %d ms + 2 s = %d ms)",
		num("fixed", "backAfterUpMs"), num("jitter", "backAfterUpMs"), 10000, 12000)
}

var handshakeLine = regexp.MustCompile(`time=(\S+) level=INFO msg="WebSocket HANDSHAKING `)

// handshakeTimes returns the times of the WebSocket handshakes in a
// runserver's access log.
func handshakeTimes(log string) []time.Time {
	var out []time.Time
	for _, m := range handshakeLine.FindAllStringSubmatch(log, -1) {
		if at, err := time.Parse(time.RFC3339Nano, m[1]); err == nil {
			out = append(out, at)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Before(out[j]) })
	return out
}

// peakRate returns the most times within any window w, per second.
func peakRate(times []time.Time, w time.Duration) float64 {
	best := 0
	for i, j := 0, 0; i < len(times); i++ {
		for times[i].Sub(times[j]) >= w {
			j++
		}
		best = max(best, i-j+1)
	}
	return float64(best) / w.Seconds()
}
