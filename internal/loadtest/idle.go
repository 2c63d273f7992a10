package loadtest

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// Defaults of IdleConfig's zero fields.
const (
	DefaultHold  = 10 * time.Second
	DefaultBatch = 100
	DefaultRamp  = 10 * time.Millisecond
)

// IdleConfig configures RunIdle. Zero Hold, Batch and Ramp mean their
// defaults; ServerPID is required.
type IdleConfig struct {
	Common
	// Conns is the number of connections to open and hold (-c).
	Conns int
	// Hold is the settle period after the last connection opened, at the
	// end of which the server's memory is read again (default 10s).
	Hold time.Duration
	// Batch is how many connections are opened at once (default 100).
	Batch int
	// Ramp is the pause between batches (default 10ms; negative: none).
	Ramp time.Duration
	// Warn receives warnings about limits as soon as they are known (they
	// are in the report too); nil means only the report.
	Warn func(string)
}

func (c *IdleConfig) check() error {
	c.setDefaults()
	_, urlErr := checkURL(c.URL, "ws", "wss")
	if c.Hold <= 0 {
		c.Hold = DefaultHold
	}
	if c.Batch == 0 {
		c.Batch = DefaultBatch
	}
	if c.Ramp < 0 {
		c.Ramp = 0
	} else if c.Ramp == 0 {
		c.Ramp = DefaultRamp
	}
	var pidErr error
	if c.ServerPID <= 0 {
		pidErr = invalid("the server's process ID (-pid) is required: idle measures the server's memory")
	} else if _, err := ReadRSS(c.ServerPID); err != nil {
		pidErr = invalid("-pid %d: %v", c.ServerPID, err)
	}
	return configError(urlErr,
		atLeast("connections (-c)", c.Conns, 1),
		atLeast("batch (-batch)", c.Batch, 1),
		pidErr,
	)
}

// IdleReport is the outcome of RunIdle. Memory figures are the server's
// resident set (VmRSS) in KiB; per-connection figures divide its growth by
// the connections that were open.
type IdleReport struct {
	Mode          string `json:"mode"`
	URL           string `json:"url"`
	PID           int    `json:"pid"`
	Conns         int    `json:"conns"`
	Connected     int    `json:"connected"`
	ConnectErrors int64  `json:"connect_errors"`
	// Dropped counts connections the server closed during the hold.
	Dropped    int64 `json:"dropped"`
	OpenAtEnd  int   `json:"open_at_end"`
	RSSBefore  int64 `json:"rss_before_kib"`
	RSSOpen    int64 `json:"rss_open_kib"`
	RSSSettled int64 `json:"rss_settled_kib"`
	// PerConnKiB is (RSSOpen - RSSBefore) / Connected, just after opening.
	PerConnKiB float64 `json:"per_conn_kib"`
	// PerConnSettledKiB is (RSSSettled - RSSBefore) / OpenAtEnd, after the hold.
	PerConnSettledKiB float64 `json:"per_conn_settled_kib"`
	// FDsBefore and FDsOpen are the server's open files (-1: unreadable).
	FDsBefore         int      `json:"fds_before"`
	FDsOpen           int      `json:"fds_open"`
	OpenSec           float64  `json:"open_s"`
	ConnectsPerSec    float64  `json:"connects_per_sec"`
	HoldSec           float64  `json:"hold_s"`
	Connect           Latency  `json:"connect"`
	NoFileLimit       uint64   `json:"nofile_limit"`
	Warnings          []string `json:"warnings,omitempty"`
	StoppedEarly      string   `json:"stopped_early,omitempty"`
	FirstConnectError string   `json:"first_connect_error,omitempty"`
	Client            Usage    `json:"client"`
}

// RunIdle opens cfg.Conns connections in batches, holds them idle, and
// reports how much the server's memory grew per connection. It raises its
// own open-files limit as far as allowed and warns when the client's or
// the server's limits, or the local port range, cannot fit the run. It
// returns an error wrapping ErrInvalidConfig for a bad configuration and
// ErrConnect when the first connection fails.
func RunIdle(ctx context.Context, cfg IdleConfig) (*IdleReport, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	rep := &IdleReport{Mode: "idle", URL: cfg.URL, PID: cfg.ServerPID, Conns: cfg.Conns, FDsBefore: -1, FDsOpen: -1}
	warn := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		rep.Warnings = append(rep.Warnings, msg)
		if cfg.Warn != nil {
			cfg.Warn(msg)
		}
	}
	checkLimits(cfg, rep, warn)

	d := newWSDialer(cfg.Timeout, 0)
	// Probe first, so that an unreachable server is an error, not a report.
	probe, _, err := d.dial(ctx, cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConnect, err)
	}
	probe.CloseNow()
	time.Sleep(100 * time.Millisecond) // let the server release the probe

	if rep.RSSBefore, err = ReadRSS(cfg.ServerPID); err != nil {
		return nil, fmt.Errorf("reading the server's memory: %w", err)
	}
	if n, err := countFDs(cfg.ServerPID); err == nil {
		rep.FDsBefore = n
	}

	conns := make([]*websocket.Conn, cfg.Conns)
	defer func() { closeAll(conns, 2*time.Second) }()
	var (
		opened, dropped atomic.Int64
		connErrs        errorLog
		hist            Histogram
		finishing       atomic.Bool
	)
	prog := startProgress(cfg.Progress, cfg.ProgressEvery, "idle", func() string {
		rss, _ := ReadRSS(cfg.ServerPID)
		return fmt.Sprintf("open %d/%d  failed %d  dropped %d  server RSS %d KiB", opened.Load()-dropped.Load(), cfg.Conns, connErrs.count(), dropped.Load(), rss)
	})
	defer prog.stop()
	meter := startUsage(0)
	start := time.Now()
	for lo := 0; lo < cfg.Conns && ctx.Err() == nil; lo += cfg.Batch {
		if lo > 0 && cfg.Ramp > 0 {
			select {
			case <-time.After(cfg.Ramp):
			case <-ctx.Done():
			}
		}
		var wg sync.WaitGroup
		for i := lo; i < min(lo+cfg.Batch, cfg.Conns) && ctx.Err() == nil; i++ {
			wg.Go(func() {
				c, took, err := d.dial(ctx, cfg.URL)
				if err != nil {
					if ctx.Err() == nil {
						connErrs.add(err)
					}
					return
				}
				hist.Record(took)
				conns[i] = c
				opened.Add(1)
				// CloseRead answers pings and notices a close from the
				// server, which counts as a drop.
				closed := c.CloseRead(context.Background())
				context.AfterFunc(closed, func() {
					if !finishing.Load() {
						dropped.Add(1)
					}
				})
			})
		}
		wg.Wait()
	}
	openTook := time.Since(start)
	rep.Connected = int(opened.Load())
	rep.ConnectErrors = connErrs.count()
	rep.FirstConnectError = connErrs.firstString()
	rep.Connect = hist.Summary()
	rep.OpenSec = openTook.Seconds()
	rep.ConnectsPerSec = rate(int64(rep.Connected), rep.OpenSec)
	if ctx.Err() != nil {
		rep.StoppedEarly = stopReason(ctx, cfg.Duration, "while connecting")
	}
	if rep.RSSOpen, err = ReadRSS(cfg.ServerPID); err != nil {
		warn("the server's memory with all connections open is unknown: %v", err)
	}
	if n, err := countFDs(cfg.ServerPID); err == nil {
		rep.FDsOpen = n
	}

	holdStart := time.Now()
	select {
	case <-time.After(cfg.Hold):
	case <-ctx.Done():
		if rep.StoppedEarly == "" {
			rep.StoppedEarly = stopReason(ctx, cfg.Duration, "during the hold")
		}
	}
	rep.HoldSec = time.Since(holdStart).Seconds()
	if rep.RSSSettled, err = ReadRSS(cfg.ServerPID); err != nil {
		warn("the server's memory after the hold is unknown: %v", err)
	}
	finishing.Store(true)
	prog.stop()
	rep.Client, _ = meter.stop()
	rep.Dropped = dropped.Load()
	rep.OpenAtEnd = rep.Connected - int(rep.Dropped)
	if rep.Connected > 0 && rep.RSSOpen > 0 {
		rep.PerConnKiB = float64(rep.RSSOpen-rep.RSSBefore) / float64(rep.Connected)
	}
	if rep.OpenAtEnd > 0 && rep.RSSSettled > 0 {
		rep.PerConnSettledKiB = float64(rep.RSSSettled-rep.RSSBefore) / float64(rep.OpenAtEnd)
	}
	return rep, nil
}

// checkLimits raises the client's open-files limit and warns about every
// limit the run will not fit in.
func checkLimits(cfg IdleConfig, rep *IdleReport, warn func(string, ...any)) {
	const spare = 64 // files the client needs besides its sockets
	need := uint64(cfg.Conns + spare)
	selfServed := cfg.ServerPID == os.Getpid()
	if selfServed {
		need += uint64(cfg.Conns) // both ends of every connection are ours
	}
	soft, hard, err := raiseNoFile(need)
	rep.NoFileLimit = soft
	switch {
	case err != nil && soft == 0:
		warn("cannot read the open-files limit: %v", err)
	case soft < need:
		warn("-c %d needs %d open files but RLIMIT_NOFILE is %d (hard limit %d); expect connection failures (raise it with ulimit -n)", cfg.Conns, need, soft, hard)
	}
	if !selfServed {
		if lim, err := processNoFile(cfg.ServerPID); err == nil && lim < uint64(cfg.Conns+spare) {
			warn("-c %d exceeds the server's open-files limit (%d); expect connection failures", cfg.Conns, lim)
		}
	}
	if ports, err := ephemeralPorts(); err == nil && cfg.Conns > ports {
		warn("-c %d exceeds the %d local ports available to one destination (net.ipv4.ip_local_port_range)", cfg.Conns, ports)
	}
}
