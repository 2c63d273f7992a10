package delay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gochannels/channels"
)

// Defaults for the Server's zero fields.
const (
	DefaultPollInterval    = 5 * time.Second
	DefaultRetryFull       = time.Second
	DefaultBatchSize       = 256
	DefaultIntakeBatch     = 64
	DefaultSendConcurrency = 16
	DefaultDedupWindow     = time.Hour
	DefaultStepTimeout     = 10 * time.Second
	DefaultIntakeHold      = 10 * time.Second
)

// lockedWait is the pause before looking again when every due record is
// claimed by another server sharing the table.
const lockedWait = 20 * time.Millisecond

// Server is the delay server: it consumes "asgi.delay" messages from a layer,
// stores the valid ones, and sends each to its channel when it is due.
//
// Set the fields, then call Run. Layer and Store are required; the other
// zero values are working defaults. The Server works on any layer, the
// in-memory one included (runserver runs it in-process); a standalone delay
// process needs a layer that reaches other processes. Run must not be called
// again while it runs; Stats may be called at any time, concurrently.
type Server struct {
	// Layer is where "asgi.delay" messages come from and due messages go.
	Layer channels.Layer
	// Store keeps the scheduled messages.
	Store *Store
	// Logger receives the server's logs. Nil means slog.Default().
	Logger *slog.Logger

	// MaxDelay is the longest delay accepted; longer ones are rejected.
	// Zero means DefaultMaxDelay (30 days).
	MaxDelay time.Duration
	// PollInterval is how often the server looks at the store when its
	// timer has nothing earlier: a safety net for messages other servers
	// sharing the table added without the notification reaching this one.
	// Delivery itself is driven by a timer set to the next due message.
	// Zero means DefaultPollInterval.
	PollInterval time.Duration
	// RetryFull is how long a due message waits before it is sent again
	// when its channel was full (or the send failed otherwise). Zero means
	// DefaultRetryFull (1 s).
	RetryFull time.Duration
	// BatchSize is the most due messages sent in one store transaction.
	// Zero means DefaultBatchSize.
	BatchSize int
	// IntakeBatch is the most "asgi.delay" messages stored in one
	// transaction. It is also the most messages a crash of the server can
	// lose on a layer that cannot hold them (see the package
	// documentation), or deliver twice on one that can. Zero means
	// DefaultIntakeBatch.
	IntakeBatch int
	// SendConcurrency is how many channels due messages are sent to at
	// once; messages to one channel are sent one after another, earliest
	// due first. Zero means DefaultSendConcurrency.
	SendConcurrency int
	// DedupWindow is how long the ID of a delivered message that came with
	// its own ID (from SendConfirmed) is remembered, so that a repeated
	// request is not stored again. Zero means DefaultDedupWindow (1 h).
	DedupWindow time.Duration
	// StepTimeout bounds one step: storing a batch of received messages,
	// or sending a batch of due ones. After Run's context is done the
	// current step still finishes, within StepTimeout. Zero means
	// DefaultStepTimeout.
	StepTimeout time.Duration
	// IntakeHold is, on a layer that can hold received messages until
	// they are acknowledged (redislayer.Layer's ReceiveHeld), how long
	// "asgi.delay" messages received by a server that then fails to store
	// them (it crashed, or its database stayed down) stay held before they
	// go back to the channel for a server to receive again. Zero means
	// DefaultIntakeHold (10 s). See the package documentation, Guarantees.
	IntakeHold time.Duration

	received, stored, duplicates, lost, confirmed atomic.Uint64
	sent, rescheduled, sendFailures, dropped      atomic.Uint64
	storeErrors, receiveErrors                    atomic.Uint64
	rejected                                      rejections
	lateness                                      latencyHist
	running                                       atomic.Bool
	wake                                          chan struct{}
	plannedWake                                   atomic.Int64 // Unix µs the dispatcher sleeps until
	cfgOnce                                       sync.Once
	cfg                                           serverConfig

	// held maps a channel whose due messages were rescheduled (full, or
	// a failed send) to the times they were rescheduled to: messages for
	// it that fall due before the first of them is retried wait behind the
	// last, so that one channel's messages go out in due order across
	// rounds too.
	heldMu sync.Mutex
	held   map[string]retrySpan
}

type serverConfig struct {
	maxDelay, poll, retryFull, dedup, step time.Duration
	hold                                   time.Duration
	batch, intake, conc                    int
	log                                    *slog.Logger
}

func (s *Server) config() *serverConfig {
	s.cfgOnce.Do(func() {
		c := &s.cfg
		c.maxDelay = orDuration(s.MaxDelay, DefaultMaxDelay)
		c.poll = orDuration(s.PollInterval, DefaultPollInterval)
		c.retryFull = orDuration(s.RetryFull, DefaultRetryFull)
		c.dedup = orDuration(s.DedupWindow, DefaultDedupWindow)
		c.step = orDuration(s.StepTimeout, DefaultStepTimeout)
		c.hold = orDuration(s.IntakeHold, DefaultIntakeHold)
		c.batch = orInt(s.BatchSize, DefaultBatchSize)
		c.intake = orInt(s.IntakeBatch, DefaultIntakeBatch)
		c.conc = orInt(s.SendConcurrency, DefaultSendConcurrency)
		c.log = s.Logger
		if c.log == nil {
			c.log = slog.Default()
		}
		s.wake = make(chan struct{}, 1)
	})
	return &s.cfg
}

func orDuration(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func orInt(n, def int) int {
	if n > 0 {
		return n
	}
	return def
}

// Stats returns the server's counters. It may be called at any time.
func (s *Server) Stats() Stats {
	return Stats{
		Received:      s.received.Load(),
		Stored:        s.stored.Load(),
		Duplicates:    s.duplicates.Load(),
		Rejected:      s.rejected.snapshot(),
		Lost:          s.lost.Load(),
		Confirmed:     s.confirmed.Load(),
		Sent:          s.sent.Load(),
		Rescheduled:   s.rescheduled.Load(),
		SendFailures:  s.sendFailures.Load(),
		Dropped:       s.dropped.Load(),
		StoreErrors:   s.storeErrors.Load(),
		ReceiveErrors: s.receiveErrors.Load(),
		Lateness:      s.lateness.summary(),
	}
}

// Run receives "asgi.delay" messages and delivers due ones until ctx is
// done, then finishes the step in progress (storing what it has received,
// or committing the batch it is sending; each within StepTimeout) and
// returns nil. It returns an error at once when Layer or Store is missing,
// and when the layer or the store is closed. Invalid messages, full channels and
// failures of the layer or the database are logged, counted and retried;
// they never stop the server.
func (s *Server) Run(ctx context.Context) error {
	if s.Layer == nil || s.Store == nil {
		return errors.New("delay: Server.Layer and Server.Store are required")
	}
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("delay: Server.Run is already running")
	}
	defer s.running.Store(false)
	cfg := s.config()
	cfg.log.Info("delay: server started", "channel", Channel, "store", s.Store.String(), "layer", fmt.Sprint(s.Layer))

	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		fatal error
	)
	fail := func(err error) {
		mu.Lock()
		fatal = errors.Join(fatal, err)
		mu.Unlock()
		cancel(err)
	}
	wg.Go(func() { s.Store.listen(runCtx, s.notify) })
	wg.Go(func() {
		if err := s.intake(runCtx); err != nil {
			fail(err)
		}
	})
	wg.Go(func() {
		if err := s.dispatch(runCtx); err != nil {
			fail(err)
		}
	})
	wg.Wait()
	cfg.log.Info("delay: server stopped", "stats", s.Stats())
	return fatal
}

// notify wakes the dispatcher when a message due before its planned wake-up
// was stored. The zero time always wakes it.
func (s *Server) notify(due time.Time) {
	if !due.IsZero() && due.UnixMicro() >= s.plannedWake.Load() {
		return
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// lingering returns a context that is done d after ctx is, so that a step
// begun before ctx was done can finish.
func lingering(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(d, cancel) })
	return lctx, func() { stop(); cancel() }
}

// heldReceiver is a layer that can hold received messages until they are
// acknowledged (redislayer.Layer).
type heldReceiver interface {
	ReceiveHeld(ctx context.Context, channel string, max int, hold time.Duration) (ids []string, msgs []channels.Content, ack func(context.Context) error, err error)
}

// intake receives "asgi.delay" messages and stores them until ctx is done.
func (s *Server) intake(ctx context.Context) error {
	cfg := s.config()
	if hr, ok := s.Layer.(heldReceiver); ok {
		return s.intakeHeld(ctx, hr)
	}
	backoff := time.Duration(0)
	for {
		_, c, err := s.Layer.Receive(ctx, Channel)
		if err != nil {
			if stop, err := s.receiveFailed(ctx, cfg, err, &backoff); stop {
				return err
			}
			continue
		}
		backoff = 0
		if c == nil {
			continue
		}
		// From here until the commit in accept, these messages exist only
		// in this process: take what is already waiting and store it all
		// in one transaction, without waiting for more.
		batch := []channels.Content{c}
		for len(batch) < cfg.intake && ctx.Err() == nil {
			_, c, err := channels.Poll(ctx, s.Layer, Channel)
			if err != nil || c == nil {
				break
			}
			batch = append(batch, c)
		}
		s.received.Add(uint64(len(batch)))
		if _, err := s.accept(ctx, batch, nil); err != nil {
			return err
		}
	}
}

// receiveFailed handles an intake receive error: it counts and logs it and
// waits out a backoff that grows to 400 ms (so receiving resumes soon after
// the layer answers again). stop is true when intake must end, with the
// error to return (nil when ctx is done).
func (s *Server) receiveFailed(ctx context.Context, cfg *serverConfig, err error, backoff *time.Duration) (stop bool, _ error) {
	if ctx.Err() != nil {
		return true, nil
	}
	if errors.Is(err, channels.ErrLayerClosed) {
		return true, fmt.Errorf("delay: %w", err)
	}
	s.receiveErrors.Add(1)
	*backoff = min(max(2**backoff, 50*time.Millisecond), 400*time.Millisecond)
	cfg.log.Error("delay: receive failed; retrying", "error", err, "retry_in", *backoff)
	if sleep(ctx, *backoff) != nil {
		return true, nil
	}
	return false, nil
}

// intakeHeld is intake on a layer that holds what it hands out until it is
// acknowledged: a batch is acknowledged once it is stored (or rejected),
// so a server that dies, or cannot store it, leaves it to go back to the
// channel after IntakeHold. A request without its own "id" is stored
// under the ID the layer gives the message, which stays the same when the
// message comes back: a batch stored but not acknowledged before a crash
// is then not stored twice while the first copy waits in the store.
func (s *Server) intakeHeld(ctx context.Context, hr heldReceiver) error {
	cfg := s.config()
	backoff := time.Duration(0)
	for {
		ids, batch, ack, err := hr.ReceiveHeld(ctx, Channel, cfg.intake, cfg.hold)
		if err != nil {
			if stop, err := s.receiveFailed(ctx, cfg, err, &backoff); stop {
				return err
			}
			continue
		}
		backoff = 0
		if len(batch) == 0 {
			continue
		}
		s.received.Add(uint64(len(batch)))
		done, err := s.accept(ctx, batch, ids)
		if done {
			actx, cancel := lingering(ctx, cfg.step)
			if aerr := ack(actx); aerr != nil {
				// They go back after IntakeHold; their IDs keep them from
				// being stored twice while they wait in the store.
				cfg.log.Warn("delay: could not acknowledge stored messages; they will be received again", "count", len(batch), "error", aerr)
			}
			cancel()
		}
		if err != nil {
			return err
		}
	}
}

type confirmation struct {
	reply string
	c     channels.Content
}

// accept validates a batch of received messages, stores the valid ones and
// confirms to the producers that asked. ids, when not nil, are the layer's
// IDs of the messages (see intakeHeld), used for those without their own;
// the messages are then held by the layer, and are not lost when they
// cannot be stored. accept reports whether the batch was dealt with
// (stored or rejected), and returns an error only when the store is
// closed.
func (s *Server) accept(ctx context.Context, batch []channels.Content, ids []string) (bool, error) {
	cfg := s.config()
	now := time.Now()
	recs := make([]Record, 0, len(batch))
	var confirms []confirmation
	for i, c := range batch {
		r, rej := parseRequest(c, cfg.maxDelay)
		if rej != nil {
			s.rejected.add(rej.Reason)
			cfg.log.Error("delay: invalid message skipped", "reason", string(rej.Reason), "detail", rej.Detail, "keys", keys(c))
			if r.reply != "" {
				confirms = append(confirms, confirmation{r.reply, channels.Content{"id": r.id, "error": string(rej.Reason), "detail": rej.Detail}})
			}
			continue
		}
		rec := Record{ID: r.id, Channel: r.channel, Content: r.content, Due: now.Add(r.delay), Keep: r.id != ""}
		if rec.ID == "" && ids != nil {
			rec.ID = ids[i]
		}
		if rec.ID == "" {
			rec.ID = NewID()
		}
		recs = append(recs, rec)
		if r.reply != "" {
			confirms = append(confirms, confirmation{r.reply, channels.Content{"id": rec.ID, "stored": true}})
		}
	}
	if len(recs) > 0 {
		if stored, err := s.storeBatch(ctx, recs, ids != nil); !stored {
			return false, err // lost or held, and logged: confirming would be a lie
		}
		early := recs[0].Due
		for _, r := range recs[1:] {
			if r.Due.Before(early) {
				early = r.Due
			}
		}
		s.notify(early)
	}
	for _, cf := range confirms {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		err := s.Layer.Send(sctx, cf.reply, cf.c)
		cancel()
		if err != nil {
			// The producer sends the request again and is confirmed then.
			cfg.log.Warn("delay: could not confirm a message to its producer", "reply_channel", cf.reply, "error", err)
			continue
		}
		s.confirmed.Add(1)
	}
	return true, nil
}

func keys(c channels.Content) []string {
	out := make([]string, 0, len(c))
	for k := range c {
		out = append(out, k)
	}
	return out
}

// storeBatch adds recs to the store, retrying failures until it succeeds or
// StepTimeout has passed since ctx was done. It reports whether they were
// stored, and returns an error when the store is closed. Records that were
// not stored are lost, unless held by the layer (see intakeHeld).
func (s *Server) storeBatch(ctx context.Context, recs []Record, held bool) (bool, error) {
	cfg := s.config()
	lctx, cancel := lingering(ctx, cfg.step)
	defer cancel()
	backoff := time.Duration(0)
	for {
		actx, acancel := context.WithTimeout(lctx, cfg.step)
		n, err := s.Store.Add(actx, recs...)
		acancel()
		if err == nil {
			s.stored.Add(uint64(n))
			s.duplicates.Add(uint64(len(recs) - n))
			return true, nil
		}
		s.storeErrors.Add(1)
		backoff = min(max(2*backoff, 50*time.Millisecond), 5*time.Second)
		if closed := errors.Is(err, ErrStoreClosed); closed || sleep(lctx, backoff) != nil {
			if held {
				cfg.log.Error("delay: received messages could not be stored before the server stopped; the layer gives them back to the channel", "count", len(recs), "error", err, "after", cfg.hold)
			} else {
				s.lost.Add(uint64(len(recs)))
				cfg.log.Error("delay: LOST received messages: they could not be stored before the server stopped", "count", len(recs), "error", err)
			}
			if closed {
				return false, err
			}
			return false, nil
		}
		cfg.log.Error("delay: storing received messages failed; retrying (they exist only in this process until stored)", "count", len(recs), "error", err, "retry_in", backoff)
	}
}

// dispatch sends due messages until ctx is done. It returns an error only
// when the store is closed.
func (s *Server) dispatch(ctx context.Context) error {
	cfg := s.config()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	lastPurge := time.Now()
	backoff := time.Duration(0)
	fail := func(what string, err error) bool {
		if errors.Is(err, ErrStoreClosed) {
			return false
		}
		s.storeErrors.Add(1)
		backoff = min(max(2*backoff, 50*time.Millisecond), 5*time.Second)
		cfg.log.Error("delay: "+what+" failed; retrying", "error", err, "retry_in", backoff)
		return sleep(ctx, backoff) == nil
	}
	for ctx.Err() == nil {
		// Until the wake-up time is known, every insert wakes the loop.
		s.plannedWake.Store(math.MaxInt64)
		now := time.Now()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.step)
		n, err := s.Store.Deliver(sctx, now, cfg.batch, s.sendDue)
		cancel()
		if err != nil {
			if !fail("sending due messages", err) {
				return closedErr(err)
			}
			continue
		}
		if ctx.Err() != nil {
			return nil
		}
		if n >= cfg.batch {
			continue // more may be due
		}
		if time.Since(lastPurge) >= min(time.Minute, cfg.dedup) {
			lastPurge = time.Now()
			if _, err := s.Store.Purge(ctx, lastPurge.Add(-cfg.dedup)); err != nil && ctx.Err() == nil {
				s.storeErrors.Add(1)
				cfg.log.Warn("delay: purging delivered IDs failed", "error", err)
			}
		}
		next, ok, err := s.Store.NextDue(ctx)
		if err != nil {
			if ctx.Err() != nil || !fail("looking up the next due message", err) {
				return closedErr(err)
			}
			continue
		}
		backoff = 0
		wait := cfg.poll
		if ok {
			switch until := time.Until(next); {
			case !next.After(now) && n == 0:
				// Due before this round, yet not claimed: another server
				// holds it and will send it (or crash and release it).
				wait = min(wait, lockedWait)
			default:
				wait = min(wait, max(until, 0))
			}
		}
		s.plannedWake.Store(time.Now().Add(wait).UnixMicro())
		if wait <= 0 {
			continue
		}
		timer.Reset(wait)
		select {
		case <-timer.C:
		case <-s.wake:
			timer.Stop()
		case <-ctx.Done():
			return nil
		}
	}
	return nil
}

// closedErr returns err when it says the store is closed, else nil.
func closedErr(err error) error {
	if errors.Is(err, ErrStoreClosed) {
		return err
	}
	return nil
}

// errHeld stops a channel's sends in a round when earlier messages of the
// channel wait for a retry.
var errHeld = errors.New("delay: earlier messages of the channel wait for a retry")

// retrySpan is when a channel's rescheduled messages are retried: the
// first of them, and the last.
type retrySpan struct{ first, last time.Time }

// heldUntil reports the retry time of channel's last rescheduled message
// while the first of them is still to be retried.
func (s *Server) heldUntil(channel string) (time.Time, bool) {
	s.heldMu.Lock()
	defer s.heldMu.Unlock()
	span, ok := s.held[channel]
	if ok && !time.Now().Before(span.first) {
		delete(s.held, channel)
		return time.Time{}, false
	}
	return span.last, ok
}

// hold records that channel's messages were rescheduled to times from
// first to last, and forgets channels whose first retry has come.
func (s *Server) hold(channel string, first, last time.Time) {
	s.heldMu.Lock()
	defer s.heldMu.Unlock()
	if s.held == nil {
		s.held = make(map[string]retrySpan)
	}
	now := time.Now()
	for ch, span := range s.held {
		if !now.Before(span.first) {
			delete(s.held, ch)
		}
	}
	span, ok := s.held[channel]
	if !ok {
		span.first = first
	}
	if last.After(span.last) {
		span.last = last
	}
	s.held[channel] = span
}

// permanent reports whether a send error will never go away by retrying.
func permanent(err error) bool {
	return errors.Is(err, channels.ErrMessageTooLarge) || errors.Is(err, channels.ErrInvalidName) || errors.Is(err, channels.ErrInvalidContent)
}

// sendDue is the DueFunc: it sends due records, one goroutine per channel
// (up to SendConcurrency at once), each channel's records in due order.
func (s *Server) sendDue(ctx context.Context, recs []Record) []time.Time {
	cfg := s.config()
	retry := make([]time.Time, len(recs))
	var order []string
	byChannel := make(map[string][]int)
	for i, r := range recs {
		if _, ok := byChannel[r.Channel]; !ok {
			order = append(order, r.Channel)
		}
		byChannel[r.Channel] = append(byChannel[r.Channel], i)
	}
	sendChannel := func(ch string, idx []int) {
		var stopped error // after a failure the rest wait, to keep their order
		base := time.Now().Add(cfg.retryFull)
		if until, ok := s.heldUntil(ch); ok {
			// Earlier messages of this channel wait for a retry: these go
			// after them.
			stopped, base = errHeld, until.Add(time.Microsecond)
		}
		var first, last time.Time
		for k, i := range idx {
			r := recs[i]
			if stopped != nil {
				retry[i] = base.Add(time.Duration(k) * time.Microsecond)
				if first.IsZero() {
					first = retry[i]
				}
				last = retry[i]
				if errors.Is(stopped, channels.ErrChannelFull) || stopped == errHeld {
					s.rescheduled.Add(1)
				} else {
					s.sendFailures.Add(1)
				}
				continue
			}
			c := r.Content
			c[IDKey] = r.ID
			err := s.Layer.Send(ctx, r.Channel, c)
			switch {
			case err == nil:
				s.sent.Add(1)
				s.lateness.add(time.Since(r.Due))
			case permanent(err):
				s.dropped.Add(1)
				cfg.log.Error("delay: due message dropped: the layer refuses it", "id", r.ID, "channel", r.Channel, "error", err)
			default:
				stopped = err
				retry[i] = base.Add(time.Duration(k) * time.Microsecond)
				first, last = retry[i], retry[i]
				if errors.Is(err, channels.ErrChannelFull) {
					s.rescheduled.Add(1)
					cfg.log.Warn("delay: channel full; due messages rescheduled", "channel", r.Channel, "count", len(idx)-k, "retry_in", cfg.retryFull, "attempts", r.Attempts+1)
				} else {
					s.sendFailures.Add(1)
					cfg.log.Error("delay: send failed; due messages rescheduled", "channel", r.Channel, "count", len(idx)-k, "retry_in", cfg.retryFull, "error", err)
				}
			}
		}
		if !last.IsZero() {
			s.hold(ch, first, last)
		}
	}
	if len(order) == 1 || cfg.conc == 1 {
		for _, ch := range order {
			sendChannel(ch, byChannel[ch])
		}
		return retry
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, cfg.conc)
	for _, ch := range order {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			sendChannel(ch, byChannel[ch])
		})
	}
	wg.Wait()
	return retry
}
