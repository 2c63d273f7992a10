package loadtest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// ConnectConfig configures RunConnect. A zero Concurrency means its default.
type ConnectConfig struct {
	Common
	// Conns is the number of connections to open and close, one after the
	// other on each of Concurrency lanes (-n).
	Conns int
	// Concurrency is how many handshakes are in flight at once (-c,
	// default 32).
	Concurrency int
}

func (c *ConnectConfig) check() error {
	c.setDefaults()
	_, urlErr := checkURL(c.URL, "ws", "wss")
	if c.Concurrency == 0 {
		c.Concurrency = defaultDialParallel
	}
	return configError(urlErr,
		atLeast("connections (-n)", c.Conns, 1),
		atLeast("handshakes in flight (-c)", c.Concurrency, 1),
	)
}

// ConnectReport is the outcome of RunConnect. Every connection ends as
// exactly one of: completed (opened, then closed), failed, or timed out;
// those never started because of an early stop make up the rest of Conns.
type ConnectReport struct {
	Mode        string `json:"mode"`
	URL         string `json:"url"`
	Conns       int    `json:"conns"`
	Concurrency int    `json:"concurrency"`
	// Completed counts connections whose handshake succeeded; each was then
	// closed with a close handshake.
	Completed int64 `json:"completed"`
	// Failed counts handshakes that were refused or broke.
	Failed int64 `json:"failed"`
	// Timeouts counts handshakes with no answer within the timeout.
	Timeouts int64 `json:"timeouts"`
	// CloseErrors counts completed connections whose close handshake did
	// not finish cleanly within the timeout (the connection was dropped).
	CloseErrors    int64   `json:"close_errors"`
	ElapsedSec     float64 `json:"elapsed_s"`
	ConnectsPerSec float64 `json:"connects_per_sec"`
	// Handshake runs from dialing TCP to the 101 response (the server's
	// acceptance).
	Handshake Latency `json:"handshake"`
	// Close runs from sending the close frame to the server's answer.
	Close           Latency `json:"close"`
	StoppedEarly    string  `json:"stopped_early,omitempty"`
	FirstError      string  `json:"first_error,omitempty"`
	FirstCloseError string  `json:"first_close_error,omitempty"`
	Client          Usage   `json:"client"`
	Server          *Usage  `json:"server,omitempty"`
}

// connectRun is the shared state of RunConnect's lanes.
type connectRun struct {
	cfg                  ConnectConfig
	d                    *wsDialer
	handshake, closeHist Histogram
	completed, timeouts  atomic.Int64
	errs, closeErrs      errorLog
}

// RunConnect opens cfg.Conns WebSocket connections, cfg.Concurrency
// handshakes at a time, and closes each one (with a close handshake) as soon
// as it is open, reporting connects per second and the handshake latency.
// Each connection is a full WebSocket handshake that the server must
// accept. It returns an error wrapping ErrInvalidConfig for a bad
// configuration and ErrConnect when the first connection, opened alone,
// fails; later failures and timeouts are counted in the report.
func RunConnect(ctx context.Context, cfg ConnectConfig) (*ConnectReport, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	r := &connectRun{cfg: cfg, d: newWSDialer(cfg.Timeout, defaultSize)}
	rep := &ConnectReport{Mode: "connect", URL: cfg.URL, Conns: cfg.Conns, Concurrency: cfg.Concurrency}

	meter := startUsage(cfg.ServerPID)
	start := time.Now()
	// The first connection alone: if it fails, the target is unreachable.
	first, took, err := r.d.dial(ctx, cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConnect, err)
	}
	r.handshake.Record(took)
	r.completed.Add(1)
	r.close(first)

	var started atomic.Int64
	started.Store(1)
	prog := startProgress(cfg.Progress, cfg.ProgressEvery, "connect", func() string {
		return fmt.Sprintf("connects %d/%d  failed %d  timeouts %d", r.completed.Load(), cfg.Conns, r.errs.count(), r.timeouts.Load())
	})
	defer prog.stop()
	var wg sync.WaitGroup
	for range min(cfg.Concurrency, cfg.Conns-1) {
		wg.Go(func() {
			for ctx.Err() == nil && started.Add(1) <= int64(cfg.Conns) {
				r.one(ctx)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	rep.Client, rep.Server = meter.stop()
	prog.stop()

	rep.Completed = r.completed.Load()
	rep.Failed = r.errs.count()
	rep.Timeouts = r.timeouts.Load()
	rep.CloseErrors = r.closeErrs.count()
	rep.FirstError = r.errs.firstString()
	rep.FirstCloseError = r.closeErrs.firstString()
	rep.ElapsedSec = elapsed.Seconds()
	rep.ConnectsPerSec = rate(rep.Completed, rep.ElapsedSec)
	rep.Handshake = r.handshake.Summary()
	rep.Close = r.closeHist.Summary()
	if ctx.Err() != nil && rep.Completed+rep.Failed+rep.Timeouts < int64(cfg.Conns) {
		rep.StoppedEarly = stopReason(ctx, cfg.Duration, "")
	}
	return rep, nil
}

// one opens a connection and closes it again.
func (r *connectRun) one(ctx context.Context) {
	c, took, err := r.d.dial(ctx, r.cfg.URL)
	switch {
	case err == nil:
		r.handshake.Record(took)
		r.completed.Add(1)
		r.close(c)
	case ctx.Err() != nil:
		// The run is stopping: neither a failure nor a timeout.
	case errors.Is(err, context.DeadlineExceeded):
		r.timeouts.Add(1)
	default:
		r.errs.add(err)
	}
}

// close closes c with a close handshake, dropping the connection if the
// server has not answered within the timeout.
func (r *connectRun) close(c *websocket.Conn) {
	start := time.Now()
	t := time.AfterFunc(r.cfg.Timeout, func() { c.CloseNow() })
	err := c.Close(websocket.StatusNormalClosure, "")
	t.Stop()
	if err != nil {
		r.closeErrs.add(err)
		c.CloseNow()
		return
	}
	r.closeHist.Record(time.Since(start))
}
