package loadtest

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// HTTPConfig configures RunHTTP.
type HTTPConfig struct {
	Common
	// Conns is the number of keep-alive connections, each with one request
	// in flight (-c).
	Conns int
	// Requests is the total number of requests, shared by all connections (-n).
	Requests int
}

func (c *HTTPConfig) check() (*url.URL, error) {
	c.setDefaults()
	u, err := checkURL(c.URL, "http", "https")
	return u, configError(err,
		atLeast("connections (-c)", c.Conns, 1),
		atLeast("requests (-n)", c.Requests, 1),
	)
}

// HTTPReport is the outcome of RunHTTP. Every request ends as exactly one
// of: a response (counted in Status by code), an error, or a timeout; the
// ones never started because of an early stop make up the rest of Requests.
type HTTPReport struct {
	Mode          string `json:"mode"`
	URL           string `json:"url"`
	Conns         int    `json:"conns"`
	Requests      int    `json:"requests"`
	Completed     int64  `json:"completed"`
	OK            int64  `json:"ok"`
	Errors        int64  `json:"errors"`
	Timeouts      int64  `json:"timeouts"`
	ConnectErrors int64  `json:"connect_errors"`
	// Status counts responses by status code.
	Status map[string]int64 `json:"status"`
	// Connections counts TCP connections opened (more than Conns when the
	// server closes keep-alive connections).
	Connections    int64   `json:"connections"`
	BodyBytes      int64   `json:"body_bytes"`
	ElapsedSec     float64 `json:"elapsed_s"`
	RequestsPerSec float64 `json:"requests_per_sec"`
	// Latency runs from writing the request to reading the whole body.
	Latency           Latency `json:"latency"`
	Connect           Latency `json:"connect"`
	StoppedEarly      string  `json:"stopped_early,omitempty"`
	FirstError        string  `json:"first_error,omitempty"`
	FirstConnectError string  `json:"first_connect_error,omitempty"`
	Client            Usage   `json:"client"`
	Server            *Usage  `json:"server,omitempty"`
}

// httpRun is the shared state of RunHTTP's workers.
type httpRun struct {
	cfg         HTTPConfig
	addr        string
	tls         *tls.Config
	request     []byte
	deadline    time.Time
	next        atomic.Int64 // requests handed out
	completed   atomic.Int64
	okCount     atomic.Int64
	timeouts    atomic.Int64
	errs        errorLog
	connErrs    errorLog
	connections atomic.Int64
	bodyBytes   atomic.Int64
	lat         Histogram
	connect     Histogram
	mu          sync.Mutex
	status      map[int]int64
	stopped     atomic.Bool
}

// RunHTTP sends cfg.Requests GET requests over cfg.Conns keep-alive
// connections, each worker writing a request and reading the full response
// before the next, and reports requests/s, latency and status codes. The
// client is a minimal HTTP/1.1 one over net.Conn (responses parsed by
// net/http) so that it costs the machine as little as possible. It returns
// an error wrapping ErrInvalidConfig for a bad configuration and ErrConnect
// when the first request cannot be made at all.
func RunHTTP(ctx context.Context, cfg HTTPConfig) (*HTTPReport, error) {
	u, err := cfg.check()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	r := &httpRun{cfg: cfg, addr: u.Host, status: make(map[int]int64)}
	r.deadline, _ = ctx.Deadline()
	if u.Port() == "" {
		r.addr = net.JoinHostPort(u.Hostname(), map[string]string{"http": "80", "https": "443"}[u.Scheme])
	}
	if u.Scheme == "https" {
		r.tls = &tls.Config{ServerName: u.Hostname()}
	}
	r.request = fmt.Appendf(nil, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: channels-load\r\nAccept: */*\r\n\r\n", u.RequestURI(), u.Host)
	rep := &HTTPReport{Mode: "http", URL: cfg.URL, Conns: cfg.Conns, Requests: cfg.Requests}

	// One request alone first: an unreachable server is an error, not a
	// report full of failures.
	probe := &httpConn{run: r}
	if err := probe.connect(); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrConnect, cfg.URL, err)
	}
	stopAfter := context.AfterFunc(ctx, func() { r.stopped.Store(true) })
	defer stopAfter()

	prog := startProgress(cfg.Progress, cfg.ProgressEvery, "http", func() string {
		return fmt.Sprintf("requests %d/%d  errors %d  timeouts %d", r.completed.Load(), cfg.Requests, r.errs.count(), r.timeouts.Load())
	})
	defer prog.stop()
	meter := startUsage(cfg.ServerPID)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range cfg.Conns {
		w := &httpConn{run: r}
		if i == 0 {
			w = probe
		}
		wg.Go(w.loop)
	}
	wg.Wait()
	elapsed := time.Since(start)
	rep.Client, rep.Server = meter.stop()
	prog.stop()

	rep.Completed = r.completed.Load()
	rep.OK = r.okCount.Load()
	rep.Errors = r.errs.count()
	rep.Timeouts = r.timeouts.Load()
	rep.ConnectErrors = r.connErrs.count()
	rep.FirstError = r.errs.firstString()
	rep.FirstConnectError = r.connErrs.firstString()
	rep.Connections = r.connections.Load()
	rep.BodyBytes = r.bodyBytes.Load()
	rep.Status = make(map[string]int64, len(r.status))
	for code, n := range r.status {
		rep.Status[strconv.Itoa(code)] = n
	}
	rep.ElapsedSec = elapsed.Seconds()
	rep.RequestsPerSec = rate(rep.Completed, rep.ElapsedSec)
	rep.Latency = r.lat.Summary()
	rep.Connect = r.connect.Summary()
	if r.stopped.Load() && rep.Completed+rep.Errors+rep.Timeouts < int64(cfg.Requests) {
		rep.StoppedEarly = stopReason(ctx, cfg.Duration, "")
	}
	return rep, nil
}

// httpConn is one worker and its keep-alive connection.
type httpConn struct {
	run  *httpRun
	conn net.Conn
	br   *bufio.Reader
}

func (c *httpConn) connect() error {
	r := c.run
	start := time.Now()
	d := net.Dialer{Timeout: r.cfg.Timeout}
	var conn net.Conn
	var err error
	if r.tls != nil {
		conn, err = (&tls.Dialer{NetDialer: &d, Config: r.tls}).Dial("tcp", r.addr)
	} else {
		conn, err = d.Dial("tcp", r.addr)
	}
	if err != nil {
		r.connErrs.add(err)
		return err
	}
	r.connect.Record(time.Since(start))
	r.connections.Add(1)
	c.conn = conn
	if c.br == nil {
		c.br = bufio.NewReaderSize(conn, 4096)
	} else {
		c.br.Reset(conn)
	}
	return nil
}

func (c *httpConn) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

// loop takes requests until none are left, the run stops, or the worker
// cannot connect (the server is gone: retrying would only spin).
func (c *httpConn) loop() {
	r := c.run
	defer c.close()
	codes := make(map[int]int64)
	defer func() {
		r.mu.Lock()
		for code, n := range codes {
			r.status[code] += n
		}
		r.mu.Unlock()
	}()
	for !r.stopped.Load() && r.next.Add(1) <= int64(r.cfg.Requests) {
		if c.conn == nil {
			if err := c.connect(); err != nil {
				r.errs.add(fmt.Errorf("connecting: %w", err))
				return
			}
		}
		code, err := c.do()
		if err != nil {
			c.close()
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				if r.stopped.Load() || (!r.deadline.IsZero() && !time.Now().Before(r.deadline)) {
					// Cut short by the -duration ceiling, not the server.
					r.next.Add(-1)
					return
				}
				r.timeouts.Add(1)
			} else {
				r.errs.add(err)
			}
			continue
		}
		codes[code]++
		r.completed.Add(1)
		if code >= 200 && code < 300 {
			r.okCount.Add(1)
		}
	}
}

// do makes one request on the open connection.
func (c *httpConn) do() (int, error) {
	r := c.run
	start := time.Now()
	deadline := start.Add(r.cfg.Timeout)
	if !r.deadline.IsZero() && r.deadline.Before(deadline) {
		deadline = r.deadline
	}
	c.conn.SetDeadline(deadline)
	if _, err := c.conn.Write(r.request); err != nil {
		return 0, fmt.Errorf("writing request: %w", err)
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return 0, fmt.Errorf("reading response: %w", err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return 0, fmt.Errorf("reading response body: %w", err)
	}
	r.lat.Record(time.Since(start))
	r.bodyBytes.Add(n)
	if resp.Close {
		c.close()
	}
	return resp.StatusCode, nil
}

// statusLine formats status counts as "200×19990 503×10", by code.
func statusLine(m map[string]int64) string {
	codes := make([]string, 0, len(m))
	for c := range m {
		codes = append(codes, c)
	}
	sort.Strings(codes)
	parts := make([]string, len(codes))
	for i, c := range codes {
		parts[i] = fmt.Sprintf("%s×%d", c, m[c])
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " ")
}
