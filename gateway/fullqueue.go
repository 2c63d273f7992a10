package gateway

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/gochannels/channels"
)

// receiveRetry is how long a frame waits for room on a full
// websocket.receive channel (the spec allows a retry) before its socket is
// closed with 1013. Meanwhile the socket is not read, which slows the
// client down.
const receiveRetry = 500 * time.Millisecond

// fullRetryBatch is how many waiting frames the drainer tries at once, and
// fullPoll how long it sleeps when the channel is still full.
const (
	fullRetryBatch = 32
	fullPoll       = time.Millisecond
)

// fullQueue holds the frames that found websocket.receive full, in arrival
// order, and sends them first-come, first-served as room appears: one
// drainer goroutine retries the oldest ones while any wait, and while any
// wait, new frames queue behind them instead of taking the room. Without
// it, a burst of more sockets than the channel's capacity (a thousand
// clients each with one frame in flight, say) is served by luck: each
// socket retries on its own backoff, the ones sleeping longest lose the
// race to fresh frames, and some are closed with 1013 although the workers
// keep up.
type fullQueue struct {
	s       *Server
	mu      sync.Mutex
	waiting []*fullWaiter // FIFO; bounded by the number of open sockets (one frame each)
	running bool          // a drainer is running
}

type fullWaiter struct {
	msg      channels.Content
	deadline time.Time
	done     chan error // receives the send's outcome, once
}

// send sends a websocket.receive message, queueing it behind earlier frames
// while the channel is full, for at most receiveRetry.
func (q *fullQueue) send(msg channels.Content) error {
	q.mu.Lock()
	queued := len(q.waiting) > 0
	q.mu.Unlock()
	if !queued {
		err := channels.SendOwned(context.Background(), q.s.Layer, "websocket.receive", msg)
		if !errors.Is(err, channels.ErrChannelFull) {
			return err
		}
	}
	w := &fullWaiter{msg: msg, deadline: time.Now().Add(receiveRetry), done: make(chan error, 1)}
	q.mu.Lock()
	q.waiting = append(q.waiting, w)
	if !q.running {
		q.running = true
		go q.drain()
	}
	q.mu.Unlock()
	return <-w.done
}

// drain retries the oldest waiting frames until none wait.
func (q *fullQueue) drain() {
	batch := make([]*fullWaiter, 0, fullRetryBatch)
	errs := make([]error, fullRetryBatch)
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
			now = now.Add(receiveRetry) // the server is closing: give up on all of them
		default:
		}
		// Try the batch at once: over Redis concurrent sends share round
		// trips. Frames of different sockets; each socket has one here.
		var wg sync.WaitGroup
		for i, w := range batch {
			if now.After(w.deadline) {
				errs[i] = channels.ErrChannelFull
				continue
			}
			if len(batch) == 1 {
				errs[i] = channels.SendOwned(context.Background(), q.s.Layer, "websocket.receive", w.msg)
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = channels.SendOwned(context.Background(), q.s.Layer, "websocket.receive", w.msg)
			}()
		}
		wg.Wait()

		// Settle the batch: the ones sent (or failed for good, or out of
		// time) leave the queue; the ones still full keep their place.
		full := false
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
				w.done <- err
				continue
			}
			kept = append(kept, w)
		}
		clear(q.waiting[len(kept):])
		q.waiting = kept
		q.mu.Unlock()
		if full {
			time.Sleep(fullPoll)
		}
	}
}
