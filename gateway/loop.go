package gateway

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/internal/fanout"
)

// endpoint is a live HTTP request or WebSocket connection that messages on
// its reply channel are delivered to. deliver must not block.
type endpoint interface {
	deliver(c channels.Content)
}

// registry maps reply channel names to live endpoints.
type registry struct {
	mu    sync.RWMutex
	m     map[string]endpoint
	gen   uint64             // changes whenever m does
	wake  context.CancelFunc // cancels the fallback loop's Receive when a name is added
	names []string           // fallback loop's cached list, for gen namesGen
	nGen  uint64
}

func (r *registry) init() { r.m = make(map[string]endpoint) }

func (r *registry) add(name string, e endpoint) {
	r.mu.Lock()
	r.m[name] = e
	r.gen++
	wake := r.wake
	r.wake = nil
	r.mu.Unlock()
	if wake != nil {
		wake()
	}
}

func (r *registry) remove(name string) {
	r.mu.Lock()
	if _, ok := r.m[name]; ok {
		delete(r.m, name)
		r.gen++
	}
	r.mu.Unlock()
}

func (r *registry) get(name string) endpoint {
	r.mu.RLock()
	e := r.m[name]
	r.mu.RUnlock()
	return e
}

// getAll appends the endpoint registered under each of names (nil for
// those with none) to out.
func (r *registry) getAll(names []string, out []endpoint) []endpoint {
	r.mu.RLock()
	for _, n := range names {
		out = append(out, r.m[n])
	}
	r.mu.RUnlock()
	return out
}

func (r *registry) all() []endpoint {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]endpoint, 0, len(r.m))
	for _, e := range r.m {
		out = append(out, e)
	}
	return out
}

// snapshot returns every registered name and a context that is cancelled as
// soon as a name is added (the fallback loop restarts its Receive then).
func (r *registry) snapshot(ctx context.Context) ([]string, context.Context, context.CancelFunc) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.names == nil || r.nGen != r.gen {
		r.names = r.names[:0]
		for name := range r.m {
			r.names = append(r.names, name)
		}
		r.nGen = r.gen
	}
	names := append([]string(nil), r.names...)
	rctx, cancel := context.WithCancel(ctx)
	r.wake = cancel
	return names, rctx, cancel
}

// receiveLoop is the server's single receive loop: it takes every message
// sent to any of the server's reply channels and hands it to the endpoint
// registered under that exact name. It runs until ctx is done.
//
// With a layer that implements channels.PrefixReceiver it makes one
// ReceivePrefix call per message. Otherwise it falls back to Receive with
// the list of every registered name, restarted whenever a name is added:
// each call then costs O(open connections), which is what Daphne 1.0 paid.
//
// With a layer that implements fanout.Receiver, a group message for several
// connections of this server comes once: it is parsed and its frame built
// once, and that frame is queued on every member's socket (see broadcast).
func (s *Server) receiveLoop(ctx context.Context) {
	defer close(s.loopDone)
	pr, prefix := s.Layer.(channels.PrefixReceiver)
	mr, multi := s.Layer.(fanout.Receiver)
	var eps []endpoint
	if !prefix {
		s.log.Info("the layer cannot receive by prefix; the reply loop lists every live channel on each receive (slower with many connections)", "layer", s.Layer)
	}
	var backoff time.Duration
	for ctx.Err() == nil {
		var (
			name string
			msg  channels.Content
			err  error
		)
		var names []string
		if multi {
			name, names, msg, err = mr.ReceivePrefixMulti(ctx, s.httpPfx, s.wsPfx)
		} else if prefix {
			name, msg, err = pr.ReceivePrefix(ctx, s.httpPfx, s.wsPfx)
		} else {
			var (
				names  []string
				rctx   context.Context
				cancel context.CancelFunc
			)
			names, rctx, cancel = s.reg.snapshot(ctx)
			if len(names) == 0 {
				<-rctx.Done()
				cancel()
				continue
			}
			name, msg, err = s.Layer.Receive(rctx, names...)
			woken := rctx.Err() != nil && ctx.Err() == nil
			cancel()
			if err != nil && woken && errors.Is(err, context.Canceled) {
				continue // a connection was added: receive again with it
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.stats.layerErrors.Add(1)
			// At most 400 ms apart: replies flow again within about half a
			// second of the layer answering again.
			backoff = min(max(2*backoff, 50*time.Millisecond), 400*time.Millisecond)
			s.log.Error("receiving replies failed; retrying", "error", err, "retry_in", backoff)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return
			}
			continue
		}
		backoff = 0
		if msg == nil {
			continue
		}
		if names != nil {
			eps = s.reg.getAll(names, eps[:0])
			s.broadcast(names, eps, msg, nil)
			clear(eps)
			continue
		}
		s.deliverOne(name, msg, nil)
	}
}

// deliverOne hands msg to the endpoint registered under name, and reports
// false when there is none (the reply is dropped and counted). A plain
// frame for an idle socket is written by the calling goroutine without
// blocking (see deliverDirect): one system call instead of waking a writer
// goroutine. A non-nil w lets a sender's goroutine wait for room in a full
// queue (see waitRoomLocked); the receive loop passes nil.
func (s *Server) deliverOne(name string, msg channels.Content, w *roomWait) bool {
	switch e := s.reg.get(name).(type) {
	case nil:
		s.droppedReply(name)
		return false
	case *wsConn:
		e.deliverDirect(msg, w)
	default:
		e.deliver(msg)
	}
	return true
}

// droppedReply counts and logs a reply for an unknown or finished
// connection.
func (s *Server) droppedReply(name string) {
	s.stats.droppedReplies.Add(1)
	s.log.Debug("reply for an unknown or finished connection dropped", "channel", name)
}

// broadcast delivers msg, shared by the endpoints eps registered under
// names (nil where none is), to each of them: WebSockets get one prepared
// frame, parsed and built here once; other endpoints a copy each.
//
// A non-nil w lets a sender's goroutine wait for room in full queues (see
// waitRoomLocked); the receive loop passes nil.
func (s *Server) broadcast(names []string, eps []endpoint, msg channels.Content, w *roomWait) {
	p := prepare(msg)
	for i, e := range eps {
		switch e := e.(type) {
		case nil:
			s.droppedReply(names[i])
		case *wsConn:
			e.deliverPrepared(p, w)
		default:
			e.deliver(msg.Clone())
		}
	}
}
