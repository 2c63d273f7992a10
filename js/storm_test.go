package js_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"testing"
	"time"
)

// stormEnv turns TestReconnectStorm on; it takes about a minute.
const stormEnv = "CHANNELS_JS_STORM"

// TestReconnectStorm measures a reconnect storm: CHANNELS_JS_STORM_CLIENTS
// clients (default 1,000), each a ReconnectingWebSocket with the library's
// backoff, in CHANNELS_JS_STORM_PROCS node processes running js/storm.mjs
// (default 4), against a runserver process (4 consumers at once) that is
// killed (SIGKILL) and started again on the same port after
// CHANNELS_JS_STORM_DOWN (default 3s); then the same with a fixed retry
// delay of 1.5 s and no jitter. It logs, for both, the peak handshakes per
// second at the server (its access log) and at the clients, the peak of
// the retries the backoff scheduled, and when the last client was back. It
// measures, it does not judge:
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
	envInt := func(name string, def int) int {
		if s := os.Getenv(name); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			return n
		}
		return def
	}
	clients, procs := envInt("CHANNELS_JS_STORM_CLIENTS", 1000), envInt("CHANNELS_JS_STORM_PROCS", 4)
	down := 3 * time.Second
	if s := os.Getenv("CHANNELS_JS_STORM_DOWN"); s != "" {
		if down, err = time.ParseDuration(s); err != nil {
			t.Fatal(err)
		}
	}
	type result struct {
		server, attempts, opens, scheduled []float64 // ms since the restart
		allBack                            bool
		stopped                            int
		downMs                             float64
	}
	results := map[string]*result{}
	for _, mode := range []string{"fixed", "jitter"} {
		srv := startServer(t, serverWorkersEnv+"=4")
		type proc struct {
			cmd   *exec.Cmd
			stdin io.Writer
			lines *bufio.Scanner
		}
		next := func(p proc) map[string]any {
			t.Helper()
			if !p.lines.Scan() {
				t.Fatalf("%s: storm.mjs ended early: %v", mode, p.lines.Err())
			}
			var m map[string]any
			if err := json.Unmarshal(p.lines.Bytes(), &m); err != nil {
				t.Fatalf("%s: storm.mjs said %q", mode, p.lines.Text())
			}
			if m["event"] == "error" {
				t.Fatalf("%s: %v", mode, m["error"])
			}
			return m
		}
		var ps []proc
		for i := range procs {
			n := clients / procs
			if i < clients%procs {
				n++
			}
			cmd := exec.Command(node, "storm.mjs", "-url", "ws://"+srv.addr+"/echo/", "-clients", strconv.Itoa(n), "-mode", mode)
			cmd.Stderr = os.Stderr
			stdin, _ := cmd.StdinPipe()
			stdout, _ := cmd.StdoutPipe()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
			ps = append(ps, proc{cmd, stdin, bufio.NewScanner(stdout)})
		}
		for _, p := range ps {
			next(p) // ready
		}
		srv.kill()
		killed := time.Now()
		for _, p := range ps {
			_, _ = io.WriteString(p.stdin, "down\n")
		}
		time.Sleep(down)
		from := len(srv.out.String())
		srv.start()
		up := time.Now()
		for _, p := range ps {
			_, _ = io.WriteString(p.stdin, "up\n")
		}
		r := &result{allBack: true, downMs: float64(up.Sub(killed).Milliseconds())}
		for _, p := range ps {
			m := next(p)
			r.allBack = r.allBack && m["allBack"] == true
			r.stopped += int(num(m["stopped"]))
			r.attempts = append(r.attempts, nums(m["attemptsMs"])...)
			r.opens = append(r.opens, nums(m["opensMs"])...)
			r.scheduled = append(r.scheduled, nums(m["scheduledMs"])...)
			_ = p.cmd.Wait()
		}
		srv.kill()
		for _, at := range handshakeTimes(srv.out.String()[from:]) {
			r.server = append(r.server, float64(at.Sub(up).Milliseconds()))
		}
		results[mode] = r
	}
	t.Logf("%d clients in %d processes, server down %v (kill to answering again: fixed %.0f ms, jitter %.0f ms)",
		clients, procs, down, results["fixed"].downMs, results["jitter"].downMs)
	row := func(name string, get func(*result) []float64, w float64) {
		f, j := peak(get(results["fixed"]), w), peak(get(results["jitter"]), w)
		t.Logf("%-44s fixed %6.0f  jitter %6.0f  jitter/fixed %.2f", name, f, j, j/f)
	}
	for _, w := range []float64{1000, 100} {
		row(fmt.Sprintf("server handshakes/s (%.0f ms windows)", w), func(r *result) []float64 { return r.server }, w)
		row(fmt.Sprintf("client attempts/s after up (%.0f ms windows)", w), func(r *result) []float64 { return nonNegative(r.attempts) }, w)
		row(fmt.Sprintf("scheduled retries/s after up (%.0f ms windows)", w), func(r *result) []float64 { return nonNegative(r.scheduled) }, w)
	}
	for _, mode := range []string{"fixed", "jitter"} {
		r := results[mode]
		t.Logf("%s: all back %v (%d opens, %d stopped for good), last open %.0f ms after the server answered again (target for jitter: maximum delay 10,000 ms + 2 s)",
			mode, r.allBack, len(r.opens), r.stopped, maxOf(r.opens))
	}
}

func num(v any) float64 { f, _ := v.(float64); return f }

func nums(v any) []float64 {
	list, _ := v.([]any)
	out := make([]float64, 0, len(list))
	for _, x := range list {
		out = append(out, num(x))
	}
	return out
}

func nonNegative(xs []float64) []float64 {
	var out []float64
	for _, x := range xs {
		if x >= 0 {
			out = append(out, x)
		}
	}
	return out
}

func maxOf(xs []float64) float64 {
	m := math.Inf(-1)
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}

// peak returns the most of the times (ms) within any window of w ms, per
// second.
func peak(times []float64, w float64) float64 {
	ts := append([]float64(nil), times...)
	sort.Float64s(ts)
	best := 0
	for i, j := 0, 0; i < len(ts); i++ {
		for ts[i]-ts[j] >= w {
			j++
		}
		best = max(best, i-j+1)
	}
	return float64(best) * 1000 / w
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
	return out
}
