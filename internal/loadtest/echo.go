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

// EchoConfig configures RunEcho. Zero Size, Pipeline and DialConcurrency
// mean their defaults.
type EchoConfig struct {
	Common
	// Conns is the number of connections (-c), at least 1.
	Conns int
	// Messages is the number of round trips each connection makes (-n).
	Messages int
	// Size is the frame size in bytes (default 64).
	Size int
	// Pipeline is how many frames a connection keeps in flight (default 1:
	// send, wait for the echo, send the next).
	Pipeline int
	// DialConcurrency bounds the handshakes in progress at once (default 32).
	DialConcurrency int
}

func (c *EchoConfig) check() error {
	c.setDefaults()
	_, urlErr := checkURL(c.URL, "ws", "wss")
	if c.Size == 0 {
		c.Size = defaultSize
	}
	if c.Pipeline == 0 {
		c.Pipeline = 1
	}
	if c.DialConcurrency == 0 {
		c.DialConcurrency = defaultDialParallel
	}
	return configError(urlErr,
		atLeast("connections (-c)", c.Conns, 1),
		atLeast("messages per connection (-n)", c.Messages, 1),
		atLeast("frame size (-size)", c.Size, 1),
		atLeast("pipeline (-pipeline)", c.Pipeline, 1),
		atLeast("dial concurrency", c.DialConcurrency, 1),
		atMost("frame size (-size)", c.Size, maxSize),
	)
}

func atMost(name string, v, hi int) error {
	if v > hi {
		return invalid("%s must be at most %d, got %d", name, hi, v)
	}
	return nil
}

// EchoReport is the outcome of RunEcho. Completed + the round trips lost to
// errors, timeouts or an early stop make up Expected.
type EchoReport struct {
	Mode            string  `json:"mode"`
	URL             string  `json:"url"`
	Conns           int     `json:"conns"`
	Connected       int     `json:"connected"`
	ConnectErrors   int64   `json:"connect_errors"`
	MessagesPerConn int     `json:"messages_per_conn"`
	FrameBytes      int     `json:"frame_bytes"`
	Pipeline        int     `json:"pipeline"`
	Expected        int64   `json:"expected"`
	Completed       int64   `json:"completed"`
	Errors          int64   `json:"errors"`
	Timeouts        int64   `json:"timeouts"`
	ElapsedSec      float64 `json:"elapsed_s"`
	MsgsPerSec      float64 `json:"msgs_per_sec"`
	// Latency is the round-trip time: echo received minus frame sent.
	Latency Latency `json:"latency"`
	// Connect is the WebSocket handshake time (TCP connect included).
	Connect           Latency `json:"connect"`
	StoppedEarly      string  `json:"stopped_early,omitempty"`
	FirstError        string  `json:"first_error,omitempty"`
	FirstConnectError string  `json:"first_connect_error,omitempty"`
	Client            Usage   `json:"client"`
	Server            *Usage  `json:"server,omitempty"`
}

// echoConn is one client connection and what the timeout watchdog needs to
// know about it.
type echoConn struct {
	id          int64
	c           *websocket.Conn
	outstanding atomic.Int32
	lastEvent   atomic.Int64 // ns since the run's base time
	timedOut    atomic.Bool
	failed      atomic.Bool
}

type echoRun struct {
	cfg       EchoConfig
	ctx       context.Context
	base      time.Time
	lat       Histogram
	completed atomic.Int64
	errs      errorLog
	timeouts  atomic.Int64
	stopped   atomic.Bool // ctx is done; cheaper to poll than ctx.Err
}

// RunEcho opens cfg.Conns connections to an echo endpoint, then has each of
// them make cfg.Messages round trips at once, and reports throughput and
// round-trip latency. It returns an error wrapping ErrInvalidConfig for a
// bad configuration and ErrConnect when not even one connection opens;
// everything else (failed connections, errors, timeouts, the -duration
// ceiling) is counted in the report.
func RunEcho(ctx context.Context, cfg EchoConfig) (*EchoReport, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()

	r := &echoRun{cfg: cfg, ctx: ctx, base: time.Now()}
	d := newWSDialer(cfg.Timeout, cfg.Size)
	rep := &EchoReport{
		Mode: "echo", URL: cfg.URL, Conns: cfg.Conns, MessagesPerConn: cfg.Messages,
		FrameBytes: len(AppendFrame(nil, 0, time.Now().UnixNano(), int64(cfg.Conns), cfg.Size)),
		Pipeline:   cfg.Pipeline, Expected: int64(cfg.Conns) * int64(cfg.Messages),
	}

	var connectHist Histogram
	conns, connErrs, err := dialAll(ctx, d, cfg.URL, cfg.Conns, cfg.DialConcurrency, &connectHist, cfg.Common, "echo")
	if err != nil {
		return nil, err
	}
	defer func() { closeAll(conns, 2*time.Second) }()
	rep.Connected = len(conns)
	rep.ConnectErrors = connErrs.count()
	rep.FirstConnectError = connErrs.firstString()
	rep.Connect = connectHist.Summary()
	if ctx.Err() != nil {
		rep.StoppedEarly = stopReason(ctx, cfg.Duration, "while connecting")
		return rep, nil
	}

	ecs := make([]*echoConn, len(conns))
	for i, c := range conns {
		ecs[i] = &echoConn{id: int64(i), c: c}
	}
	// Stopping the run closes the connections, which unblocks their reads
	// and writes without a context on every call.
	stopAfter := context.AfterFunc(ctx, func() {
		r.stopped.Store(true)
		for _, c := range conns {
			c.CloseNow()
		}
	})
	defer stopAfter()

	prog := startProgress(cfg.Progress, cfg.ProgressEvery, "echo", func() string {
		return fmt.Sprintf("round trips %d/%d  errors %d  timeouts %d", r.completed.Load(), rep.Expected, r.errs.count(), r.timeouts.Load())
	})
	defer prog.stop()

	watchDone := make(chan struct{})
	var watchWG sync.WaitGroup
	watchWG.Go(func() { r.watchdog(ecs, watchDone) })

	meter := startUsage(cfg.ServerPID)
	start := time.Now()
	var wg sync.WaitGroup
	for _, ec := range ecs {
		if cfg.Pipeline == 1 {
			wg.Go(func() { r.lockstep(ec) })
		} else {
			wg.Go(func() { r.pipelined(ec) })
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	rep.Client, rep.Server = meter.stop()
	close(watchDone)
	watchWG.Wait()
	prog.stop()

	rep.Completed = r.completed.Load()
	rep.Errors = r.errs.count()
	rep.Timeouts = r.timeouts.Load()
	rep.FirstError = r.errs.firstString()
	rep.ElapsedSec = elapsed.Seconds()
	rep.MsgsPerSec = rate(rep.Completed, rep.ElapsedSec)
	rep.Latency = r.lat.Summary()
	if ctx.Err() != nil && rep.Completed < int64(rep.Connected)*int64(cfg.Messages) {
		rep.StoppedEarly = stopReason(ctx, cfg.Duration, "")
	}
	return rep, nil
}

// now returns the monotonic time since the run's base.
func (r *echoRun) now() int64 { return int64(time.Since(r.base)) }

// fail counts the first failure of a connection: as a timeout when the
// watchdog closed it, as an error otherwise, and not at all when the run
// is stopping.
func (r *echoRun) fail(ec *echoConn, err error) {
	if !ec.failed.CompareAndSwap(false, true) {
		return
	}
	ec.c.CloseNow()
	switch {
	case ec.timedOut.Load():
		r.timeouts.Add(1)
	case r.ctx.Err() != nil:
	default:
		r.errs.add(fmt.Errorf("connection %d: %w", ec.id, err))
	}
}

// watchdog closes connections that have waited longer than the timeout for
// an echo. One goroutine for all connections keeps timers off the hot path.
func (r *echoRun) watchdog(ecs []*echoConn, done <-chan struct{}) {
	every := min(r.cfg.Timeout/4, 250*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		now := r.now()
		for _, ec := range ecs {
			if ec.outstanding.Load() > 0 && now-ec.lastEvent.Load() > int64(r.cfg.Timeout) &&
				ec.timedOut.CompareAndSwap(false, true) {
				ec.c.CloseNow()
			}
		}
	}
}

// check verifies that an echo carries the expected sequence number.
func (ec *echoConn) check(buf []byte, seq int64) error {
	f, err := ParseFrame(buf)
	if err != nil {
		return err
	}
	if f.Seq != seq || f.Src != ec.id {
		return fmt.Errorf("expected the echo of frame %d from client %d, got frame %d from client %d", seq, ec.id, f.Seq, f.Src)
	}
	return nil
}

// lockstep is one connection with a single frame in flight.
func (r *echoRun) lockstep(ec *echoConn) {
	bg := context.Background()
	out := make([]byte, 0, r.cfg.Size+64)
	in := make([]byte, 0, r.cfg.Size+64)
	for seq := range int64(r.cfg.Messages) {
		if r.stopped.Load() {
			return
		}
		sent := time.Now()
		out = AppendFrame(out[:0], seq, sent.UnixNano(), ec.id, r.cfg.Size)
		ec.lastEvent.Store(int64(sent.Sub(r.base)))
		ec.outstanding.Store(1)
		if err := ec.c.Write(bg, websocket.MessageText, out); err != nil {
			r.fail(ec, err)
			return
		}
		var err error
		if in, err = readMessage(ec.c, in); err != nil {
			r.fail(ec, err)
			return
		}
		lat := time.Since(sent)
		ec.outstanding.Store(0)
		if err := ec.check(in, seq); err != nil {
			r.fail(ec, err)
			return
		}
		r.lat.Record(lat)
		r.completed.Add(1)
	}
}

// pipelined is one connection with up to cfg.Pipeline frames in flight: a
// sender goroutine and this receiving one. Echoes come back in order, so a
// FIFO of send times pairs each echo with its frame.
func (r *echoRun) pipelined(ec *echoConn) {
	window := make(chan time.Time, r.cfg.Pipeline)
	done := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(done)
	wg.Go(func() {
		bg := context.Background()
		out := make([]byte, 0, r.cfg.Size+64)
		for seq := range int64(r.cfg.Messages) {
			sent := time.Now()
			select {
			case window <- sent:
			case <-done:
				return
			}
			if r.stopped.Load() {
				return
			}
			// The clock starts when the first frame goes out; it must be
			// set before the watchdog can see anything outstanding.
			if ec.outstanding.Load() == 0 {
				ec.lastEvent.Store(r.now())
			}
			ec.outstanding.Add(1)
			out = AppendFrame(out[:0], seq, time.Now().UnixNano(), ec.id, r.cfg.Size)
			if err := ec.c.Write(bg, websocket.MessageText, out); err != nil {
				r.fail(ec, err)
				return
			}
		}
	})
	in := make([]byte, 0, r.cfg.Size+64)
	for seq := range int64(r.cfg.Messages) {
		var err error
		if in, err = readMessage(ec.c, in); err != nil {
			r.fail(ec, err)
			return
		}
		var sent time.Time
		select {
		case sent = <-window:
		default:
			r.fail(ec, errors.New("received an echo of a frame not sent yet"))
			return
		}
		lat := time.Since(sent)
		ec.lastEvent.Store(r.now())
		ec.outstanding.Add(-1)
		if err := ec.check(in, seq); err != nil {
			r.fail(ec, err)
			return
		}
		r.lat.Record(lat)
		r.completed.Add(1)
	}
}

// dialAll opens n connections to u, at most parallel at a time. The first
// is opened alone: if it fails, the target is unreachable and dialAll
// returns an error wrapping ErrConnect. Later failures are counted in the
// returned log. It stops early, without error, when ctx is done.
func dialAll(ctx context.Context, d *wsDialer, u string, n, parallel int, hist *Histogram, cm Common, mode string) ([]*websocket.Conn, *errorLog, error) {
	var errs errorLog
	first, took, err := d.dial(ctx, u)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrConnect, err)
	}
	hist.Record(took)
	conns := make([]*websocket.Conn, n)
	conns[0] = first
	var opened atomic.Int64
	opened.Store(1)
	prog := startProgress(cm.Progress, cm.ProgressEvery, mode, func() string {
		return fmt.Sprintf("connecting %d/%d  failed %d", opened.Load(), n, errs.count())
	})
	defer prog.stop()

	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for i := 1; i < n; i++ {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			c, took, err := d.dial(ctx, u)
			if err != nil {
				if ctx.Err() == nil {
					errs.add(err)
				}
				return
			}
			hist.Record(took)
			conns[i] = c
			opened.Add(1)
		})
	}
	wg.Wait()
	ok := conns[:0]
	for _, c := range conns {
		if c != nil {
			ok = append(ok, c)
		}
	}
	return ok, &errs, nil
}
