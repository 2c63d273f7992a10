package loadtest

import (
	"bytes"
	"fmt"
	"io"
	"math"
)

// Report is what every generator returns: text for a person, JSON (through
// encoding/json on the concrete type) for scripts, and the figures a
// comparison divides.
type Report interface {
	// WriteText writes the report in a few aligned lines.
	WriteText(w io.Writer) error
	// Failure returns an error wrapping ErrConnect when some connections
	// could not be opened, nil otherwise. Errors, timeouts and losses are
	// measurements, not failures: they are in the report.
	Failure() error
	// Metrics returns the headline figures, throughput first.
	Metrics() []Metric
}

// Metric is one headline figure of a report.
type Metric struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	// Better is "higher" or "lower".
	Better string `json:"better"`
}

// Compile-time checks.
var (
	_ Report = (*EchoReport)(nil)
	_ Report = (*FanoutReport)(nil)
	_ Report = (*IdleReport)(nil)
	_ Report = (*HTTPReport)(nil)
	_ Report = (*ConnectReport)(nil)
)

// fmtMS formats milliseconds with three significant digits or so.
func fmtMS(v float64) string {
	switch {
	case v < 1:
		return fmt.Sprintf("%.3fms", v)
	case v < 10:
		return fmt.Sprintf("%.2fms", v)
	case v < 100:
		return fmt.Sprintf("%.1fms", v)
	default:
		return fmt.Sprintf("%.0fms", v)
	}
}

func fmtLatency(l Latency) string {
	if l.Count == 0 {
		return "no samples"
	}
	return fmt.Sprintf("p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (mean %s)",
		fmtMS(l.P50), fmtMS(l.P90), fmtMS(l.P99), fmtMS(l.P999), fmtMS(l.Max), fmtMS(l.Mean))
}

func fmtSeconds(s float64) string {
	if s < 1 {
		return fmtMS(s * 1000)
	}
	return fmt.Sprintf("%.2fs", s)
}

func fmtKiB(k int64) string {
	return fmt.Sprintf("%.1f MiB", float64(k)/1024)
}

// textWriter collects "  label  value" lines.
type textWriter struct {
	buf bytes.Buffer
}

func (t *textWriter) line(label, format string, args ...any) {
	fmt.Fprintf(&t.buf, "  %-13s %s\n", label, fmt.Sprintf(format, args...))
}

func (t *textWriter) usage(client Usage, server *Usage) {
	t.line("client CPU", "%.2fs = %.0f%% of one core", client.CPUSeconds, client.CPUPercent)
	if server != nil {
		t.line("server CPU", "%.2fs = %.0f%% of one core, RSS %s (pid %d)", server.CPUSeconds, server.CPUPercent, fmtKiB(server.RSSKiB), server.PID)
	}
}

func (t *textWriter) notes(stopped, firstErr, firstConnErr string) {
	if stopped != "" {
		t.line("stopped early", "%s", stopped)
	}
	if firstConnErr != "" {
		t.line("connect error", "%s", firstConnErr)
	}
	if firstErr != "" {
		t.line("first error", "%s", firstErr)
	}
}

func (t *textWriter) flush(w io.Writer) error {
	_, err := w.Write(t.buf.Bytes())
	return err
}

func connectFailure(failed int64, total int, first string) error {
	if failed == 0 {
		return nil
	}
	return fmt.Errorf("%w: %d of %d connections failed (first: %s)", ErrConnect, failed, total, first)
}

// WriteText writes the report for a person.
func (r *EchoReport) WriteText(w io.Writer) error {
	var t textWriter
	fmt.Fprintf(&t.buf, "echo %s\n", r.URL)
	t.line("connections", "%d/%d open, %d failed; connect p50 %s p99 %s", r.Connected, r.Conns, r.ConnectErrors, fmtMS(r.Connect.P50), fmtMS(r.Connect.P99))
	t.line("round trips", "%d/%d in %s = %.0f msgs/s  (%d-byte frames, pipeline %d)", r.Completed, r.Expected, fmtSeconds(r.ElapsedSec), r.MsgsPerSec, r.FrameBytes, r.Pipeline)
	t.line("latency", "%s", fmtLatency(r.Latency))
	t.line("errors", "%d errors, %d timeouts", r.Errors, r.Timeouts)
	t.usage(r.Client, r.Server)
	t.notes(r.StoppedEarly, r.FirstError, r.FirstConnectError)
	return t.flush(w)
}

// Failure reports connections that could not be opened.
func (r *EchoReport) Failure() error {
	return connectFailure(r.ConnectErrors, r.Conns, r.FirstConnectError)
}

// Metrics returns msgs/s and round-trip latency.
func (r *EchoReport) Metrics() []Metric {
	return append([]Metric{
		{"msgs_per_sec", r.MsgsPerSec, "higher"},
		{"latency_p50_ms", r.Latency.P50, "lower"},
		{"latency_p99_ms", r.Latency.P99, "lower"},
	}, serverCost(r.Server, r.Completed, "server_cpu_us_per_msg")...)
}

// serverCost is the server's CPU time per unit of work, when known.
func serverCost(s *Usage, n int64, name string) []Metric {
	if s == nil || n == 0 {
		return nil
	}
	return []Metric{{name, s.CPUSeconds * 1e6 / float64(n), "lower"}}
}

// WriteText writes the report for a person.
func (r *FanoutReport) WriteText(w io.Writer) error {
	var t textWriter
	fmt.Fprintf(&t.buf, "fanout %s\n", r.URL)
	t.line("subscribers", "%d/%d open, %d failed, %d joined the room; connect p50 %s p99 %s", r.Connected, r.Subscribers, r.ConnectErrors, r.Joined, fmtMS(r.Connect.P50), fmtMS(r.Connect.P99))
	pace := "unpaced"
	if r.Rate > 0 {
		pace = fmt.Sprintf("paced at %g/s", r.Rate)
	}
	t.line("published", "%d/%d frames in %s = %.0f/s (%s, %d-byte frames)", r.Sent, r.Messages, fmtSeconds(r.SendSec), r.SendRate, pace, r.FrameBytes)
	t.line("delivered", "%d/%d in %s = %.0f deliveries/s", r.Received, r.Expected, fmtSeconds(r.ElapsedSec), r.DeliveriesPerSec)
	t.line("latency", "%s", fmtLatency(r.Latency))
	t.line("lost", "%d  reordered %d  duplicates %d  errors %d  disconnects %d", r.Lost, r.Reordered, r.Duplicates, r.Errors, r.Disconnects)
	t.usage(r.Client, r.Server)
	t.notes(r.StoppedEarly, r.FirstError, r.FirstConnectError)
	return t.flush(w)
}

// Failure reports connections that could not be opened.
func (r *FanoutReport) Failure() error {
	return connectFailure(r.ConnectErrors, r.Subscribers, r.FirstConnectError)
}

// Metrics returns deliveries/s, delivery latency and losses.
func (r *FanoutReport) Metrics() []Metric {
	return append([]Metric{
		{"deliveries_per_sec", r.DeliveriesPerSec, "higher"},
		{"latency_p50_ms", r.Latency.P50, "lower"},
		{"latency_p99_ms", r.Latency.P99, "lower"},
		{"lost", float64(r.Lost), "lower"},
	}, serverCost(r.Server, r.Received, "server_cpu_us_per_delivery")...)
}

// WriteText writes the report for a person.
func (r *IdleReport) WriteText(w io.Writer) error {
	var t textWriter
	fmt.Fprintf(&t.buf, "idle %s (server pid %d)\n", r.URL, r.PID)
	t.line("connections", "%d/%d opened in %s (%.0f/s), %d failed, %d dropped during the %s hold, %d open at the end",
		r.Connected, r.Conns, fmtSeconds(r.OpenSec), r.ConnectsPerSec, r.ConnectErrors, r.Dropped, fmtSeconds(r.HoldSec), r.OpenAtEnd)
	t.line("server RSS", "%s before, %s with all open, %s after the hold", fmtKiB(r.RSSBefore), fmtKiB(r.RSSOpen), fmtKiB(r.RSSSettled))
	t.line("per conn", "%.1f KiB with all open, %.1f KiB after the hold", r.PerConnKiB, r.PerConnSettledKiB)
	if r.FDsBefore >= 0 && r.FDsOpen >= 0 {
		t.line("server fds", "%d before, %d with all open", r.FDsBefore, r.FDsOpen)
	}
	t.line("connect", "%s", fmtLatency(r.Connect))
	t.line("client CPU", "%.2fs while opening and holding (open-files limit %d)", r.Client.CPUSeconds, r.NoFileLimit)
	for _, w := range r.Warnings {
		t.line("warning", "%s", w)
	}
	t.notes(r.StoppedEarly, "", r.FirstConnectError)
	return t.flush(w)
}

// Failure reports connections that could not be opened or that the server
// closed during the hold: either way the memory per connection is not what
// it claims to be.
func (r *IdleReport) Failure() error {
	if err := connectFailure(r.ConnectErrors, r.Conns, r.FirstConnectError); err != nil {
		return err
	}
	if r.Dropped > 0 {
		return fmt.Errorf("%w: the server closed %d of %d connections during the hold", ErrConnect, r.Dropped, r.Connected)
	}
	return nil
}

// Metrics returns the server's memory per connection.
func (r *IdleReport) Metrics() []Metric {
	return []Metric{
		{"per_conn_kib", r.PerConnKiB, "lower"},
		{"per_conn_settled_kib", r.PerConnSettledKiB, "lower"},
		{"connects_per_sec", r.ConnectsPerSec, "higher"},
	}
}

// WriteText writes the report for a person.
func (r *HTTPReport) WriteText(w io.Writer) error {
	var t textWriter
	fmt.Fprintf(&t.buf, "http %s\n", r.URL)
	t.line("requests", "%d/%d in %s = %.0f req/s over %d keep-alive connections (%d opened)", r.Completed, r.Requests, fmtSeconds(r.ElapsedSec), r.RequestsPerSec, r.Conns, r.Connections)
	t.line("status", "%s", statusLine(r.Status))
	t.line("latency", "%s", fmtLatency(r.Latency))
	t.line("errors", "%d errors, %d timeouts, %d connect errors", r.Errors, r.Timeouts, r.ConnectErrors)
	t.usage(r.Client, r.Server)
	t.notes(r.StoppedEarly, r.FirstError, r.FirstConnectError)
	return t.flush(w)
}

// Failure reports connections that could not be opened.
func (r *HTTPReport) Failure() error {
	return connectFailure(r.ConnectErrors, r.Conns, r.FirstConnectError)
}

// Metrics returns requests/s and latency.
func (r *HTTPReport) Metrics() []Metric {
	return append([]Metric{
		{"requests_per_sec", r.RequestsPerSec, "higher"},
		{"latency_p50_ms", r.Latency.P50, "lower"},
		{"latency_p99_ms", r.Latency.P99, "lower"},
	}, serverCost(r.Server, r.Completed, "server_cpu_us_per_request")...)
}

// WriteText writes the report for a person.
func (r *ConnectReport) WriteText(w io.Writer) error {
	var t textWriter
	fmt.Fprintf(&t.buf, "connect %s\n", r.URL)
	t.line("connects", "%d/%d in %s = %.0f connects/s  (%d handshakes in flight, each connection closed once open)", r.Completed, r.Conns, fmtSeconds(r.ElapsedSec), r.ConnectsPerSec, r.Concurrency)
	t.line("handshake", "%s", fmtLatency(r.Handshake))
	t.line("close", "%s", fmtLatency(r.Close))
	t.line("failures", "%d failed, %d timeouts, %d close errors", r.Failed, r.Timeouts, r.CloseErrors)
	t.usage(r.Client, r.Server)
	t.notes(r.StoppedEarly, r.FirstError, "")
	if r.FirstCloseError != "" {
		t.line("close error", "%s", r.FirstCloseError)
	}
	return t.flush(w)
}

// Failure returns nil: in this mode failed handshakes are the measurement,
// counted in the report. (A target that refuses the very first connection
// makes RunConnect return ErrConnect instead of a report.)
func (r *ConnectReport) Failure() error { return nil }

// Metrics returns connects/s, handshake latency and failures.
func (r *ConnectReport) Metrics() []Metric {
	return append([]Metric{
		{"connects_per_sec", r.ConnectsPerSec, "higher"},
		{"handshake_p50_ms", r.Handshake.P50, "lower"},
		{"handshake_p99_ms", r.Handshake.P99, "lower"},
		{"failed", float64(r.Failed + r.Timeouts), "lower"},
	}, serverCost(r.Server, r.Completed, "server_cpu_us_per_connect")...)
}

// Comparison is the same run against two targets, A and B, with the ratio
// A/B of every headline figure both have.
type Comparison struct {
	Mode   string  `json:"mode"` // always "compare"
	Run    string  `json:"run"`  // echo, fanout, idle, http or connect
	A      Side    `json:"a"`
	B      Side    `json:"b"`
	Ratios []Ratio `json:"ratios"`
}

// Side is one target of a comparison.
type Side struct {
	Name   string `json:"name"`
	Report Report `json:"report"`
}

// Ratio compares one metric. Ratio is A/B (0 when B is 0).
type Ratio struct {
	Metric string  `json:"metric"`
	A      float64 `json:"a"`
	B      float64 `json:"b"`
	Ratio  float64 `json:"ratio"`
	Better string  `json:"better"`
}

// Compare builds the comparison of two reports of the same run.
func Compare(run string, a, b Side) *Comparison {
	c := &Comparison{Mode: "compare", Run: run, A: a, B: b, Ratios: []Ratio{}}
	bm := map[string]float64{}
	for _, m := range b.Report.Metrics() {
		bm[m.Name] = m.Value
	}
	for _, m := range a.Report.Metrics() {
		bv, ok := bm[m.Name]
		if !ok {
			continue
		}
		r := Ratio{Metric: m.Name, A: m.Value, B: bv, Better: m.Better}
		if bv != 0 {
			r.Ratio = m.Value / bv
		}
		c.Ratios = append(c.Ratios, r)
	}
	return c
}

// WriteText writes both reports and the ratios.
func (c *Comparison) WriteText(w io.Writer) error {
	var t textWriter
	for _, s := range []Side{c.A, c.B} {
		fmt.Fprintf(&t.buf, "[%s] ", s.Name)
		if err := s.Report.WriteText(&t.buf); err != nil {
			return err
		}
		t.buf.WriteByte('\n')
	}
	fmt.Fprintf(&t.buf, "%s: %s / %s\n", c.Run, c.A.Name, c.B.Name)
	for _, r := range c.Ratios {
		ratio := "n/a"
		if r.B != 0 && !math.IsInf(r.Ratio, 0) {
			ratio = fmt.Sprintf("%.3f", r.Ratio)
		}
		fmt.Fprintf(&t.buf, "  %-28s %12.3f %12.3f   ratio %s (%s is better)\n", r.Metric, r.A, r.B, ratio, r.Better)
	}
	return t.flush(w)
}

// Failure returns the first side's failure, if any.
func (c *Comparison) Failure() error {
	if err := c.A.Report.Failure(); err != nil {
		return fmt.Errorf("%s: %w", c.A.Name, err)
	}
	if err := c.B.Report.Failure(); err != nil {
		return fmt.Errorf("%s: %w", c.B.Name, err)
	}
	return nil
}
