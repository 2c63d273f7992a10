package redislayer

import (
	"context"
	"sync"
	"time"
)

// A blocking pop is interrupted in Redis with CLIENT UNBLOCK ... TIMEOUT
// (see shard.bpop). What interrupts it is kept from one pop to the next,
// so that a pop allocates no context, timer or goroutine of its own:
//
//   - the pop connection (bconn) holds its state: whether a pop is under
//     way, whether an unblock is being sent, and a timer that closes the
//     connection when Redis stops answering;
//   - the layer keeps the connections with a pop under way, and closing
//     the layer interrupts them all;
//   - an owner that interrupts its own pops (a fetcher, a receive loop)
//     does it through its interrupter, which knows the connections of its
//     pop under way;
//   - a caller's context that can be done interrupts the pop with
//     context.AfterFunc, registered once for the pops that share the
//     context (a receive loop passes the same one to every call).

// interrupter interrupts the blocking pops of one owner's round (one pass
// of a fetcher or of a receive loop); it is reused from round to round.
type interrupter struct {
	mu    sync.Mutex
	armed bool          // a round is under way
	fired bool          // the round was interrupted
	bcs   []*bconn      // connections with a pop of the round under way
	ch    chan struct{} // closed when the round is interrupted; made by done
}

// arm starts a round; interrupt only has an effect between arm and
// disarm.
func (it *interrupter) arm() {
	it.mu.Lock()
	it.armed, it.fired, it.ch = true, false, nil
	it.mu.Unlock()
}

// disarm ends a round.
func (it *interrupter) disarm() {
	it.mu.Lock()
	it.armed, it.fired, it.ch = false, false, nil
	it.mu.Unlock()
}

// interrupt interrupts the round's pops, those under way and those still
// to start.
func (it *interrupter) interrupt() {
	it.mu.Lock()
	defer it.mu.Unlock()
	if !it.armed || it.fired {
		return
	}
	it.fired = true
	if it.ch != nil {
		close(it.ch)
	}
	for _, bc := range it.bcs {
		bc.interrupt()
	}
}

// done returns a channel closed when the round is interrupted (made only
// for a wait that needs it).
func (it *interrupter) done() <-chan struct{} {
	it.mu.Lock()
	defer it.mu.Unlock()
	if it.ch == nil {
		it.ch = make(chan struct{})
		if it.fired {
			close(it.ch)
		}
	}
	return it.ch
}

// attach adds a connection whose pop is about to start (already marked
// popping); it reports false when the round was already interrupted.
func (it *interrupter) attach(bc *bconn) bool {
	it.mu.Lock()
	defer it.mu.Unlock()
	it.bcs = append(it.bcs, bc)
	return !it.fired
}

// detach removes a connection whose pop ended.
func (it *interrupter) detach(bc *bconn) {
	it.mu.Lock()
	defer it.mu.Unlock()
	for i, b := range it.bcs {
		if b == bc {
			last := len(it.bcs) - 1
			it.bcs[i] = it.bcs[last]
			it.bcs[last] = nil
			it.bcs = it.bcs[:last]
			return
		}
	}
}

// startPop marks bc as popping, registers it with the layer (which
// interrupts it on close) and arms its guard: were Redis to stop
// answering without closing the connection, the connection is closed
// after d, which fails the pop.
func (bc *bconn) startPop(d time.Duration, done <-chan struct{}) {
	bc.mu.Lock()
	bc.popping, bc.popDone = true, done
	bc.mu.Unlock()
	l := bc.sh.l
	l.popsMu.Lock()
	l.pops[bc] = struct{}{}
	l.popsMu.Unlock()
	if bc.guard == nil {
		bc.guard = time.AfterFunc(d, bc.guardFired)
	} else {
		bc.guard.Reset(d)
	}
}

// endPop undoes startPop once the pop's answer (or error) is in; it waits
// for an unblock in flight, which must not reach the connection's next
// pop.
func (bc *bconn) endPop() {
	bc.guard.Stop()
	l := bc.sh.l
	l.popsMu.Lock()
	delete(l.pops, bc)
	l.popsMu.Unlock()
	bc.mu.Lock()
	bc.popping, bc.popDone = false, nil
	finished := bc.finished
	unblocking := bc.unblocking
	bc.mu.Unlock()
	if unblocking {
		<-finished
	}
}

func (bc *bconn) guardFired() { bc.dc.Close() }

// interrupt has the pop under way on bc, if any, return now: Redis then
// answers with the messages it already popped or with nothing, so a
// message is never popped and then dropped.
func (bc *bconn) interrupt() { bc.interruptWhen(false, nil) }

// interruptWhen is interrupt; with check set, only for a pop made with a
// context whose Done channel is done.
func (bc *bconn) interruptWhen(check bool, done <-chan struct{}) {
	bc.mu.Lock()
	if !bc.popping || bc.unblocking || check && bc.popDone != done {
		bc.mu.Unlock()
		return
	}
	bc.unblocking = true
	bc.finished = make(chan struct{})
	bc.mu.Unlock()
	go bc.unblock()
}

// unblock sends CLIENT UNBLOCK for bc's pop until Redis unblocks it or
// the pop ends.
func (bc *bconn) unblock() {
	defer func() {
		bc.mu.Lock()
		bc.unblocking = false
		close(bc.finished)
		bc.mu.Unlock()
	}()
	for {
		bc.mu.Lock()
		popping := bc.popping
		bc.mu.Unlock()
		if !popping {
			return
		}
		uctx, cancel := bc.sh.l.s.withTimeout(context.Background())
		n, err := bc.node.Do(uctx, bc.node.B().ClientUnblock().ClientId(bc.id).Timeout().Build()).AsInt64()
		cancel()
		if n == 1 {
			return
		}
		if err != nil {
			// Redis does not answer: give the pop up by closing its
			// connection. Were Redis only slow, a message it popped
			// meanwhile would be lost with the connection; there is no
			// way to tell.
			bc.dc.Close()
			return
		}
		// The pop has not reached Redis yet, or has just been answered.
		time.Sleep(200 * time.Microsecond)
	}
}

// watch has ctx being done interrupt the pops on bc made with ctx (with
// its Done channel). The watch stays from one pop to the next as long as
// they pass the same context, until bc is closed.
func (bc *bconn) watch(ctx context.Context) {
	done := ctx.Done()
	if done == nil || done == bc.watchDone || done == bc.sh.l.closeCtx.Done() {
		return // never done, watched already, or the layer's (see pops)
	}
	bc.unwatch()
	bc.watchDone = done
	bc.watchStop = context.AfterFunc(ctx, func() { bc.interruptIf(done) })
}

// unwatch stops watching the context of watch.
func (bc *bconn) unwatch() {
	if bc.watchStop != nil {
		bc.watchStop()
		bc.watchStop, bc.watchDone = nil, nil
	}
}

// close closes bc's connection for good.
func (bc *bconn) close() {
	bc.unwatch()
	bc.dc.Close()
}

// interruptIf is interrupt for a pop made with a context whose Done
// channel is done.
func (bc *bconn) interruptIf(done <-chan struct{}) { bc.interruptWhen(true, done) }

// interruptPops interrupts every pop under way (when the layer closes).
func (l *Layer) interruptPops() {
	l.popsMu.Lock()
	defer l.popsMu.Unlock()
	for bc := range l.pops {
		bc.interrupt()
	}
}
