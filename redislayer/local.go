package redislayer

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/internal/fanout"
)

var _ fanout.Receiver = (*Layer)(nil)

// Process-specific channels ("name!suffix") of one process share one Redis
// key, the process prefix ("name!"), as in channels_redis. This process
// reads them with one receive loop per host: a blocking pop over the
// prefixes that have waiting receivers, whose messages are sorted by their
// "__asgi_channel__" into bounded per-prefix buffers here. Receive (on
// named '!' channels), ReceivePrefix and Poll all read those buffers; none
// of them pops a process prefix key itself, so one prefix is popped by one
// goroutine per host and its messages keep their order.
//
// Everything in this file is guarded by Layer.mu.

// prefixGrace is how long a process prefix is still popped after its last
// receiver stopped waiting, so that a receive loop calling ReceivePrefix
// over and over does not make the key set change between calls.
const prefixGrace = 5 * time.Second

// janitorEvery is how often buffered messages are checked for expiry.
const janitorEvery = time.Second

// loopTimeout is the longest blocking pop of a receive loop; it is also
// the janitor's tick when nothing arrives.
const loopTimeout = time.Second

// drainBatch bounds the messages a receive loop takes in one round trip
// after a blocking pop.
const drainBatch = 256

type localState struct {
	closed      bool
	gen         uint64 // flush generation: pops begun before a flush are dropped
	total       int
	prefixes    map[string]*procState
	marks       []mark // expired messages to record in Redis
	lastJanitor time.Time
	rot         int
}

// procState is the buffer of one process prefix.
type procState struct {
	prefix      string
	queues      map[string]*lqueue // channel → messages
	ready       []string           // channels holding messages, round robin, from readyHead
	readyHead   int
	inReady     map[string]bool
	n           int
	waiters     map[*waiter]struct{}
	wantedUntil time.Time
	full        bool
}

type lqueue struct {
	items []lentry
	head  int
	// one is the first array of items: a reply channel usually holds one
	// message at a time (an HTTP response, a socket's next frame).
	one [1]lentry
}

type lentry struct {
	c      channels.Content
	score  float64
	shared bool // the same content is queued for other channels: copy on take
	// grp, for a message listing several channels of this process, is
	// shared by their entries: a multi receive takes it from all of them
	// at once (see takePrefixes).
	grp *lgroup
}

// lgroup is one popped message addressed to several channels of the
// process.
type lgroup struct{ chans []string }

func (q *lqueue) len() int { return len(q.items) - q.head }

func (q *lqueue) pop() lentry {
	e := q.items[q.head]
	q.items[q.head] = lentry{}
	q.head++
	switch {
	case q.head == len(q.items):
		q.items, q.head = q.items[:0], 0
	case q.head >= 32 && q.head*2 >= len(q.items):
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
	return e
}

// waiter is a receiver blocked on process-specific channels.
type waiter struct {
	names    map[string]bool // nil: any channel under prefixes
	prefixes []string
	signal   chan struct{}
	notify   func() // called on wake, under Layer.mu; must not block
	fired    bool
	err      error
}

func (w *waiter) wake(err error) {
	w.fired = true
	if err != nil && w.err == nil {
		w.err = err
	}
	if w.notify != nil {
		w.notify()
	}
	select {
	case w.signal <- struct{}{}:
	default:
	}
}

// mark is a message that expired unread, to be recorded in Redis so that
// group sends evict its channel.
type mark struct {
	shard   *shard
	channel string
	score   float64
}

// loopState is one host's receive loop, as seen by receivers.
type loopState struct {
	keys      map[string]bool // prefixes of the pop in progress
	intr      interrupter     // interrupts the pop in progress (armed while one is)
	kick      chan struct{}   // wakes an idle loop
	sweepReq  uint64          // Poll asks for a non-blocking pass
	sweepDone uint64
	sweepCh   chan struct{} // closed after each pass
	failing   bool
	err       error
}

func (ls *loopState) interrupt() {
	ls.intr.interrupt() // no effect unless a pop is in progress
	select {
	case ls.kick <- struct{}{}:
	default:
	}
}

func (s *localState) init() {
	s.prefixes = make(map[string]*procState)
}

func (s *localState) state(prefix string) *procState {
	ps := s.prefixes[prefix]
	if ps == nil {
		ps = &procState{
			prefix:  prefix,
			queues:  make(map[string]*lqueue),
			inReady: make(map[string]bool),
			waiters: make(map[*waiter]struct{}),
		}
		s.prefixes[prefix] = ps
	}
	return ps
}

// want keeps prefix popped for a while and wakes loops that do not pop it.
func (s *localState) want(l *Layer, prefix string, now time.Time) {
	ps := s.state(prefix)
	if until := now.Add(prefixGrace); until.After(ps.wantedUntil) {
		ps.wantedUntil = until
	}
	if ps.full {
		return
	}
	for _, sh := range l.shards {
		if !sh.loop.keys[prefix] {
			sh.loop.interrupt()
		}
	}
}

// registerSignal adds a waiter, signalled on signal, for the channels
// names (nil: any) under the prefixes of chans.
func (s *localState) registerSignal(l *Layer, chans []string, names map[string]bool, signal chan struct{}) *waiter {
	w := &waiter{signal: signal}
	s.registerWaiter(l, w, chans, names)
	return w
}

// waiterPool recycles the waiters of receiveLocalMulti, with their signal
// channels.
var lwaiterPool = sync.Pool{New: func() any { return &waiter{signal: make(chan struct{}, 1)} }}

// registerWaiter registers w, a new waiter (or one reset after
// unregister), for the channels names (nil: any) under the prefixes of
// chans.
func (s *localState) registerWaiter(l *Layer, w *waiter, chans []string, names map[string]bool) {
	w.names = names
	now := time.Now()
	for _, ch := range chans {
		p := nonLocal(ch)
		if slices.Contains(w.prefixes, p) {
			continue
		}
		w.prefixes = append(w.prefixes, p)
		s.state(p).waiters[w] = struct{}{}
		s.want(l, p, now)
	}
}

func (s *localState) unregister(w *waiter) {
	now := time.Now()
	for _, p := range w.prefixes {
		if ps := s.prefixes[p]; ps != nil {
			delete(ps.waiters, w)
			if until := now.Add(prefixGrace); until.After(ps.wantedUntil) {
				ps.wantedUntil = until
			}
			// A waiter leaving after it was woken may leave the message
			// it was woken for: pass the wake on.
			if w.fired && ps.n > 0 {
				for o := range ps.waiters {
					if !o.fired {
						o.wake(nil)
						break
					}
				}
			}
		}
	}
}

func (s *localState) wakeAll(err error) {
	for _, ps := range s.prefixes {
		for w := range ps.waiters {
			w.wake(err)
		}
	}
}

// push queues a message for channel. It reports false when the name is not
// a process-specific channel.
func (s *localState) push(l *Layer, channel string, e lentry) bool {
	p := nonLocal(channel)
	if p == channel || p == "" {
		return false
	}
	ps := s.state(p)
	q := ps.queues[channel]
	if q == nil {
		q = &lqueue{}
		q.items = q.one[:0]
		ps.queues[channel] = q
	}
	q.items = append(q.items, e)
	ps.n++
	s.total++
	if !ps.inReady[channel] {
		ps.inReady[channel] = true
		ps.ready = append(ps.ready, channel)
	}
	if l.s.processBuffer > 0 && ps.n >= l.s.processBuffer {
		ps.full = true
	}
	// One waiter per message: one that is not woken already.
	for w := range ps.waiters {
		if !w.fired && (w.names == nil || w.names[channel]) {
			w.wake(nil)
			break
		}
	}
	return true
}

// take pops the next live message of channel.
func (s *localState) take(l *Layer, channel string, now time.Time) (channels.Content, bool) {
	e, ok := s.takeEntry(l, channel, now)
	if !ok {
		return nil, false
	}
	if e.shared {
		return e.c.Clone(), true
	}
	return e.c, true
}

// takeEntry pops the next live entry of channel, its content not copied.
func (s *localState) takeEntry(l *Layer, channel string, now time.Time) (lentry, bool) {
	ps := s.prefixes[nonLocal(channel)]
	if ps == nil {
		return lentry{}, false
	}
	q := ps.queues[channel]
	// An emptied queue stays, for the channel's next messages, until the
	// janitor drops it.
	for q != nil && q.len() > 0 {
		e := q.pop()
		s.taken(l, ps)
		if l.expired(e.score, now) {
			l.st.expired.Add(1)
			s.marks = append(s.marks, mark{shard: l.shardFor(channel), channel: channel, score: e.score})
			continue
		}
		l.st.received.Add(1)
		return e, true
	}
	return lentry{}, false
}

// taken accounts for a message leaving ps's buffer.
func (s *localState) taken(l *Layer, ps *procState) {
	ps.n--
	s.total--
	if ps.full && ps.n < l.s.processBuffer {
		ps.full = false
		for _, sh := range l.shards {
			sh.loop.interrupt()
		}
	}
}

// takeNames takes a message from any of names, starting at a rotating
// position.
func (s *localState) takeNames(l *Layer, names []string) (string, channels.Content, bool) {
	now := time.Now()
	n := len(names)
	s.rot++
	for i := range n {
		name := names[(s.rot+i)%n]
		if c, ok := s.take(l, name, now); ok {
			return name, c, true
		}
	}
	return "", nil, false
}

// takePrefixes takes a message from any channel under the prefixes, round
// robin between the channels of a prefix.
func (s *localState) takePrefixes(l *Layer, prefixes []string) (string, channels.Content, bool) {
	ch, _, c, ok := s.takePrefixesMulti(l, prefixes, false)
	return ch, c, ok
}

// takePrefixesMulti is takePrefixes; with multi set, a message for several
// channels of the process is also taken from the others that have it
// first in their queue, and returned once with all their names (see
// ReceivePrefixMulti).
func (s *localState) takePrefixesMulti(l *Layer, prefixes []string, multi bool) (string, []string, channels.Content, bool) {
	now := time.Now()
	n := len(prefixes)
	s.rot++
	for i := range n {
		ps := s.prefixes[prefixes[(s.rot+i)%n]]
		if ps == nil {
			continue
		}
		for ps.readyHead < len(ps.ready) {
			name := ps.ready[ps.readyHead]
			ps.ready[ps.readyHead] = ""
			ps.readyHead++
			switch {
			case ps.readyHead == len(ps.ready):
				ps.ready, ps.readyHead = ps.ready[:0], 0
			case ps.readyHead >= 32 && 2*ps.readyHead >= len(ps.ready):
				n := copy(ps.ready, ps.ready[ps.readyHead:])
				clear(ps.ready[n:])
				ps.ready, ps.readyHead = ps.ready[:n], 0
			}
			delete(ps.inReady, name)
			e, ok := s.takeEntry(l, name, now)
			var names []string
			if ok && multi && e.grp != nil {
				names = s.takeRest(l, ps, name, e.grp)
			}
			if q := ps.queues[name]; q != nil && q.len() > 0 {
				ps.inReady[name] = true
				ps.ready = append(ps.ready, name)
			}
			switch {
			case !ok:
			case names != nil:
				return "", names, e.c, true
			case e.shared:
				return name, nil, e.c.Clone(), true
			default:
				return name, nil, e.c, true
			}
		}
	}
	return "", nil, nil, false
}

// takeRest takes the message grp from every other channel of ps that has
// it first in its queue, and returns first and those channels, or nil when
// none had it there. The entries of one message share its score, so they
// are all live when the first one was.
func (s *localState) takeRest(l *Layer, ps *procState, first string, grp *lgroup) []string {
	var names []string
	for _, ch := range grp.chans {
		if ch == first {
			continue
		}
		q := ps.queues[ch]
		if q == nil || q.len() == 0 || q.items[q.head].grp != grp {
			continue
		}
		q.pop()
		s.taken(l, ps)
		l.st.received.Add(1)
		if names == nil {
			names = make([]string, 0, len(grp.chans))
			names = append(names, first)
		}
		names = append(names, ch)
	}
	return names
}

// distribute sorts popped messages into the buffers.
func (s *localState) distribute(l *Layer, sh *shard, msgs []popped, now time.Time) {
	for i := range msgs {
		p := &msgs[i]
		var d decoded
		var err error
		if p.decoded {
			d = p.d
		} else {
			d, err = decodeMember(p.member)
		}
		if err != nil {
			l.st.undeliverable.Add(1)
			l.s.log.Error("dropped a message that cannot be decoded", "key", p.key, "host", sh.name, "error", err)
			continue
		}
		n := d.numChans()
		if n == 0 {
			l.st.undeliverable.Add(1)
			l.s.log.Error("dropped a message on a process prefix without "+channelKey, "key", p.key, "host", sh.name)
			continue
		}
		if l.expired(p.score, now) {
			l.st.expired.Add(uint64(n))
			for i := range n {
				ch := d.chanAt(i)
				s.marks = append(s.marks, mark{shard: l.shardFor(ch), channel: ch, score: p.score})
			}
			continue
		}
		shared := n > 1
		var grp *lgroup
		if shared {
			grp = &lgroup{chans: d.chans}
		}
		for i := range n {
			ch := d.chanAt(i)
			if err := l.s.names.CheckChannel(ch); err != nil || !s.push(l, ch, lentry{c: d.c, score: p.score, shared: shared, grp: grp}) {
				l.st.undeliverable.Add(1)
				l.s.log.Error("dropped a message for an invalid process-specific channel name", "channel", ch, "key", p.key)
			}
		}
	}
}

// activeKeys appends to keys the Redis keys of the prefixes to pop now,
// rotated.
func (s *localState) activeKeys(l *Layer, now time.Time, keys []string) []string {
	for p, ps := range s.prefixes {
		if ps.full {
			continue
		}
		if len(ps.waiters) > 0 || now.Before(ps.wantedUntil) {
			keys = append(keys, l.keyOf(p))
		}
	}
	if len(keys) > 1 {
		slices.Sort(keys)
		s.rot++
		r := s.rot % len(keys)
		slices.Reverse(keys[:r])
		slices.Reverse(keys[r:])
		slices.Reverse(keys)
	}
	return keys
}

// janitor drops expired buffered messages and forgets idle prefixes, at
// most once per janitorEvery. It returns the marks to write.
func (s *localState) janitor(l *Layer, now time.Time) []mark {
	if now.Sub(s.lastJanitor) >= janitorEvery || now.Before(s.lastJanitor) {
		s.lastJanitor = now
		for p, ps := range s.prefixes {
			for ch, q := range ps.queues {
				for q.len() > 0 && l.expired(q.items[q.head].score, now) {
					e := q.pop()
					s.taken(l, ps)
					l.st.expired.Add(1)
					s.marks = append(s.marks, mark{shard: l.shardFor(ch), channel: ch, score: e.score})
				}
				if q.len() == 0 {
					delete(ps.queues, ch)
				}
			}
			if ps.n == 0 && len(ps.waiters) == 0 && !now.Before(ps.wantedUntil) {
				delete(s.prefixes, p)
			}
		}
	}
	m := s.marks
	s.marks = nil
	return m
}

func (s *localState) flush() {
	s.gen++
	for _, ps := range s.prefixes {
		ps.queues = make(map[string]*lqueue)
		ps.ready, ps.readyHead = nil, 0
		ps.inReady = make(map[string]bool)
		ps.n = 0
		ps.full = false
	}
	s.total = 0
}

func (s *localState) channelStats(channel string) (int, float64, bool) {
	ps := s.prefixes[nonLocal(channel)]
	if ps == nil {
		return 0, 0, false
	}
	q := ps.queues[channel]
	if q == nil || q.len() == 0 {
		return 0, 0, false
	}
	return q.len(), q.items[q.head].score, true
}

// writeMarks records expired messages in Redis. Failures are logged: the
// cost is a group member kept until its membership expires.
func (l *Layer) writeMarks(marks []mark) {
	if len(marks) == 0 {
		return
	}
	type target struct {
		sh  *shard
		tag string // Cluster mode: one call per hash tag
	}
	var order []target
	byTarget := make(map[target][]mark)
	for _, m := range marks {
		t := target{m.shard, l.slotTag(m.channel)}
		if _, ok := byTarget[t]; !ok {
			order = append(order, t)
		}
		byTarget[t] = append(byTarget[t], m)
	}
	for _, t := range order {
		ms := byTarget[t]
		keys := make([]string, len(ms), len(ms)+1)
		args := make([]string, 2, len(ms)+2)
		args[0], args[1] = l.markerTTL(), "0"
		for i, m := range ms {
			keys[i] = l.markerKey(m.channel)
			args = append(args, formatScore(m.score))
		}
		if !l.s.cluster {
			keys = append(keys, l.markerPrefix()) // the marker index
			args[1] = "1"
		}
		ctx, cancel := l.s.withTimeout(context.Background())
		err := markScript.exec(ctx, t.sh.client, keys, args).Error()
		cancel()
		if err != nil {
			l.s.log.Warn("could not record expired messages for group eviction", "host", t.sh.name, "error", err)
		}
	}
}

// procLoop is one host's receive loop for process-specific channels.
func (l *Layer) procLoop(sh *shard) {
	defer l.wg.Done()
	// The loop's connections, one per target (one target outside Cluster
	// mode), kept from one pass to the next.
	var conns []*bconn
	defer func() {
		for _, bc := range conns {
			if bc != nil {
				bc.dc.Close()
			}
		}
	}()
	var (
		backoff time.Duration
		keyBuf  []string   // the keys of a pass, reused
		tkeys   [][]string // the keys of each target
	)
	for {
		l.mu.Lock()
		if l.local.closed {
			l.mu.Unlock()
			return
		}
		now := time.Now()
		marks := l.local.janitor(l, now)
		clear(keyBuf)
		keys := l.local.activeKeys(l, now, keyBuf[:0])
		keyBuf = keys
		sweepTo := sh.loop.sweepReq
		sweep := sweepTo > sh.loop.sweepDone
		gen := l.local.gen
		if len(keys) == 0 {
			if sweep {
				sh.loop.sweepDone = sweepTo
				close(sh.loop.sweepCh)
				sh.loop.sweepCh = make(chan struct{})
			}
			l.mu.Unlock()
			l.writeMarks(marks)
			t := time.NewTimer(loopTimeout)
			select {
			case <-sh.loop.kick:
			case <-l.closeCtx.Done():
			case <-t.C:
			}
			t.Stop()
			continue
		}
		sh.loop.intr.arm()
		if sh.loop.keys == nil {
			sh.loop.keys = make(map[string]bool, len(keys))
		}
		for _, k := range keys {
			sh.loop.keys[l.nameOf(k)] = true
		}
		room := drainBatch
		if l.s.processBuffer > 0 {
			room = min(room, l.s.processBuffer)
		}
		l.mu.Unlock()
		l.writeMarks(marks)

		ts := []target{{sh: sh, keys: keys, slot: -1}}
		if sh.cluster {
			ts = l.targets(keys)
		}
		var (
			msgs []popped
			err  error
		)
		conns, err = l.loopConns(sh, ts, conns)
		if err == nil && sweep {
			for i, t := range ts {
				for _, k := range t.keys {
					var got []popped
					got, err = sh.popMany(conns[i].dc, []string{k}, room)
					msgs = append(msgs, got...)
					if err != nil {
						break
					}
				}
				if err = l.settle(l.closeCtx, ts, conns, i, err); err != nil {
					break
				}
			}
		} else if err == nil {
			tkeys = tkeys[:0]
			for _, t := range ts {
				tkeys = append(tkeys, t.keys)
			}
			msgs, err = l.popWait(l.closeCtx, &sh.loop.intr, ts, conns, tkeys, room, loopTimeout)
		}
		for i := range msgs {
			if d, err := decodeMember(msgs[i].member); err == nil {
				msgs[i].d, msgs[i].decoded = d, true
			}
		}
		l.mu.Lock()
		sh.loop.intr.disarm()
		clear(sh.loop.keys)
		if gen == l.local.gen && len(msgs) > 0 {
			l.local.distribute(l, sh, msgs, time.Now())
		}
		if sweep {
			sh.loop.sweepDone = sweepTo
			close(sh.loop.sweepCh)
			sh.loop.sweepCh = make(chan struct{})
		}
		if err != nil && !l.local.closed {
			ferr := l.fail("receive loop on "+sh.name, err)
			if !sh.loop.failing {
				l.s.log.Warn("receive loop cannot reach Redis; retrying", "host", sh.name, "error", err)
			}
			sh.loop.failing, sh.loop.err = true, ferr
			for p, ps := range l.local.prefixes {
				if l.shardFor(p) == sh {
					for w := range ps.waiters {
						w.wake(ferr)
					}
				}
			}
			l.mu.Unlock()
			backoff = min(max(2*backoff, 20*time.Millisecond), 500*time.Millisecond)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-l.closeCtx.Done():
			case <-l.loss.recovered(): // the host answers again
			}
			t.Stop()
			continue
		}
		if sh.loop.failing && err == nil {
			sh.loop.failing, sh.loop.err = false, nil
			l.st.reconnects.Add(1)
			l.s.log.Info("receive loop reconnected", "host", sh.name)
		}
		backoff = 0
		l.mu.Unlock()
	}
}

// loopConns makes conns hold a connection for each target of the receive
// loop, to the node that serves its slot in Cluster mode. They are the
// loop's own, not counted in ReceiveConns.
func (l *Layer) loopConns(sh *shard, ts []target, conns []*bconn) ([]*bconn, error) {
	for i := len(ts); i < len(conns); i++ {
		if conns[i] != nil {
			conns[i].dc.Close()
		}
	}
	if len(conns) > len(ts) {
		conns = conns[:len(ts)]
	}
	for len(conns) < len(ts) {
		conns = append(conns, nil)
	}
	for i, t := range ts {
		if conns[i] != nil && sh.cluster {
			addr, _, err := sh.nodeFor(l.closeCtx, uint16(t.slot), false)
			if err != nil {
				return conns, err
			}
			if addr != conns[i].addr {
				conns[i].dc.Close()
				conns[i] = nil
			}
		}
		if conns[i] == nil {
			bc, err := sh.dedicate(l.closeCtx, t.slot)
			if err != nil {
				return conns, err
			}
			conns[i] = bc
		}
	}
	return conns, nil
}

// receiveLocal waits for a message on process-specific channels: the named
// ones, or with prefixes any channel under them.
func (l *Layer) receiveLocal(ctx context.Context, names, prefixes []string) (string, channels.Content, error) {
	ch, _, c, err := l.receiveLocalMulti(ctx, names, prefixes, false)
	return ch, c, err
}

// receiveLocalMulti is receiveLocal; with multi set, a message for several
// channels under the prefixes may come once for all (see
// ReceivePrefixMulti).
func (l *Layer) receiveLocalMulti(ctx context.Context, names, prefixes []string, multi bool) (string, []string, channels.Content, error) {
	take := func() (string, []string, channels.Content, bool) {
		ch, c, ok := l.local.takeNames(l, names)
		return ch, nil, c, ok
	}
	chans := names
	if prefixes != nil {
		take = func() (string, []string, channels.Content, bool) {
			return l.local.takePrefixesMulti(l, prefixes, multi)
		}
		chans = prefixes
	}
	l.mu.Lock()
	var w *waiter
	defer func() {
		if w != nil {
			l.local.unregister(w)
		}
		l.mu.Unlock()
		if w != nil {
			// Nothing refers to w any more: recycle it.
			select {
			case <-w.signal:
			default:
			}
			clear(w.prefixes)
			*w = waiter{signal: w.signal, prefixes: w.prefixes[:0]}
			lwaiterPool.Put(w)
		}
	}()
	for {
		if l.local.closed {
			return "", nil, nil, channels.ErrLayerClosed
		}
		if err := ctx.Err(); err != nil {
			return "", nil, nil, err
		}
		if ch, group, c, ok := take(); ok {
			return ch, group, c, nil
		}
		if w == nil {
			var set map[string]bool
			if prefixes == nil {
				set = namesSet(names)
			}
			w = lwaiterPool.Get().(*waiter)
			l.local.registerWaiter(l, w, chans, set)
		} else if w.err != nil {
			return "", nil, nil, w.err
		}
		w.fired = false
		l.mu.Unlock()
		select {
		case <-w.signal:
		case <-ctx.Done():
		}
		l.mu.Lock()
	}
}

// pollLocal has every receive loop take what Redis holds under the
// prefixes of chans, then takes a message.
func (l *Layer) pollLocal(ctx context.Context, chans []string, take func() (string, channels.Content, bool)) (string, channels.Content, error) {
	l.mu.Lock()
	if ch, c, ok := take(); ok {
		l.mu.Unlock()
		return ch, c, nil
	}
	now := time.Now()
	var prefixes []string
	for _, ch := range chans {
		if p := nonLocal(ch); !slices.Contains(prefixes, p) {
			prefixes = append(prefixes, p)
			l.local.want(l, p, now)
		}
	}
	want := make([]uint64, len(l.shards))
	for i, sh := range l.shards {
		sh.loop.sweepReq++
		want[i] = sh.loop.sweepReq
		sh.loop.interrupt()
	}
	var timeout <-chan time.Time
	if l.s.timeout > 0 {
		t := time.NewTimer(2*l.s.timeout + loopTimeout)
		defer t.Stop()
		timeout = t.C
	}
	for i, sh := range l.shards {
		for sh.loop.sweepDone < want[i] {
			if l.local.closed {
				l.mu.Unlock()
				return "", nil, channels.ErrLayerClosed
			}
			done := sh.loop.sweepCh
			l.mu.Unlock()
			select {
			case <-done:
			case <-ctx.Done():
				return "", nil, ctx.Err()
			case <-timeout:
				return "", nil, fmt.Errorf("redislayer: poll: %w (the receive loop on %s did not answer)", ErrUnavailable, sh.name)
			}
			l.mu.Lock()
		}
	}
	for _, p := range prefixes {
		if sh := l.shardFor(p); sh.loop.failing {
			err := sh.loop.err
			l.mu.Unlock()
			return "", nil, err
		}
	}
	ch, c, ok := take()
	l.mu.Unlock()
	if ok {
		return ch, c, nil
	}
	return "", nil, nil
}

// ReceivePrefix implements channels.PrefixReceiver: it returns the next
// message on any channel under the process prefixes (each ending in '!'),
// round robin between the channels of a prefix. It blocks until a message
// arrives or ctx is done; it never makes a round trip to Redis itself.
func (l *Layer) ReceivePrefix(ctx context.Context, prefixes ...string) (string, channels.Content, error) {
	if len(prefixes) == 0 {
		return "", nil, nil
	}
	for _, p := range prefixes {
		if err := l.s.names.CheckPattern(p); err != nil || p[len(p)-1] != '!' {
			return "", nil, fmt.Errorf("%w: process prefix %q must be a name ending in '!'", channels.ErrInvalidName, p)
		}
	}
	if l.closed() {
		return "", nil, channels.ErrLayerClosed
	}
	return l.receiveLocal(ctx, nil, prefixes)
}

// ReceivePrefixMulti implements fanout.Receiver: ReceivePrefix, except that
// a group message for several channels of this process (one message in
// Redis listing them, see Groups) comes once, with their names, uncopied
// and shared, when it is the next message of each of those channels here;
// a channel with older messages waiting gets it later, on its own.
func (l *Layer) ReceivePrefixMulti(ctx context.Context, prefixes ...string) (string, []string, channels.Content, error) {
	if len(prefixes) == 0 {
		return "", nil, nil, nil
	}
	for _, p := range prefixes {
		if err := l.s.names.CheckPattern(p); err != nil || p[len(p)-1] != '!' {
			return "", nil, nil, fmt.Errorf("%w: process prefix %q must be a name ending in '!'", channels.ErrInvalidName, p)
		}
	}
	if l.closed() {
		return "", nil, nil, channels.ErrLayerClosed
	}
	return l.receiveLocalMulti(ctx, nil, prefixes, true)
}
