package gateway

import (
	"errors"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/internal/fanout"
)

// directFrameLimit is the largest frame a consumer's goroutine writes to a
// socket itself (see deliverDirect); larger ones go through the writer
// goroutine, which moves the write deadline while it writes.
const directFrameLimit = 4 << 10

// localSink is the server's fanout.Sink on a layer in its own process (the
// in-memory layer of runserver): the consumers' replies come to it in
// their own goroutines, not through the receive loop.
type localSink struct{ s *Server }

// attachLocal attaches the server to its layer when the layer lives in the
// same process, until the receive loop stops.
func (s *Server) attachLocal() {
	l, ok := s.Layer.(fanout.Local)
	if !ok {
		return
	}
	detach := l.AttachLocal([]string{s.httpPfx, s.wsPfx}, localSink{s})
	go func() {
		<-s.loopDone
		detach()
	}()
}

// Deliver implements fanout.Sink.
func (k localSink) Deliver(name string, c channels.Content) bool {
	return k.s.deliverOne(name, c, &roomWait{})
}

// DeliverGroup implements fanout.Sink.
func (k localSink) DeliverGroup(names []string, c channels.Content) (gone []string) {
	eps := k.s.reg.getAll(names, make([]endpoint, 0, len(names)))
	k.s.broadcast(names, eps, c, &roomWait{})
	for i, e := range eps {
		if e == nil {
			gone = append(gone, names[i])
		}
	}
	return gone
}

// deliverDirect is deliver for a consumer's goroutine handing over its
// reply. When the socket is open and nothing is queued or being written,
// the reply's frame is written at once with a non-blocking system call: a
// reply reaches the client without waking another goroutine. What the
// socket cannot take at once, and every reply that is not a plain frame
// (a close, an invalid reply), goes to the writer goroutine as deliver
// sends it, in order.
//
// A non-nil w lets the caller, a sender's goroutine, wait for room in a
// full queue (see waitRoomLocked).
func (c *wsConn) deliverDirect(m channels.Content, w *roomWait) {
	c.mu.Lock()
	if c.state != wsOpen || c.closing || c.writing || len(c.queue) > 0 || c.cork == nil {
		it := outItem{msg: m}
		it.bytes = it.payloadSize()
		c.waitRoomLocked(w, it.bytes)
		c.enqueueLocked(it)
		c.mu.Unlock()
		return
	}
	a, bad := parseReply(m)
	if bad != "" || a.close || a.frame == nil || len(a.frame) > directFrameLimit {
		c.enqueueLocked(outItem{msg: m})
		c.mu.Unlock()
		return
	}
	c.writing = true // this goroutine is the writer until it is done
	c.mu.Unlock()

	whole, err := c.cork.tryData(a.binary, a.frame)
	switch {
	case err == nil:
		c.s.stats.framesOut.Add(1)
		c.lastData.Store(time.Now().UnixNano())
	case errors.Is(err, errCloseSent):
	default:
		c.abort() // the socket is broken: the reader ends the connection
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !whole && err == nil {
		// The rest of the frame waits in the corkWriter: a writer
		// goroutine writes it, then whatever was queued meanwhile.
		c.s.wg.Add(1)
		go func() {
			if err := c.cork.flushPending(); err != nil {
				c.writeFailed(err)
			}
			c.drain()
		}()
		return
	}
	c.writing = false
	c.kickLocked() // replies queued while this one was written
}
