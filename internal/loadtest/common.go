package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// Errors the generators return; callers tell a usage mistake from an
// unreachable target with errors.Is.
var (
	// ErrInvalidConfig is wrapped by every configuration error.
	ErrInvalidConfig = errors.New("loadtest: invalid configuration")
	// ErrConnect is wrapped when the target cannot be reached at all, and
	// by Report.Failure when some connections could not be opened.
	ErrConnect = errors.New("loadtest: cannot connect")
)

// Defaults applied to zero fields of Common.
const (
	DefaultDuration      = 60 * time.Second
	DefaultTimeout       = 10 * time.Second
	DefaultProgressEvery = time.Second
	defaultSize          = 64
	defaultDialParallel  = 32
	maxSize              = 1 << 20
)

// Common holds the settings every generator shares. The zero value of each
// field but URL means its default.
type Common struct {
	// URL is the endpoint under test: ws:// or wss:// for WebSocket modes,
	// http:// for the HTTP mode.
	URL string
	// Duration is the ceiling on the whole run, connecting included
	// (default 60s). A run that reaches it stops, reports what it measured
	// and says so in StoppedEarly.
	Duration time.Duration
	// Timeout bounds each connection attempt and each wait for an answer
	// (default 10s). Expiries are counted as timeouts, never waited out.
	Timeout time.Duration
	// Progress receives one human-readable line per ProgressEvery while
	// the run goes on; nil means silence.
	Progress io.Writer
	// ProgressEvery is the interval between progress lines (default 1s).
	ProgressEvery time.Duration
	// ServerPID, when not zero, is the process ID of the server under test;
	// reports then include its CPU time and memory.
	ServerPID int
}

func (c *Common) setDefaults() {
	if c.Duration <= 0 {
		c.Duration = DefaultDuration
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.ProgressEvery <= 0 {
		c.ProgressEvery = DefaultProgressEvery
	}
}

// invalid describes one configuration mistake; configError gathers them.
func invalid(format string, args ...any) error {
	return fmt.Errorf(format, args...)
}

// configError returns nil when every err is nil, and otherwise one error
// wrapping ErrInvalidConfig that lists every mistake, separated by "; ".
func configError(errs ...error) error {
	var msgs []string
	for _, err := range errs {
		if err != nil {
			msgs = append(msgs, err.Error())
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrInvalidConfig, strings.Join(msgs, "; "))
}

// checkURL parses raw and checks that its scheme is one of schemes.
func checkURL(raw string, schemes ...string) (*url.URL, error) {
	if raw == "" {
		return nil, invalid("-url is required")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, invalid("-url %q: %v", raw, err)
	}
	ok := false
	for _, s := range schemes {
		ok = ok || u.Scheme == s
	}
	if !ok {
		return nil, invalid("-url %q: scheme must be %s", raw, strings.Join(schemes, " or "))
	}
	if u.Host == "" {
		return nil, invalid("-url %q has no host", raw)
	}
	if u.Path == "" {
		u.Path = "/"
	}
	return u, nil
}

func atLeast(name string, v, lo int) error {
	if v < lo {
		return invalid("%s must be at least %d, got %d", name, lo, v)
	}
	return nil
}

// wsDialer opens client WebSocket connections: no compression, no proxy,
// a fresh TCP connection per socket, a read limit fitting the frames.
type wsDialer struct {
	opts    websocket.DialOptions
	timeout time.Duration
	limit   int64
}

func newWSDialer(timeout time.Duration, frameSize int) *wsDialer {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: timeout}).DialContext,
		TLSHandshakeTimeout: timeout,
		DisableCompression:  true,
		MaxIdleConnsPerHost: -1,
	}
	return &wsDialer{
		opts: websocket.DialOptions{
			HTTPClient:      &http.Client{Transport: tr},
			CompressionMode: websocket.CompressionDisabled,
		},
		timeout: timeout,
		limit:   int64(max(2*frameSize, 64<<10)),
	}
}

// dial opens one connection and returns it with the time the handshake took.
// The handshake carries the origin of a page served by the target itself,
// which the gateway's default origin check accepts.
func (d *wsDialer) dial(ctx context.Context, u string) (*websocket.Conn, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	opts := d.opts
	opts.HTTPHeader = http.Header{"Origin": {sameOrigin(u)}}
	start := time.Now()
	c, resp, err := websocket.Dial(ctx, u, &opts)
	took := time.Since(start)
	if err != nil {
		if resp != nil {
			return nil, took, fmt.Errorf("%s: HTTP %d: %w", u, resp.StatusCode, err)
		}
		return nil, took, fmt.Errorf("%s: %w", u, err)
	}
	c.SetReadLimit(d.limit)
	return c, took, nil
}

// sameOrigin is the origin of a page on the server at the WebSocket URL u:
// its scheme (ws and wss as http and https) and host.
func sameOrigin(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return ""
	}
	switch p.Scheme {
	case "ws":
		return "http://" + p.Host
	case "wss":
		return "https://" + p.Host
	}
	return p.Scheme + "://" + p.Host
}

// readMessage reads the next data message of c into buf[:0], growing it as
// needed, and returns it. Reads never carry a context: connections are
// unblocked by closing them, which costs nothing per message.
func readMessage(c *websocket.Conn, buf []byte) ([]byte, error) {
	_, r, err := c.Reader(context.Background())
	if err != nil {
		return buf, err
	}
	buf = buf[:0]
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// errorLog counts errors of one kind and keeps the first for the report.
type errorLog struct {
	n     atomic.Int64
	mu    sync.Mutex
	first error
}

func (e *errorLog) add(err error) {
	if e.n.Add(1) == 1 {
		e.mu.Lock()
		e.first = err
		e.mu.Unlock()
	}
}

func (e *errorLog) count() int64 { return e.n.Load() }

func (e *errorLog) firstString() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.first == nil {
		return ""
	}
	return e.first.Error()
}

// progress prints a line every interval until stop is called.
type progress struct {
	stop func()
}

// startProgress calls line every interval and writes "channels-load <mode>
// <elapsed> <line>" to w. With w nil it does nothing.
func startProgress(w io.Writer, every time.Duration, mode string, line func() string) *progress {
	if w == nil {
		return &progress{stop: func() {}}
	}
	start := time.Now()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fmt.Fprintf(w, "channels-load %s %6.1fs  %s\n", mode, time.Since(start).Seconds(), line())
			}
		}
	})
	var once sync.Once
	return &progress{stop: func() { once.Do(func() { close(done); wg.Wait() }) }}
}

// Usage is the CPU time (and, for a server, the memory) a process used
// during the measured part of a run.
type Usage struct {
	PID        int     `json:"pid,omitempty"`
	CPUSeconds float64 `json:"cpu_s"`
	// CPUPercent is CPU time over wall time; 100 means one core busy.
	CPUPercent float64 `json:"cpu_percent"`
	RSSKiB     int64   `json:"rss_kib,omitempty"`
}

// usageMeter measures the client's and (optionally) the server's CPU time
// between start and stop, or between start and the last mark.
type usageMeter struct {
	pid       int
	start     time.Time
	self, srv time.Duration
	srvErr    error
	marked    *usageMark
}

// usageMark is a reading of the clock and both CPU times.
type usageMark struct {
	at        time.Time
	self, srv time.Duration
	srvErr    error
}

func startUsage(pid int) *usageMeter {
	m := &usageMeter{pid: pid, start: time.Now(), self: selfCPU()}
	if pid != 0 {
		m.srv, m.srvErr = readCPU(pid)
	}
	return m
}

func (m *usageMeter) read() *usageMark {
	u := &usageMark{at: time.Now(), self: selfCPU()}
	if m.pid != 0 {
		u.srv, u.srvErr = readCPU(m.pid)
	}
	return u
}

// mark records the usage so far; stop then reports up to the last mark.
// Fanout marks each time deliveries progress, so that the grace period
// spent waiting for lost frames does not dilute the percentages.
func (m *usageMeter) mark() { m.marked = m.read() }

func (m *usageMeter) stop() (client Usage, server *Usage) {
	end := m.marked
	if end == nil {
		end = m.read()
	}
	wall := end.at.Sub(m.start).Seconds()
	pct := func(cpu time.Duration) float64 {
		if wall <= 0 {
			return 0
		}
		return 100 * cpu.Seconds() / wall
	}
	cpu := end.self - m.self
	client = Usage{CPUSeconds: cpu.Seconds(), CPUPercent: pct(cpu)}
	if m.pid != 0 && m.srvErr == nil && end.srvErr == nil {
		s := &Usage{PID: m.pid, CPUSeconds: (end.srv - m.srv).Seconds(), CPUPercent: pct(end.srv - m.srv)}
		s.RSSKiB, _ = ReadRSS(m.pid)
		server = s
	}
	return client, server
}

// closeAll closes connections concurrently with a normal closure, giving
// up on the handshake (and closing the TCP connection) after timeout.
func closeAll(conns []*websocket.Conn, timeout time.Duration) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 256)
	deadline := time.Now().Add(timeout)
	for _, c := range conns {
		if c == nil {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if time.Now().After(deadline) {
				c.CloseNow()
				return
			}
			t := time.AfterFunc(time.Until(deadline), func() { c.CloseNow() })
			c.Close(websocket.StatusNormalClosure, "load test done")
			t.Stop()
		})
	}
	wg.Wait()
}

// stopReason says why ctx ended a run early, for StoppedEarly.
func stopReason(ctx context.Context, ceiling time.Duration, during string) string {
	why := "interrupted"
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		why = fmt.Sprintf("the -duration ceiling (%s) passed", ceiling)
	}
	if during != "" {
		why += " " + during
	}
	return why
}

// rate divides n by seconds, returning 0 for an empty interval.
func rate(n int64, seconds float64) float64 {
	if seconds <= 0 {
		return 0
	}
	return float64(n) / seconds
}
