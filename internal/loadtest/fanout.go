package loadtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// DefaultGrace is how long a fanout run waits, after the last send, for
// deliveries to resume before counting what is missing as lost.
const DefaultGrace = 5 * time.Second

// FanoutConfig configures RunFanout. Zero Size, Grace and DialConcurrency
// mean their defaults.
type FanoutConfig struct {
	Common
	// Subscribers is the number of connections in the room (-s).
	Subscribers int
	// Messages is the number of frames the publisher sends (-m).
	Messages int
	// Rate is the publisher's pace in frames per second; 0 sends as fast
	// as the connection accepts them.
	Rate float64
	// Size is the frame size in bytes (default 64).
	Size int
	// Grace is how long deliveries may stall after the last send before
	// the missing ones are counted as lost (default 5s).
	Grace time.Duration
	// Room is the room name; empty picks a random one, so that runs never
	// see each other's frames.
	Room string
	// DialConcurrency bounds the handshakes in progress at once (default 32).
	DialConcurrency int
}

func (c *FanoutConfig) check() error {
	c.setDefaults()
	_, urlErr := checkURL(c.URL, "ws", "wss")
	if c.Size == 0 {
		c.Size = defaultSize
	}
	if c.Grace <= 0 {
		c.Grace = DefaultGrace
	}
	if c.DialConcurrency == 0 {
		c.DialConcurrency = defaultDialParallel
	}
	var rateErr error
	if c.Rate < 0 {
		rateErr = invalid("rate (-rate) must not be negative, got %g", c.Rate)
	}
	var roomErr error
	if strings.ContainsAny(c.Room, "/?#") {
		roomErr = invalid("room %q must not contain '/', '?' or '#'", c.Room)
	}
	return configError(urlErr,
		atLeast("subscribers (-s)", c.Subscribers, 1),
		atLeast("messages (-m)", c.Messages, 1),
		atLeast("frame size (-size)", c.Size, 1),
		atMost("frame size (-size)", c.Size, maxSize),
		atLeast("dial concurrency", c.DialConcurrency, 1),
		rateErr, roomErr,
	)
}

// FanoutReport is the outcome of RunFanout. Expected is Connected × Sent;
// Received counts distinct frames per subscriber, so Received + Lost =
// Expected, and duplicates are counted apart.
type FanoutReport struct {
	Mode          string  `json:"mode"`
	URL           string  `json:"url"`
	Room          string  `json:"room"`
	Subscribers   int     `json:"subscribers"`
	Connected     int     `json:"connected"`
	ConnectErrors int64   `json:"connect_errors"`
	Joined        int     `json:"joined"`
	Messages      int     `json:"messages"`
	Rate          float64 `json:"rate,omitempty"`
	FrameBytes    int     `json:"frame_bytes"`
	Sent          int64   `json:"sent"`
	Expected      int64   `json:"expected"`
	Received      int64   `json:"received"`
	Lost          int64   `json:"lost"`
	Reordered     int64   `json:"reordered"`
	Duplicates    int64   `json:"duplicates"`
	Errors        int64   `json:"errors"`
	// Disconnects counts subscribers the server closed during the run.
	Disconnects int64 `json:"disconnects"`
	// ElapsedSec runs from the first send to the last delivery.
	ElapsedSec       float64 `json:"elapsed_s"`
	DeliveriesPerSec float64 `json:"deliveries_per_sec"`
	// SendSec runs from the first send to the last.
	SendSec  float64 `json:"send_s"`
	SendRate float64 `json:"send_rate"`
	// Latency is the delivery latency: receive time minus the frame's t.
	Latency           Latency `json:"latency"`
	Connect           Latency `json:"connect"`
	StoppedEarly      string  `json:"stopped_early,omitempty"`
	FirstError        string  `json:"first_error,omitempty"`
	FirstConnectError string  `json:"first_connect_error,omitempty"`
	Client            Usage   `json:"client"`
	Server            *Usage  `json:"server,omitempty"`
}

// subscriber is one connection in the room. Its counters belong to its
// reader goroutine until that returns.
type subscriber struct {
	c          *websocket.Conn
	seen       []uint64 // bitset of sequence numbers received
	last       int64
	received   int64
	reordered  int64
	duplicates int64
	lastRecv   int64 // Unix ns of the last counted delivery
	ready      atomic.Bool
}

type fanoutRun struct {
	cfg         FanoutConfig
	pubID       int64
	lat         Histogram
	received    atomic.Int64 // distinct deliveries so far, all subscribers
	target      int64        // Connected × Messages
	done        chan struct{}
	doneOnce    sync.Once
	readyCount  atomic.Int64
	allReady    chan struct{}
	finishing   atomic.Bool
	errs        errorLog
	disconnects atomic.Int64
}

// RunFanout connects cfg.Subscribers to one room, makes sure each of them
// hears the publisher, then has the publisher send cfg.Messages frames and
// measures how fast and how completely they are delivered. It returns an
// error wrapping ErrInvalidConfig for a bad configuration and ErrConnect
// when the first subscriber (or the publisher) cannot connect; everything
// else is counted in the report.
func RunFanout(ctx context.Context, cfg FanoutConfig) (*FanoutReport, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if cfg.Room == "" {
		var b [6]byte
		rand.Read(b[:])
		cfg.Room = "load-" + hex.EncodeToString(b[:])
	}
	u := strings.TrimSuffix(cfg.URL, "/") + "/" + cfg.Room + "/"
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()

	r := &fanoutRun{cfg: cfg, pubID: int64(cfg.Subscribers), done: make(chan struct{}), allReady: make(chan struct{})}
	rep := &FanoutReport{
		Mode: "fanout", URL: u, Room: cfg.Room, Subscribers: cfg.Subscribers,
		Messages: cfg.Messages, Rate: cfg.Rate,
		FrameBytes: len(AppendFrame(nil, int64(cfg.Messages), time.Now().UnixNano(), r.pubID, cfg.Size)),
	}
	d := newWSDialer(cfg.Timeout, cfg.Size)

	var connectHist Histogram
	conns, connErrs, err := dialAll(ctx, d, u, cfg.Subscribers, cfg.DialConcurrency, &connectHist, cfg.Common, "fanout")
	if err != nil {
		return nil, err
	}
	rep.Connected = len(conns)
	rep.ConnectErrors = connErrs.count()
	rep.FirstConnectError = connErrs.firstString()
	r.target = int64(len(conns)) * int64(cfg.Messages)

	subs := make([]*subscriber, len(conns))
	var readers sync.WaitGroup
	for i, c := range conns {
		s := &subscriber{c: c, seen: make([]uint64, (cfg.Messages+63)/64), last: -1}
		subs[i] = s
		readers.Go(func() { r.read(s, len(conns)) })
	}
	var pubConn atomic.Pointer[websocket.Conn]
	all := func() []*websocket.Conn {
		if p := pubConn.Load(); p != nil {
			return append(conns[:len(conns):len(conns)], p)
		}
		return conns
	}
	// finish closes every connection and waits for the readers, after
	// which the subscribers' counters may be read.
	finish := sync.OnceFunc(func() {
		r.finishing.Store(true)
		closeAll(all(), 2*time.Second)
		readers.Wait()
	})
	defer finish()
	stopAfter := context.AfterFunc(ctx, func() {
		r.finishing.Store(true)
		for _, c := range all() {
			c.CloseNow()
		}
	})
	defer stopAfter()

	var pub *websocket.Conn
	if ctx.Err() == nil {
		var took time.Duration
		pub, took, err = d.dial(ctx, u)
		if err != nil {
			if ctx.Err() == nil {
				return nil, fmt.Errorf("%w: publisher: %w", ErrConnect, err)
			}
		} else {
			pubConn.Store(pub)
			connectHist.Record(took)
			// The publisher is in the room too; drain what comes back.
			readers.Go(func() { r.drain(pub) })
		}
	}
	rep.Connect = connectHist.Summary()
	if ctx.Err() != nil {
		rep.StoppedEarly = stopReason(ctx, cfg.Duration, "while connecting")
		return rep, nil
	}

	prog := startProgress(cfg.Progress, cfg.ProgressEvery, "fanout", func() string {
		return fmt.Sprintf("joined %d/%d  deliveries %d/%d  errors %d", r.readyCount.Load(), len(conns), r.received.Load(), r.target, r.errs.count())
	})
	defer prog.stop()

	rep.Joined = r.probe(ctx, pub, len(conns))

	meter := startUsage(cfg.ServerPID)
	t0 := time.Now()
	sent, lastSend, err := r.publish(ctx, pub)
	if err != nil && ctx.Err() == nil {
		r.errs.add(fmt.Errorf("publisher: %w", err))
	}
	r.wait(ctx, meter)
	rep.Client, rep.Server = meter.stop()
	prog.stop()
	finish()

	rep.Sent = sent
	rep.Expected = int64(len(conns)) * sent
	var lastRecv int64
	for _, s := range subs {
		rep.Received += s.received
		rep.Reordered += s.reordered
		rep.Duplicates += s.duplicates
		lastRecv = max(lastRecv, s.lastRecv)
	}
	rep.Lost = rep.Expected - rep.Received
	rep.Errors = r.errs.count()
	rep.FirstError = r.errs.firstString()
	rep.Disconnects = r.disconnects.Load()
	if lastRecv > 0 {
		rep.ElapsedSec = time.Duration(lastRecv - t0.UnixNano()).Seconds()
	}
	rep.DeliveriesPerSec = rate(rep.Received, rep.ElapsedSec)
	rep.SendSec = lastSend.Sub(t0).Seconds()
	rep.SendRate = rate(sent, rep.SendSec)
	rep.Latency = r.lat.Summary()
	if ctx.Err() != nil && rep.Received < rep.Expected {
		rep.StoppedEarly = stopReason(ctx, cfg.Duration, "")
	}
	return rep, nil
}

// probe sends probe frames (negative seq) every 100 ms until every
// subscriber has heard one or the timeout passes. This proves membership
// however the server orders its handshake and its join.
func (r *fanoutRun) probe(ctx context.Context, pub *websocket.Conn, n int) int {
	deadline := time.NewTimer(r.cfg.Timeout)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var buf []byte
	for seq := int64(-1); ; seq-- {
		buf = AppendFrame(buf[:0], seq, time.Now().UnixNano(), r.pubID, r.cfg.Size)
		if err := pub.Write(context.Background(), websocket.MessageText, buf); err != nil {
			break
		}
		select {
		case <-r.allReady:
		case <-ctx.Done():
		case <-deadline.C:
		case <-tick.C:
			continue
		}
		break
	}
	return int(r.readyCount.Load())
}

// publish sends the frames, paced when a rate is set, and returns how many
// were sent and when the last one was.
func (r *fanoutRun) publish(ctx context.Context, pub *websocket.Conn) (int64, time.Time, error) {
	bg := context.Background()
	buf := make([]byte, 0, r.cfg.Size+64)
	start := time.Now()
	last := start
	for seq := range int64(r.cfg.Messages) {
		if r.cfg.Rate > 0 {
			due := start.Add(time.Duration(float64(seq) / r.cfg.Rate * float64(time.Second)))
			if wait := time.Until(due); wait > 0 {
				select {
				case <-time.After(wait):
				case <-ctx.Done():
				}
			}
		}
		if ctx.Err() != nil {
			return seq, last, nil
		}
		now := time.Now()
		buf = AppendFrame(buf[:0], seq, now.UnixNano(), r.pubID, r.cfg.Size)
		if err := pub.Write(bg, websocket.MessageText, buf); err != nil {
			return seq, last, err
		}
		last = now
	}
	return int64(r.cfg.Messages), last, nil
}

// wait returns when every delivery has arrived, when deliveries have
// stalled for the grace period, or when ctx is done. It marks the meter
// whenever deliveries progress, so that CPU use is reported up to the last
// delivery seen, not over the grace period.
func (r *fanoutRun) wait(ctx context.Context, meter *usageMeter) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	seen, since := r.received.Load(), time.Now()
	for {
		select {
		case <-r.done:
			meter.mark()
			return
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if n := r.received.Load(); n != seen {
			seen, since = n, time.Now()
			meter.mark()
		} else if time.Since(since) > r.cfg.Grace {
			return
		}
	}
}

// read is a subscriber's reader goroutine.
func (r *fanoutRun) read(s *subscriber, n int) {
	var buf []byte
	for {
		var err error
		buf, err = readMessage(s.c, buf)
		if err != nil {
			if !r.finishing.Load() {
				r.disconnects.Add(1)
				r.errs.add(fmt.Errorf("subscriber closed: %w", err))
			}
			return
		}
		now := time.Now().UnixNano()
		f, err := ParseFrame(buf)
		if err != nil {
			r.errs.add(err)
			continue
		}
		if f.Src != r.pubID {
			r.errs.add(fmt.Errorf("frame from unknown client %d in the room", f.Src))
			continue
		}
		if f.Seq < 0 {
			if s.ready.CompareAndSwap(false, true) && r.readyCount.Add(1) == int64(n) {
				close(r.allReady)
			}
			continue
		}
		if f.Seq >= int64(r.cfg.Messages) {
			r.errs.add(fmt.Errorf("frame %d was never sent", f.Seq))
			continue
		}
		word, bit := f.Seq/64, uint64(1)<<(f.Seq%64)
		if s.seen[word]&bit != 0 {
			s.duplicates++
			continue
		}
		s.seen[word] |= bit
		if f.Seq < s.last {
			s.reordered++
		}
		s.last = f.Seq
		s.received++
		s.lastRecv = now
		r.lat.Record(time.Duration(now - f.T))
		if r.received.Add(1) == r.target {
			r.doneOnce.Do(func() { close(r.done) })
		}
	}
}

// drain reads and discards what the publisher receives from its own room.
func (r *fanoutRun) drain(c *websocket.Conn) {
	var buf []byte
	for {
		var err error
		if buf, err = readMessage(c, buf); err != nil {
			return
		}
	}
}
