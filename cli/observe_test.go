package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/cli"
)

// A panic's stack is written as indented lines after a text record, and as
// an array of lines in a JSON one.
func TestLoggerStackLines(t *testing.T) {
	stack := "goroutine 7 [running]:\nmain.f()\n\t/src/main.go:10 +0x1d\n"
	var text bytes.Buffer
	log, err := cli.NewLogger(&text, "text", slog.LevelInfo)
	if err != nil {
		t.Fatal(err)
	}
	log.With("component", "worker").Error("consumer panicked", "panic", "boom", "stack", stack)
	lines := strings.Split(strings.TrimRight(text.String(), "\n"), "\n")
	if len(lines) != 4 || !strings.Contains(lines[0], `msg="consumer panicked"`) || strings.Contains(lines[0], "stack=") ||
		lines[1] != "\tgoroutine 7 [running]:" || lines[2] != "\tmain.f()" || lines[3] != "\t\t/src/main.go:10 +0x1d" {
		t.Errorf("text record with a stack:\n%s", text.String())
	}

	var js bytes.Buffer
	log, _ = cli.NewLogger(&js, "json", slog.LevelInfo)
	log.Error("consumer panicked", "stack", stack)
	var rec struct {
		Msg   string   `json:"msg"`
		Stack []string `json:"stack"`
	}
	if err := json.Unmarshal(js.Bytes(), &rec); err != nil {
		t.Fatalf("%v in %s", err, js.String())
	}
	if rec.Msg != "consumer panicked" || len(rec.Stack) != 3 || rec.Stack[1] != "main.f()" {
		t.Errorf("JSON record with a stack: %s", js.String())
	}
	if _, err := cli.NewLogger(io.Discard, "xml", slog.LevelInfo); err == nil {
		t.Error("NewLogger accepted format xml")
	}
}

// Identical errors repeated during an outage are logged once per
// RepeatInterval; the next one logged carries how many were left out.
// Different errors and info records are not held back.
func TestLoggerRateLimitsRepeatedErrors(t *testing.T) {
	var out bytes.Buffer
	log, _ := cli.NewLogger(&out, "json", slog.LevelInfo)
	log = log.With("component", "worker")
	down := errors.New("redislayer: Redis unavailable: dial tcp 127.0.0.1:6379: connection refused")
	for range 580 {
		log.Error("receive failed", "error", down)
	}
	log.Error("receive failed", "error", errors.New("another error"))
	log.Info("still running")
	log.Error("consumer panicked", "panic", "index out of range")
	log.Error("consumer panicked", "panic", "nil map")
	records := decodeAll(t, out.Bytes())
	if len(records) != 5 {
		t.Fatalf("%d records for 580 identical errors, another error, an info and two different panics; want 5:\n%s", len(records), out.String())
	}
	// The records carry their own time: one logged RepeatInterval later
	// comes out with the count of those left out.
	r := slog.NewRecord(timeAfterRepeat(), slog.LevelError, "receive failed", 0)
	r.AddAttrs(slog.Any("error", down))
	_ = log.Handler().Handle(context.Background(), r)
	records = decodeAll(t, out.Bytes())
	if last := records[len(records)-1]; last["repeated"] != float64(579) {
		t.Errorf("record after the interval = %v; want repeated=579", last)
	}
}

func decodeAll(t *testing.T, b []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	dec := json.NewDecoder(bytes.NewReader(b))
	for dec.More() {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// Usage errors exit with 2 and are printed once; other errors exit with 1
// as "error: ..." without the command's name twice.
func TestExitCodes(t *testing.T) {
	t.Setenv(cli.LayerEnv, "")
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"runserver", "--no-such-flag"}, 2},
		{[]string{"runworker", "--threads", "x"}, 2},
		{[]string{"gateway", "--log-format", "xml", "-p", "0"}, 2},
		{[]string{"runserver", "--log-level", "loud"}, 2},
		{[]string{"bogus"}, 2},
		{[]string{"rundelay"}, 1}, // the in-memory layer cannot span processes
	} {
		var stderr bytes.Buffer
		app := &cli.App{Router: channels.NewRouter(), Stdout: io.Discard, Stderr: &stderr}
		err := app.Run(context.Background(), tc.args)
		if got := cli.ExitCode(&stderr, err); got != tc.want {
			t.Errorf("%v: exit %d; want %d (%v)", tc.args, got, tc.want, err)
		}
	}
	var stderr bytes.Buffer
	err := cli.RunGateway(context.Background(), []string{"-p", "0", "memory://"}, io.Discard, &stderr)
	if code := cli.ExitCode(&stderr, err); code != 1 || strings.Count(stderr.String(), "channels-gateway") != 1 {
		t.Errorf("channels-gateway on the in-memory layer: exit %d, stderr %q; want 1 and the name once", code, stderr.String())
	}
	stderr.Reset()
	err = cli.RunGateway(context.Background(), []string{"--bogus"}, io.Discard, &stderr)
	if code := cli.ExitCode(&stderr, err); code != 2 || strings.Count(stderr.String(), "flag provided but not defined") != 1 {
		t.Errorf("channels-gateway --bogus: exit %d, stderr %q; want 2 and the error once", code, stderr.String())
	}
}

func timeAfterRepeat() time.Time { return time.Now().Add(cli.RepeatInterval + time.Second) }
