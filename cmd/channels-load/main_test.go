package main

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gochannels/channels/internal/testenv"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// lockedBuffer collects output written from other goroutines.
type lockedBuffer = testenv.Output

// cli runs the command with args and returns its exit status and output.
func cli(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr lockedBuffer
	code := run(context.Background(), args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string // in stderr, or in stdout when the status is 0
	}{
		{nil, exitUsage, "usage: channels-load <mode>"},
		{[]string{"help"}, exitOK, "reference"},
		{[]string{"bogus"}, exitUsage, `unknown mode "bogus"`},
		{[]string{"echo", "-h"}, exitOK, ""},
		{[]string{"echo", "-nope"}, exitUsage, "flag provided but not defined: -nope"},
		{[]string{"echo", "leftover"}, exitUsage, `unexpected argument "leftover"`},
		{[]string{"echo", "-c", "0", "-n", "0"}, exitUsage, "connections (-c) must be at least 1, got 0; messages per connection (-n)"},
		{[]string{"echo", "-url", "http://127.0.0.1:1/"}, exitUsage, "scheme must be ws or wss"},
		{[]string{"fanout", "-s", "0"}, exitUsage, "subscribers (-s) must be at least 1"},
		{[]string{"http", "-url", "ws://x/"}, exitUsage, "scheme must be http or https"},
		{[]string{"connect", "-n", "0", "-c", "-1"}, exitUsage, "connections (-n) must be at least 1, got 0; handshakes in flight (-c)"},
		{[]string{"idle", "-c", "10"}, exitUsage, "process ID (-pid) is required"},
		{[]string{"compare", "echo"}, exitUsage, "-a, -b and a mode are required"},
		{[]string{"compare", "-a", "ws://x/", "-b", "ws://y/", "bogus"}, exitUsage, `unknown mode "bogus"`},
		{[]string{"compare", "-a", "ws://x/", "-b", "ws://y/", "echo", "-c", "-1"}, exitUsage, "connections (-c)"},
		{[]string{"compare", "-a", "ws://x/", "-b", "ws://y/", "-a-pid", "1", "idle"}, exitUsage, "-a-pid and -b-pid are required"},
		{[]string{"reference", "-addr", "256.0.0.1:1"}, exitFailure, "channels-load reference:"},
	} {
		code, stdout, stderr := cli(t, tc.args...)
		out := stderr
		if tc.code == exitOK {
			out = stdout + stderr
		}
		if code != tc.code || !strings.Contains(out, tc.want) {
			t.Errorf("channels-load %q: status %d, output %q; want status %d and %q", tc.args, code, out, tc.code, tc.want)
		}
	}
}

func TestUnreachableServerFailsClearly(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	for _, args := range [][]string{
		{"echo", "-url", "ws://" + addr + "/echo/"},
		{"fanout", "-url", "ws://" + addr + "/fanout/"},
		{"http", "-url", "http://" + addr + "/http/"},
		{"connect", "-url", "ws://" + addr + "/echo/"},
		{"idle", "-url", "ws://" + addr + "/echo/", "-pid", strconv.Itoa(os.Getpid())},
	} {
		code, stdout, stderr := cli(t, args...)
		if code != exitFailure || stdout != "" || !strings.Contains(stderr, "cannot connect") || !strings.Contains(stderr, "connection refused") {
			t.Errorf("%q: status %d, stdout %q, stderr %q; want status 1 and a clear message", args, code, stdout, stderr)
		}
	}
}

// startReference runs the reference mode in the background and returns its
// address; the server stops when the test ends.
func startReference(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr lockedBuffer
	done := make(chan int)
	go func() { done <- run(ctx, []string{"reference", "-addr", "127.0.0.1:0"}, &stdout, &stderr) }()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != exitOK {
			t.Errorf("reference exited with %d: %s", code, stderr.String())
		}
		if !strings.Contains(stdout.String(), "reference server stopped") {
			t.Errorf("reference did not say it stopped: %q", stdout.String())
		}
	})
	re := regexp.MustCompile(`reference server pid (\d+) listening on (\S+)`)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if m := re.FindStringSubmatch(stdout.String()); m != nil {
			if m[1] != strconv.Itoa(os.Getpid()) {
				t.Errorf("reference printed pid %s, want %d", m[1], os.Getpid())
			}
			return m[2]
		}
		if time.Now().After(deadline) {
			t.Fatalf("reference never printed its address; stdout %q stderr %q", stdout.String(), stderr.String())
		}
	}
}

func TestModesAgainstTheReferenceMode(t *testing.T) {
	addr := startReference(t)
	pid := strconv.Itoa(os.Getpid())
	for _, tc := range []struct {
		args []string
		want map[string]float64 // JSON fields of the report
	}{
		{[]string{"echo", "-url", "ws://" + addr + "/echo/", "-c", "4", "-n", "50", "-pid", pid},
			map[string]float64{"completed": 200, "errors": 0, "connected": 4}},
		{[]string{"fanout", "-url", "ws://" + addr + "/fanout/", "-s", "5", "-m", "20", "-grace", "1s"},
			map[string]float64{"received": 100, "lost": 0, "reordered": 0, "duplicates": 0}},
		{[]string{"http", "-url", "http://" + addr + "/http/", "-c", "2", "-n", "100"},
			map[string]float64{"completed": 100, "ok": 100, "errors": 0}},
		{[]string{"connect", "-url", "ws://" + addr + "/echo/", "-n", "40", "-c", "4", "-pid", pid},
			map[string]float64{"completed": 40, "failed": 0, "timeouts": 0, "concurrency": 4}},
		{[]string{"idle", "-url", "ws://" + addr + "/echo/", "-c", "10", "-pid", pid, "-hold", "50ms", "-ramp", "0"},
			map[string]float64{"connected": 10, "open_at_end": 10, "dropped": 0}},
	} {
		args := append(tc.args, "-json", "-progress", "0")
		code, stdout, stderr := cli(t, args...)
		if code != exitOK {
			t.Errorf("%q: status %d, stderr %q", tc.args, code, stderr)
			continue
		}
		var rep map[string]any
		if err := json.Unmarshal([]byte(stdout), &rep); err != nil || strings.Count(strings.TrimSpace(stdout), "\n") != 0 {
			t.Errorf("%q: stdout is not one JSON object on one line (%v): %q", tc.args, err, stdout)
			continue
		}
		if rep["mode"] != tc.args[0] {
			t.Errorf("%q: mode %v", tc.args, rep["mode"])
		}
		for k, want := range tc.want {
			if got, _ := rep[k].(float64); got != want {
				t.Errorf("%q: %s = %v, want %v", tc.args, k, rep[k], want)
			}
		}
	}

	// The default output is text.
	code, stdout, _ := cli(t, "echo", "-url", "ws://"+addr+"/echo/", "-c", "2", "-n", "5", "-progress", "0")
	if code != exitOK || !strings.Contains(stdout, "round trips   10/10") {
		t.Errorf("text report: status %d, %q", code, stdout)
	}
}

func TestCompare(t *testing.T) {
	addr := startReference(t)
	u := "ws://" + addr + "/echo/"
	code, stdout, stderr := cli(t, "compare", "-a", u, "-b", u, "-a-name", "first", "-b-name", "second", "-pause", "0",
		"echo", "-c", "2", "-n", "20", "-json", "-progress", "0")
	if code != exitOK {
		t.Fatalf("status %d, stderr %q", code, stderr)
	}
	var c struct {
		Mode, Run string
		A, B      struct {
			Name   string
			Report struct{ Completed int }
		}
		Ratios []struct {
			Metric string
			A, B   float64
			Ratio  float64
		}
	}
	if err := json.Unmarshal([]byte(stdout), &c); err != nil {
		t.Fatalf("%v: %q", err, stdout)
	}
	if c.Mode != "compare" || c.Run != "echo" || c.A.Name != "first" || c.B.Name != "second" ||
		c.A.Report.Completed != 40 || c.B.Report.Completed != 40 {
		t.Errorf("comparison %+v", c)
	}
	if len(c.Ratios) < 3 || c.Ratios[0].Metric != "msgs_per_sec" || c.Ratios[0].B == 0 || c.Ratios[0].Ratio != c.Ratios[0].A/c.Ratios[0].B {
		t.Errorf("ratios %+v, want msgs_per_sec first with ratio A/B", c.Ratios)
	}

	code, stdout, _ = cli(t, "compare", "-a", u, "-b", u, "-pause", "0", "http", "-c", "1", "-n", "5", "-progress", "0")
	if code != exitUsage {
		t.Errorf("compare http with ws URLs: status %d, want a usage error; stdout %q", code, stdout)
	}
}
