package gateway

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/internal/inline"
	"github.com/gochannels/channels/internal/owned"
)

// receiveRetry is how long a frame waits for room on a full
// websocket.receive channel (the spec allows a retry) before its socket is
// closed with 1013. Meanwhile the socket is not read, which slows the
// client down.
const receiveRetry = 500 * time.Millisecond

// disconnectRetry is how long a websocket.disconnect or http.disconnect
// message waits for room on its full channel before it is dropped (and
// counted). Nobody waits for it meanwhile.
const disconnectRetry = 5 * time.Second

// fullRetryBatch is how many waiting messages the drainer tries at once,
// and fullPoll how long it sleeps when the channel is still full.
const (
	fullRetryBatch = 32
	fullPoll       = time.Millisecond
)

// fullQueue holds the messages that found one channel full, in arrival
// order, and sends them first come, first served as room appears: one
// drainer goroutine retries the oldest ones while any wait, and while any
// wait, new messages for the channel queue behind them instead of taking
// the room.
//
// For websocket.receive the reader waits for its frame's outcome. Without
// the queue, a burst of more sockets than the channel's capacity (a
// thousand clients each with one frame in flight, say) was served by luck:
// each socket retried on its own backoff, the ones sleeping longest lost
// the race to fresh frames, and some were closed with 1013 although the
// workers kept up.
//
// For the disconnect channels nobody waits: the message is retried in the
// background for disconnectRetry. Without it, a thousand sockets closing at
// once (a gateway restart, a network blip) lost most of their disconnects
// to a full channel, and with them the application's chance to leave
// groups.
type fullQueue struct {
	s       *Server
	channel string
	wait    time.Duration // how long a message may wait

	mu      sync.Mutex
	waiting []*fullWaiter // FIFO; bounded by the open sockets and requests (one message each)
	running bool          // a drainer is running

	// inline, when set, sends with its SendInline: a worker in the
	// process may run the message in the reader's goroutine (see package
	// inline). Only websocket.receive, whose sender waits for the outcome
	// anyway, is sent so.
	inline inline.Layer
}

type fullWaiter struct {
	msg      channels.Content
	deadline time.Time
	done     chan error // receives the send's outcome, once; nil when nobody waits
	err      error      // the outcome, when nobody waits
}

func (q *fullQueue) init(s *Server, channel string, wait time.Duration) {
	q.s, q.channel, q.wait = s, channel, wait
}

func (q *fullQueue) busy() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.waiting) > 0
}

// send sends msg, queueing it behind earlier messages while the channel is
// full, for at most q.wait, and returns the outcome.
func (q *fullQueue) send(msg channels.Content) error {
	if !q.busy() {
		var err error
		if q.inline != nil {
			err = q.inline.SendInline(context.Background(), q.channel, msg)
		} else {
			err = owned.Send(context.Background(), q.s.Layer, q.channel, msg)
		}
		if !errors.Is(err, channels.ErrChannelFull) {
			return err
		}
	}
	done := make(chan error, 1)
	q.enqueue(msg, done)
	return <-done
}

// sendLater sends msg at once, or queues it behind earlier messages while
// the channel is full, for at most q.wait, without waiting. A message that
// cannot be sent is logged and counted as a dropped disconnect.
func (q *fullQueue) sendLater(ctx context.Context, msg channels.Content) {
	if !q.busy() {
		err := owned.Send(ctx, q.s.Layer, q.channel, msg)
		if !errors.Is(err, channels.ErrChannelFull) {
			if err != nil {
				q.dropped(msg, err)
			}
			return
		}
	}
	q.enqueue(msg, nil)
}

func (q *fullQueue) dropped(msg channels.Content, err error) {
	q.s.stats.droppedDisconnects.Add(1)
	if errors.Is(err, channels.ErrChannelFull) {
		q.s.log.Debug("disconnect message dropped: the channel stayed full", "channel", q.channel, "reply_channel", msg["reply_channel"], "waited", q.wait)
	} else {
		q.s.log.Error("disconnect message dropped", "channel", q.channel, "reply_channel", msg["reply_channel"], "error", err)
	}
}

func (q *fullQueue) enqueue(msg channels.Content, done chan error) {
	w := &fullWaiter{msg: msg, deadline: time.Now().Add(q.wait), done: done}
	q.mu.Lock()
	q.waiting = append(q.waiting, w)
	if !q.running {
		q.running = true
		go q.drain()
	}
	q.mu.Unlock()
}

// settled waits until nothing is queued, or ctx is done.
func (q *fullQueue) settled(ctx context.Context) error {
	for {
		q.mu.Lock()
		idle := !q.running && len(q.waiting) == 0
		q.mu.Unlock()
		if idle {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// drain retries the oldest waiting messages until none wait.
func (q *fullQueue) drain() {
	batch := make([]*fullWaiter, 0, fullRetryBatch)
	errs := make([]error, fullRetryBatch)
	// Senders that stay while the queue drains: a goroutine per message
	// would grow a fresh stack for the layer's send path every time.
	type job struct {
		i   int
		msg channels.Content
	}
	var wg sync.WaitGroup
	jobs := make(chan job)
	defer close(jobs)
	for range fullRetryBatch {
		go func() {
			for j := range jobs {
				errs[j.i] = owned.Send(context.Background(), q.s.Layer, q.channel, j.msg)
				wg.Done()
			}
		}()
	}
	for {
		q.mu.Lock()
		if len(q.waiting) == 0 {
			q.running = false
			q.mu.Unlock()
			return
		}
		batch = append(batch[:0], q.waiting[:min(len(q.waiting), fullRetryBatch)]...)
		q.mu.Unlock()

		now := time.Now()
		select {
		case <-q.s.closed:
			now = now.Add(q.wait) // the server is closing: give up on all of them
		default:
		}
		// Try the batch at once: over Redis concurrent sends share round
		// trips. Each message is a different socket's or request's.
		for i, w := range batch {
			if now.After(w.deadline) {
				errs[i] = channels.ErrChannelFull
				continue
			}
			if len(batch) == 1 {
				errs[i] = owned.Send(context.Background(), q.s.Layer, q.channel, w.msg)
				continue
			}
			wg.Add(1)
			jobs <- job{i, w.msg}
		}
		wg.Wait()

		// Settle the batch: the ones sent (or failed for good, or out of
		// time) leave the queue; the ones still full keep their place.
		full := false
		var gone []*fullWaiter
		q.mu.Lock()
		kept := q.waiting[:0]
		for i, w := range q.waiting {
			if i < len(batch) {
				err := errs[i]
				if errors.Is(err, channels.ErrChannelFull) && !now.After(w.deadline) {
					full = true
					kept = append(kept, w)
					continue
				}
				if w.done != nil {
					w.done <- err
				} else if err != nil {
					w.err = err // reported below, outside the lock
					gone = append(gone, w)
				}
				continue
			}
			kept = append(kept, w)
		}
		clear(q.waiting[len(kept):])
		q.waiting = kept
		q.mu.Unlock()
		for _, w := range gone {
			q.dropped(w.msg, w.err)
		}
		if full {
			time.Sleep(fullPoll)
		}
	}
}
