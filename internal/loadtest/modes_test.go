package loadtest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gochannels/channels/internal/loadtest"
)

func TestEchoAgainstReference(t *testing.T) {
	ws, _ := startReference(t, &loadtest.Reference{})
	for _, pipeline := range []int{1, 8} {
		cm := quick(ws + "/echo/")
		cm.ServerPID = os.Getpid()
		rep, err := loadtest.RunEcho(context.Background(), loadtest.EchoConfig{
			Common: cm, Conns: 20, Messages: 300, Size: 100, Pipeline: pipeline,
		})
		if err != nil {
			t.Fatalf("pipeline %d: %v", pipeline, err)
		}
		if rep.Connected != 20 || rep.ConnectErrors != 0 {
			t.Errorf("pipeline %d: connected %d, connect errors %d; want 20, 0", pipeline, rep.Connected, rep.ConnectErrors)
		}
		if rep.Expected != 6000 || rep.Completed != 6000 || rep.Errors != 0 || rep.Timeouts != 0 {
			t.Errorf("pipeline %d: expected %d completed %d errors %d timeouts %d; want 6000 6000 0 0 (first error %q)",
				pipeline, rep.Expected, rep.Completed, rep.Errors, rep.Timeouts, rep.FirstError)
		}
		if rep.Latency.Count != 6000 || rep.Connect.Count != 20 {
			t.Errorf("pipeline %d: %d latency samples, %d connect samples; want 6000, 20", pipeline, rep.Latency.Count, rep.Connect.Count)
		}
		if rep.FrameBytes != 100 || rep.MsgsPerSec <= 0 || rep.StoppedEarly != "" {
			t.Errorf("pipeline %d: frame %d bytes, %v msgs/s, stopped early %q", pipeline, rep.FrameBytes, rep.MsgsPerSec, rep.StoppedEarly)
		}
		if rep.Server == nil || rep.Server.PID != os.Getpid() || rep.Server.RSSKiB <= 0 {
			t.Errorf("pipeline %d: server usage %+v, want this process's", pipeline, rep.Server)
		}
		if rep.Failure() != nil {
			t.Errorf("pipeline %d: Failure() = %v", pipeline, rep.Failure())
		}
	}
}

func TestFanoutAgainstReference(t *testing.T) {
	for _, direct := range []bool{false, true} {
		ws, _ := startReference(t, &loadtest.Reference{DirectWrite: direct})
		rep, err := loadtest.RunFanout(context.Background(), loadtest.FanoutConfig{
			Common: quick(ws + "/fanout/"), Subscribers: 30, Messages: 200, Size: 80, Grace: time.Second,
		})
		if err != nil {
			t.Fatalf("direct=%v: %v", direct, err)
		}
		if rep.Connected != 30 || rep.Joined != 30 || rep.Sent != 200 {
			t.Errorf("direct=%v: connected %d joined %d sent %d; want 30 30 200", direct, rep.Connected, rep.Joined, rep.Sent)
		}
		if rep.Expected != 6000 || rep.Received != 6000 || rep.Lost != 0 || rep.Reordered != 0 || rep.Duplicates != 0 ||
			rep.Errors != 0 || rep.Disconnects != 0 {
			t.Errorf("direct=%v: %+v; want 6000 of 6000 received, nothing lost, reordered, duplicated or failed", direct, rep)
		}
		if rep.Latency.Count != 6000 || rep.DeliveriesPerSec <= 0 || rep.FrameBytes != 80 {
			t.Errorf("direct=%v: %d latency samples, %v deliveries/s, %d-byte frames", direct, rep.Latency.Count, rep.DeliveriesPerSec, rep.FrameBytes)
		}
		if !strings.HasPrefix(rep.Room, "load-") || !strings.HasSuffix(rep.URL, "/fanout/"+rep.Room+"/") {
			t.Errorf("direct=%v: room %q, URL %q: want a random load-… room appended to the URL", direct, rep.Room, rep.URL)
		}
	}
}

func TestFanoutRateIsPaced(t *testing.T) {
	ws, _ := startReference(t, &loadtest.Reference{})
	rep, err := loadtest.RunFanout(context.Background(), loadtest.FanoutConfig{
		Common: quick(ws + "/fanout/"), Subscribers: 3, Messages: 21, Rate: 200, Grace: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	// Frame i is not sent before i/rate: 20 intervals of 5 ms at least.
	if rep.Received != 63 || rep.SendSec < 0.099 {
		t.Errorf("received %d, sending took %.3fs; want 63 and at least 0.1s at 200/s", rep.Received, rep.SendSec)
	}
}

func TestConnectAgainstReference(t *testing.T) {
	ref := &loadtest.Reference{}
	ws, _ := startReference(t, ref)
	cm := quick(ws + "/echo/")
	cm.ServerPID = os.Getpid()
	rep, err := loadtest.RunConnect(context.Background(), loadtest.ConnectConfig{Common: cm, Conns: 300, Concurrency: 8})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Completed != 300 || rep.Failed != 0 || rep.Timeouts != 0 || rep.CloseErrors != 0 {
		t.Errorf("completed %d failed %d timeouts %d close errors %d (%q, %q); want 300 0 0 0",
			rep.Completed, rep.Failed, rep.Timeouts, rep.CloseErrors, rep.FirstError, rep.FirstCloseError)
	}
	if rep.Handshake.Count != 300 || rep.Close.Count != 300 || rep.ConnectsPerSec <= 0 || rep.StoppedEarly != "" {
		t.Errorf("%d handshake samples, %d close samples, %v connects/s, stopped early %q",
			rep.Handshake.Count, rep.Close.Count, rep.ConnectsPerSec, rep.StoppedEarly)
	}
	if rep.Server == nil || rep.Server.PID != os.Getpid() {
		t.Errorf("server usage %+v, want this process's", rep.Server)
	}
	if m := rep.Metrics(); m[0].Name != "connects_per_sec" || m[len(m)-1].Name != "server_cpu_us_per_connect" {
		t.Errorf("Metrics() = %+v, want connects/s first and the server's CPU per connect last", m)
	}
	// Every connection was closed, not left open: the server lets go of
	// all of them.
	for deadline := time.Now().Add(5 * time.Second); ref.Stats().Conns != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the reference still holds %d connections after the run", ref.Stats().Conns)
		}
	}
}

func TestHTTPAgainstReference(t *testing.T) {
	_, base := startReference(t, &loadtest.Reference{})
	rep, err := loadtest.RunHTTP(context.Background(), loadtest.HTTPConfig{
		Common: quick(base + "/http/"), Conns: 8, Requests: 2000,
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Completed != 2000 || rep.OK != 2000 || rep.Status["200"] != 2000 || len(rep.Status) != 1 {
		t.Errorf("completed %d, ok %d, status %v; want 2000 answers, all 200", rep.Completed, rep.OK, rep.Status)
	}
	if rep.Errors != 0 || rep.Timeouts != 0 || rep.ConnectErrors != 0 {
		t.Errorf("errors %d timeouts %d connect errors %d (%q)", rep.Errors, rep.Timeouts, rep.ConnectErrors, rep.FirstError)
	}
	// Keep-alive: one TCP connection per worker, for all 2000 requests.
	if rep.Connections != 8 {
		t.Errorf("%d connections opened for 8 keep-alive workers", rep.Connections)
	}
	if rep.BodyBytes != 2*2000 || rep.Latency.Count != 2000 || rep.RequestsPerSec <= 0 {
		t.Errorf("body bytes %d, latency samples %d, %v req/s", rep.BodyBytes, rep.Latency.Count, rep.RequestsPerSec)
	}
}

func TestIdleAgainstReferenceInThisProcess(t *testing.T) {
	ws, _ := startReference(t, &loadtest.Reference{})
	var warnings []string
	rep, err := loadtest.RunIdle(context.Background(), loadtest.IdleConfig{
		Common: func() loadtest.Common { c := quick(ws + "/echo/"); c.ServerPID = os.Getpid(); return c }(),
		Conns:  60, Hold: 100 * time.Millisecond, Batch: 16, Ramp: time.Millisecond,
		Warn: func(s string) { warnings = append(warnings, s) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Connected != 60 || rep.OpenAtEnd != 60 || rep.Dropped != 0 || rep.ConnectErrors != 0 {
		t.Errorf("connected %d, open at end %d, dropped %d, failed %d; want 60 60 0 0", rep.Connected, rep.OpenAtEnd, rep.Dropped, rep.ConnectErrors)
	}
	if rep.RSSBefore <= 0 || rep.RSSOpen <= 0 || rep.RSSSettled <= 0 || rep.PID != os.Getpid() {
		t.Errorf("RSS before %d, open %d, settled %d KiB (pid %d): want readings of this process", rep.RSSBefore, rep.RSSOpen, rep.RSSSettled, rep.PID)
	}
	// Both ends of every connection live in this process.
	if rep.FDsOpen-rep.FDsBefore < 120 {
		t.Errorf("open files went from %d to %d; want at least 120 more for 60 loopback connections", rep.FDsBefore, rep.FDsOpen)
	}
	if rep.Failure() != nil {
		t.Errorf("Failure() = %v", rep.Failure())
	}
	if rep.Connect.Count != 60 || rep.NoFileLimit == 0 || len(warnings) != 0 {
		t.Errorf("connect samples %d, open-files limit %d, warnings %q", rep.Connect.Count, rep.NoFileLimit, warnings)
	}
}

func TestReportsTextAndJSON(t *testing.T) {
	ws, base := startReference(t, &loadtest.Reference{})
	echo, err := loadtest.RunEcho(context.Background(), loadtest.EchoConfig{Common: quick(ws + "/echo/"), Conns: 3, Messages: 10})
	if err != nil {
		t.Fatal(err)
	}
	fan, err := loadtest.RunFanout(context.Background(), loadtest.FanoutConfig{Common: quick(ws + "/fanout/"), Subscribers: 2, Messages: 5})
	if err != nil {
		t.Fatal(err)
	}
	h, err := loadtest.RunHTTP(context.Background(), loadtest.HTTPConfig{Common: quick(base + "/http/"), Conns: 2, Requests: 10})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := loadtest.RunConnect(context.Background(), loadtest.ConnectConfig{Common: quick(ws + "/echo/"), Conns: 7, Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		rep  loadtest.Report
		text []string
		json []string
	}{
		{echo, []string{"echo ws://", "30/30", "msgs/s", "3/3 open"}, []string{`"mode":"echo"`, `"completed":30`, `"msgs_per_sec":`, `"p99_ms":`}},
		{fan, []string{"fanout ws://", "10/10", "deliveries/s", "lost          0"}, []string{`"mode":"fanout"`, `"received":10`, `"lost":0`, `"deliveries_per_sec":`}},
		{h, []string{"http http://", "10/10", "req/s", "200×10"}, []string{`"mode":"http"`, `"status":{"200":10}`, `"requests_per_sec":`}},
		{conn, []string{"connect ws://", "connects      7/7", "connects/s", "2 handshakes in flight", "0 failed, 0 timeouts"},
			[]string{`"mode":"connect"`, `"completed":7`, `"connects_per_sec":`, `"handshake":{`}},
	} {
		var text bytes.Buffer
		if err := tc.rep.WriteText(&text); err != nil {
			t.Fatal(err)
		}
		for _, want := range tc.text {
			if !strings.Contains(text.String(), want) {
				t.Errorf("text report lacks %q:\n%s", want, text.String())
			}
		}
		b, err := json.Marshal(tc.rep)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range tc.json {
			if !bytes.Contains(b, []byte(want)) {
				t.Errorf("JSON report lacks %s: %s", want, b)
			}
		}
		if m := tc.rep.Metrics(); len(m) == 0 || m[0].Value <= 0 || m[0].Better != "higher" {
			t.Errorf("Metrics() = %+v, want throughput first", m)
		}
	}
}

func TestCompareRatios(t *testing.T) {
	a := &loadtest.EchoReport{MsgsPerSec: 1000, Latency: loadtest.Latency{P50: 4, P99: 10}}
	b := &loadtest.EchoReport{MsgsPerSec: 4000, Latency: loadtest.Latency{P50: 1, P99: 0}}
	c := loadtest.Compare("echo", loadtest.Side{Name: "channels", Report: a}, loadtest.Side{Name: "reference", Report: b})
	want := map[string]float64{"msgs_per_sec": 0.25, "latency_p50_ms": 4, "latency_p99_ms": 0}
	if len(c.Ratios) != len(want) {
		t.Fatalf("ratios %+v, want %d of them", c.Ratios, len(want))
	}
	for _, r := range c.Ratios {
		if r.Ratio != want[r.Metric] {
			t.Errorf("%s: ratio %v, want %v", r.Metric, r.Ratio, want[r.Metric])
		}
	}
	var text bytes.Buffer
	if err := c.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"[channels] echo", "[reference] echo", "echo: channels / reference", "ratio 0.250", "ratio n/a"} {
		if !strings.Contains(text.String(), s) {
			t.Errorf("comparison text lacks %q:\n%s", s, text.String())
		}
	}
	if c.Failure() != nil {
		t.Errorf("Failure() = %v", c.Failure())
	}
	a.ConnectErrors, a.Conns = 2, 10
	if err := c.Failure(); !errors.Is(err, loadtest.ErrConnect) || !strings.Contains(err.Error(), "channels") {
		t.Errorf("Failure() = %v, want ErrConnect naming side channels", err)
	}
}
