package redislayer

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gochannels/channels"
	"github.com/redis/rueidis"
)

// Ordinary and single-reader channels are popped by fetchers. A fetcher
// serves every Receive call waiting on one set of channel names (a worker
// receives on the same set over and over): while calls wait, it pops as
// many messages as there are of them in one round trip, plus a few ahead
// of demand, and hands them over. With nothing in Redis it waits with a
// blocking pop on a connection of its own, for all the calls at once.
//
// Messages popped beyond the calls waiting for them go to a buffer per
// channel that every Receive and Poll in the process serves from first,
// oldest first. The buffer is small and bounded (Config.ReceiveBuffer).
// How far ahead a fetcher pops adapts to demand: it doubles while pops
// come back full (a backlog in Redis, consumed as fast as it is popped)
// and halves when they do not, so an idle or slow process holds little.
// Buffered messages still expire at their time. Messages of ordinary
// channels that no Receive takes within bufferHold are put back in Redis,
// where they were (their scores are their send times), for other
// processes to take; so are all buffered messages when the layer is
// closed. What a process holds when it dies is lost, like any message
// received and not yet processed.
//
// Everything in this file is guarded by Layer.rmu.

const (
	// maxPrefetch bounds how many messages one fetcher pops ahead of the
	// calls waiting.
	maxPrefetch = 64
	// maxPop bounds the messages one pop asks for.
	maxPop = 512
	// fetcherLinger is how long an idle fetcher stays before it exits.
	fetcherLinger = 5 * time.Second
	// bufferHold is how long popped messages of an ordinary channel may
	// wait in a buffer before they are put back in Redis.
	bufferHold = 250 * time.Millisecond
	// janitorTick is how often buffers are checked while they hold
	// messages.
	janitorTick = 100 * time.Millisecond
)

type ordState struct {
	closed    bool
	gen       uint64 // flush generation: pops begun before a flush are dropped
	queues    map[string]*oqueue
	total     int
	fetchers  map[string]*fetcher   // set key → fetcher
	index     map[string][]*fetcher // channel → fetchers of sets holding it
	marks     []mark                // expired messages to record in Redis
	returning map[string]int        // channels whose messages are being put back
	retDone   chan struct{}         // closed when a put-back finishes
	kick      chan struct{}         // wakes the janitor
	rot       int
}

// oentry is a popped message of an ordinary or single-reader channel.
type oentry struct {
	member string
	score  float64
	sh     *shard
}

type oqueue struct {
	items []oentry
	head  int
	since time.Time // when a Receive last took from it, or it filled
}

func (q *oqueue) len() int { return len(q.items) - q.head }

// fetcher pops for the Receive calls waiting on one set of channels.
type fetcher struct {
	key   string
	names []string // sorted, distinct
	keys  []string // their Redis keys
	ts    []target // the pops that cover them
	// rots[s] are the keys of each target rotated to start at s, when the
	// targets have the same few keys (outside Cluster mode); see popDirect.
	rots    [][][]string
	waiters []*owaiter
	want    int // messages to pop ahead of demand
	running bool
	wake    chan struct{}
	intr    interrupter // interrupts the blocking pop in progress
	idle    time.Time   // when the last waiter left
	dropped bool        // exited; no longer in ordState
	popping bool        // the fetcher has a pop under way
	direct  bool        // a Receive pops for itself (see popDirect)
}

// owaiter is a Receive call waiting on ordinary channels.
type owaiter struct {
	f      *fetcher
	signal chan struct{}
	queued bool // in f.waiters
	has    bool // a message was handed over: ch, e
	ch     string
	e      oentry
	err    error
}

func (w *owaiter) wake() {
	select {
	case w.signal <- struct{}{}:
	default:
	}
}

// take returns the message handed to w, if any.
func (w *owaiter) take() (string, oentry, bool) {
	if w == nil || !w.has {
		return "", oentry{}, false
	}
	ch, e := w.ch, w.e
	w.has, w.ch, w.e = false, "", oentry{}
	return ch, e, true
}

func (s *ordState) init() {
	s.queues = make(map[string]*oqueue)
	s.fetchers = make(map[string]*fetcher)
	s.index = make(map[string][]*fetcher)
	s.returning = make(map[string]int)
	s.retDone = make(chan struct{})
	s.kick = make(chan struct{}, 1)
}

// setKey names a set of channels: the names sorted, without duplicates.
func setKey(names []string) (string, []string) {
	if len(names) == 1 {
		return names[0], names
	}
	sorted := slices.Clone(names)
	slices.Sort(sorted)
	sorted = slices.Compact(sorted)
	return strings.Join(sorted, ","), sorted
}

// waiterPool recycles owaiters with their signal channels.
var waiterPool = sync.Pool{New: func() any { return &owaiter{signal: make(chan struct{}, 1)} }}

// register queues w, a Receive waiting on names, with their fetcher.
func (s *ordState) register(l *Layer, w *owaiter, names []string) {
	w.f = s.fetcherFor(l, names)
	s.enqueue(l, w)
}

// lookup finds the fetcher of a set of channels without allocating in the
// common case (a few short names).
func (s *ordState) lookup(names []string) *fetcher {
	if len(names) == 1 {
		return s.fetchers[names[0]]
	}
	var idx [8]int
	var buf [512]byte
	if len(names) > len(idx) {
		key, _ := setKey(names)
		return s.fetchers[key]
	}
	n := len(names)
	for i := range n {
		idx[i] = i
		for j := i; j > 0 && names[idx[j]] < names[idx[j-1]]; j-- {
			idx[j], idx[j-1] = idx[j-1], idx[j]
		}
	}
	b := buf[:0]
	for i := range n {
		if i > 0 && names[idx[i]] == names[idx[i-1]] {
			continue
		}
		if len(b) > 0 {
			b = append(b, ',')
		}
		b = append(b, names[idx[i]]...)
	}
	return s.fetchers[string(b)]
}

// fetcherFor returns the fetcher of a set of channels, creating it.
func (s *ordState) fetcherFor(l *Layer, names []string) *fetcher {
	if f := s.lookup(names); f != nil {
		return f
	}
	key, sorted := setKey(names)
	f := s.fetchers[key]
	if f == nil {
		f = &fetcher{key: key, names: slices.Clone(sorted), wake: make(chan struct{}, 1)}
		f.keys = make([]string, len(f.names))
		for i, n := range f.names {
			f.keys[i] = l.key(n)
			s.index[n] = append(s.index[n], f)
		}
		f.ts = l.targets(f.keys)
		if n := len(f.keys); !l.s.cluster && n <= maxRotations {
			f.rots = make([][][]string, n)
			for st := range n {
				f.rots[st] = make([][]string, len(f.ts))
				for i, t := range f.ts {
					f.rots[st][i] = rotate(t.keys, st)
				}
			}
		}
		s.fetchers[key] = f
	}
	return f
}

// enqueue puts w in its fetcher's queue and makes sure the fetcher runs.
func (s *ordState) enqueue(l *Layer, w *owaiter) {
	if s.closed {
		w.err = channels.ErrLayerClosed
		return
	}
	if w.f.dropped {
		w.f = s.fetcherFor(l, w.f.names)
	}
	f := w.f
	f.waiters = append(f.waiters, w)
	w.queued = true
	if !f.running {
		f.running = true
		l.wg.Add(1)
		go l.fetchLoop(f)
		return
	}
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// requeue puts back in its fetcher's queue a waiter that was handed a
// message it could not use.
func (s *ordState) requeue(l *Layer, w *owaiter) {
	if !w.queued && !w.has {
		s.enqueue(l, w)
	}
}

func (s *ordState) dequeue(w *owaiter) {
	if !w.queued {
		return
	}
	w.queued = false
	f := w.f
	if i := slices.Index(f.waiters, w); i >= 0 {
		f.waiters = slices.Delete(f.waiters, i, i+1)
	}
	if len(f.waiters) == 0 {
		f.idle = time.Now()
		if f.popping {
			f.intr.interrupt()
		}
	}
}

// unregister removes a waiter; a message handed to it and not taken goes
// to another waiter or back to the front of its buffer.
func (s *ordState) unregister(l *Layer, w *owaiter) {
	s.dequeue(w)
	if ch, e, ok := w.take(); ok {
		if !s.handOff(nil, ch, e) {
			s.pushFront(l, ch, e)
		}
	}
}

// assign hands a message to the first waiter of f.
func (s *ordState) assign(f *fetcher, ch string, e oentry) {
	w := f.waiters[0]
	s.dequeue(w)
	w.has, w.ch, w.e = true, ch, e
	w.wake()
}

// handOff gives a message to a waiter of from, or of another fetcher
// whose set holds ch. It reports false when nobody waits.
func (s *ordState) handOff(from *fetcher, ch string, e oentry) bool {
	if from != nil && len(from.waiters) > 0 {
		s.assign(from, ch, e)
		return true
	}
	for _, f := range s.index[ch] {
		if f != from && len(f.waiters) > 0 {
			s.assign(f, ch, e)
			return true
		}
	}
	return false
}

// deliver hands a popped message over, or buffers it.
func (s *ordState) deliver(l *Layer, from *fetcher, p *popped, now time.Time) {
	name := l.nameOf(p.key)
	if l.expired(p.score, now) {
		l.st.expired.Add(1)
		s.marks = append(s.marks, mark{shard: p.sh, channel: name, score: p.score})
		s.kickJanitor()
		return
	}
	e := oentry{member: p.member, score: p.score, sh: p.sh}
	if !s.handOff(from, name, e) {
		s.push(name, e, now)
	}
}

func (s *ordState) queue(ch string, now time.Time) *oqueue {
	q := s.queues[ch]
	if q == nil {
		q = &oqueue{since: now}
		s.queues[ch] = q
	}
	if s.total == 0 {
		s.kickJanitor()
	}
	return q
}

func (s *ordState) push(ch string, e oentry, now time.Time) {
	q := s.queue(ch, now)
	q.items = append(q.items, e)
	s.total++
}

func (s *ordState) pushFront(l *Layer, ch string, e oentry) {
	q := s.queue(ch, time.Now())
	if q.head > 0 {
		q.head--
		q.items[q.head] = e
	} else {
		q.items = slices.Insert(q.items, 0, e)
	}
	s.total++
}

func (s *ordState) kickJanitor() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// popFront removes the oldest message of q.
func (s *ordState) popFront(ch string, q *oqueue) oentry {
	e := q.items[q.head]
	q.items[q.head] = oentry{}
	q.head++
	s.total--
	switch {
	case q.head == len(q.items):
		delete(s.queues, ch)
	case q.head >= 32 && q.head*2 >= len(q.items):
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
	return e
}

// takeNames takes the oldest live buffered message of any of names,
// starting at a rotating position.
func (s *ordState) takeNames(l *Layer, names []string) (string, oentry, bool) {
	if s.total == 0 {
		return "", oentry{}, false
	}
	now := time.Now()
	n := len(names)
	s.rot++
	for i := range n {
		name := names[(s.rot+i)%n]
		for q := s.queues[name]; q != nil && q.len() > 0; q = s.queues[name] {
			e := s.popFront(name, q)
			if l.expired(e.score, now) {
				l.st.expired.Add(1)
				s.marks = append(s.marks, mark{shard: e.sh, channel: name, score: e.score})
				s.kickJanitor()
				continue
			}
			q.since = now
			return name, e, true
		}
	}
	return "", oentry{}, false
}

// returningAny returns a channel that is closed when the put-back in
// progress of any of names ends, or nil when none is in progress.
func (s *ordState) returningAny(names []string) chan struct{} {
	if len(s.returning) == 0 {
		return nil
	}
	for _, n := range names {
		if s.returning[n] > 0 {
			return s.retDone
		}
	}
	return nil
}

func (s *ordState) dropFetcher(f *fetcher) {
	f.dropped = true
	if s.fetchers[f.key] == f {
		delete(s.fetchers, f.key)
	}
	for _, n := range f.names {
		fs := s.index[n]
		if i := slices.Index(fs, f); i >= 0 {
			fs = slices.Delete(fs, i, i+1)
		}
		if len(fs) == 0 {
			delete(s.index, n)
		} else {
			s.index[n] = fs
		}
	}
}

// flush empties the buffers.
func (s *ordState) flush() {
	s.gen++
	clear(s.queues)
	s.total = 0
}

// channelStats returns the messages of channel buffered here and the score
// of the oldest.
func (s *ordState) channelStats(channel string) (int, float64, bool) {
	q := s.queues[channel]
	if q == nil || q.len() == 0 {
		return 0, 0, false
	}
	return q.len(), q.items[q.head].score, true
}

// target is what one pop covers: keys on one host, of one hash slot in
// Cluster mode (slot < 0 otherwise).
type target struct {
	sh   *shard
	keys []string
	slot int
}

// targets splits channel keys into the pops that cover them: every host
// holds any of them (receivers read every host), and in Cluster mode one
// pop covers one hash slot.
func (l *Layer) targets(keys []string) []target {
	if !l.s.cluster {
		out := make([]target, len(l.shards))
		for i, sh := range l.shards {
			out[i] = target{sh: sh, keys: keys, slot: -1}
		}
		return out
	}
	var out []target
	for _, g := range l.slotGroups(keys) {
		out = append(out, target{sh: l.shards[0], keys: g, slot: int(keySlot(g[0]))})
	}
	return out
}

// fetchLoop pops for the waiters of f until none has come for
// fetcherLinger. While calls wait it holds a connection of its own per
// target (counted in Config.ReceiveConns), on which it pops without the
// pipelining machinery: the write and the read happen in this goroutine.
func (l *Layer) fetchLoop(f *fetcher) {
	defer l.wg.Done()
	s := &l.ord
	ts := f.ts
	rotated := make([][]string, len(ts))
	for i := range ts {
		rotated[i] = make([]string, len(ts[i].keys))
	}
	conns := make([]*bconn, len(ts))
	release := func() {
		for i, bc := range conns {
			if bc != nil {
				ts[i].sh.release(bc, false)
				conns[i] = nil
			}
		}
	}
	defer release()
	var backoff time.Duration
	for {
		l.rmu.Lock()
		if s.closed {
			f.running = false
			s.dropFetcher(f)
			l.rmu.Unlock()
			return
		}
		need := len(f.waiters)
		if need == 0 {
			if time.Since(f.idle) >= fetcherLinger {
				f.running = false
				s.dropFetcher(f)
				l.rmu.Unlock()
				return
			}
			l.rmu.Unlock()
			release()
			t := time.NewTimer(fetcherLinger)
			select {
			case <-f.wake:
			case <-t.C:
			case <-l.closeCtx.Done():
			}
			t.Stop()
			continue
		}
		if done := s.returningAny(f.names); done != nil {
			l.rmu.Unlock()
			select {
			case <-done:
			case <-l.closeCtx.Done():
			}
			continue
		}
		extra := 0
		if l.s.receiveBuffer > 0 {
			extra = max(min(f.want, l.s.receiveBuffer-s.total), 0)
		}
		count := min(need+extra, maxPop)
		gen := s.gen
		f.intr.arm()
		f.popping = true
		l.rmu.Unlock()

		r := l.rot.Add(1)
		for i, t := range ts {
			n := len(t.keys)
			start := int(r % uint32(n))
			for k := range n {
				rotated[i][k] = t.keys[(start+k)%n]
			}
		}
		var (
			ps      []popped
			err     error
			blocked bool
		)
		if err = l.connectTargets(l.closeCtx, &f.intr, ts, conns); err == nil && len(ts) == 1 {
			// One target: a blocking pop answers at once when messages
			// wait, so it is the only pop needed, and it takes as many as
			// a non-blocking one would.
			ps, err = l.popWait(l.closeCtx, &f.intr, ts, conns, rotated, count, l.s.blockTimeout)
		} else if err == nil {
			ps, err = l.popNow(ts, conns, rotated, count, int(r))
			if err == nil && len(ps) == 0 {
				l.rmu.Lock()
				need = len(f.waiters)
				l.rmu.Unlock()
				if need > 0 {
					ps, err = l.popWait(l.closeCtx, &f.intr, ts, conns, rotated, min(need, maxPop), l.s.blockTimeout)
					blocked = true
				}
			}
		}
		if errors.Is(err, context.Canceled) {
			err = nil
		}

		l.rmu.Lock()
		f.intr.disarm()
		f.popping = false
		now := time.Now()
		if gen == s.gen {
			for i := range ps {
				s.deliver(l, f, &ps[i], now)
			}
		}
		if !blocked && err == nil {
			if len(ps) >= count {
				f.want = min(max(2*f.want, 1), maxPrefetch)
			} else {
				f.want /= 2
			}
		}
		if err != nil && !s.closed {
			for len(f.waiters) > 0 {
				w := f.waiters[0]
				s.dequeue(w)
				w.err = err
				w.wake()
			}
		}
		l.rmu.Unlock()
		if err == nil {
			backoff = 0
			continue
		}
		backoff = min(max(2*backoff, 20*time.Millisecond), 500*time.Millisecond)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-l.closeCtx.Done():
		case <-l.loss.recovered(): // the host answers again
		}
		t.Stop()
	}
}

// popDirect is the path of a Receive that finds nothing buffered while the
// fetcher of its channels is idle (no call waits, no pop under way), as
// when one goroutine receives message after message (a worker's receive
// loop): it pops itself instead of waking the fetcher, which saves the
// hand-offs between goroutines. It takes the first live message and hands
// the rest over like the fetcher would.
//
// With block set and the channels on one host (one hash slot in Cluster
// mode), it pops with a blocking pop on a connection of its own, which
// answers at once when messages wait and otherwise waits for them (at most
// Config.BlockTimeout, or until ctx is done or the layer closes); it then
// reports ran even when it got nothing. Otherwise it pops without waiting,
// on the shared connections. ok is false when it got nothing; ran is false
// when it did not run or failed (the caller then waits for the fetcher as
// usual).
func (l *Layer) popDirect(ctx context.Context, normal []string, block bool) (ch string, e oentry, ok, ran bool) {
	s := &l.ord
	l.rmu.Lock()
	f := s.lookup(normal)
	if s.closed || f == nil || f.dropped || len(f.waiters) > 0 || f.popping || f.direct {
		l.rmu.Unlock()
		return "", oentry{}, false, false
	}
	f.direct = true
	count := 1
	if l.s.receiveBuffer > 0 {
		count += max(min(f.want, l.s.receiveBuffer-s.total), 0)
	}
	gen := s.gen
	l.rmu.Unlock()

	ts := f.ts
	r := l.rot.Add(1)
	var keys [][]string
	if f.rots != nil {
		keys = f.rots[int(r%uint32(len(f.rots)))]
	} else {
		keys = make([][]string, len(ts))
		for i, t := range ts {
			keys[i] = rotate(t.keys, int(r%uint32(len(t.keys))))
		}
	}
	var (
		ps  []popped
		err error
	)
	block = block && len(ts) == 1
	if block {
		ps, err = l.popBlocking(ctx, ts[0], keys[0], count)
	} else {
		ps, err = l.popNow(ts, nil, keys, count, int(r))
	}

	l.rmu.Lock()
	defer l.rmu.Unlock()
	f.direct = false
	if err != nil || gen != s.gen {
		return "", oentry{}, false, false
	}
	if len(ps) >= count {
		f.want = min(max(2*f.want, 1), maxPrefetch)
	} else if !block || len(ps) > 0 {
		f.want /= 2
	}
	now := time.Now()
	for i := range ps {
		p := &ps[i]
		if !ok && !l.expired(p.score, now) {
			ch, e, ok = l.nameOf(p.key), oentry{member: p.member, score: p.score, sh: p.sh}, true
			continue
		}
		s.deliver(l, f, p, now)
	}
	return ch, e, ok, true
}

// maxRotations bounds the channels of a set whose key rotations a fetcher
// keeps.
const maxRotations = 16

// rotate returns a copy of keys starting at keys[start].
func rotate(keys []string, start int) []string {
	out := make([]string, 0, len(keys))
	out = append(out, keys[start:]...)
	return append(out, keys[:start]...)
}

// popBlocking pops up to count messages of t's keys (in that order) with
// a blocking pop on a pop connection, waiting at most Config.BlockTimeout
// and until ctx is done or the layer closes. Messages Redis popped before
// an interruption are returned, never lost.
func (l *Layer) popBlocking(ctx context.Context, t target, keys []string, count int) ([]popped, error) {
	bc, err := t.sh.acquire(ctx, nil, t.slot)
	if err != nil {
		return nil, err
	}
	ps, err := t.sh.bpop(ctx, nil, bc, keys, l.s.blockTimeout, count)
	broken := false
	if err != nil && !t.sh.moved(ctx, err, t.slot) {
		var eb errBroken
		if _, ok := rueidis.IsRedisErr(err); !ok || errors.As(err, &eb) {
			broken = !errors.Is(err, context.Canceled)
		}
	}
	t.sh.release(bc, broken)
	for k := range ps {
		ps[k].sh = t.sh
	}
	if len(ps) > 0 {
		return ps, nil
	}
	return nil, err
}

// connectTargets makes sure conns holds a connection for every target;
// ctx being done or it being interrupted ends a wait for one.
func (l *Layer) connectTargets(ctx context.Context, it *interrupter, ts []target, conns []*bconn) error {
	for i, t := range ts {
		if conns[i] != nil {
			continue
		}
		bc, err := t.sh.acquire(ctx, it, t.slot)
		if err != nil {
			return err
		}
		conns[i] = bc
	}
	return nil
}

// settle handles the error of a pop on conns[i]: a connection that failed
// without an answer from Redis is closed, one to a node that no longer
// serves the slot is given back (and the slot map reloaded); err is then
// nil, for the next pass to go to the right node.
func (l *Layer) settle(ctx context.Context, ts []target, conns []*bconn, i int, err error) error {
	if err == nil || conns[i] == nil {
		return err
	}
	t := ts[i]
	if t.sh.moved(ctx, err, t.slot) {
		t.sh.release(conns[i], false)
		conns[i] = nil
		return nil
	}
	var broken errBroken
	if _, ok := rueidis.IsRedisErr(err); !ok || errors.As(err, &broken) {
		if !errors.Is(err, context.Canceled) {
			t.sh.release(conns[i], true)
			conns[i] = nil
		}
	}
	return err
}

// popNow pops up to count messages without waiting, trying the targets in
// turn from a rotating start until it has count; keys[i] are target i's
// keys in the order to try. With conns nil it pops on the shared
// connections. It returns an error only when it got nothing.
func (l *Layer) popNow(ts []target, conns []*bconn, keys [][]string, count, rot int) ([]popped, error) {
	n := len(ts)
	var (
		out      []popped
		firstErr error
	)
	for i := range n {
		j := (rot + i) % n
		var c rueidis.CommandClient = ts[j].sh.client
		if conns != nil {
			if conns[j] == nil {
				continue
			}
			c = conns[j].dc
		}
		ps, err := ts[j].sh.popMany(c, keys[j], count-len(out))
		if conns != nil {
			err = l.settle(context.Background(), ts, conns, j, err)
		}
		for k := range ps {
			ps[k].sh = ts[j].sh
		}
		if out == nil {
			out = ps
		} else {
			out = append(out, ps...)
		}
		if err != nil && firstErr == nil {
			firstErr = err
		}
		if len(out) >= count {
			break
		}
	}
	if len(out) > 0 {
		return out, nil
	}
	return nil, firstErr
}

// popWait waits at most timeout for messages, popping up to count; with
// several targets it waits on all of them at once and returns what each
// popped. ctx being done or it being interrupted ends the wait.
func (l *Layer) popWait(ctx context.Context, it *interrupter, ts []target, conns []*bconn, keys [][]string, count int, t time.Duration) ([]popped, error) {
	if len(ts) == 1 {
		if conns[0] == nil {
			return nil, nil
		}
		ps, err := ts[0].sh.bpop(ctx, it, conns[0], keys[0], t, count)
		err = l.settle(ctx, ts, conns, 0, err)
		for k := range ps {
			ps[k].sh = ts[0].sh
		}
		return ps, err
	}
	type result struct {
		i   int
		ps  []popped
		err error
	}
	mctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan result, len(ts))
	started := 0
	for i, tg := range ts {
		if conns[i] == nil {
			continue
		}
		started++
		go func() {
			ps, err := tg.sh.bpop(mctx, it, conns[i], keys[i], t, count)
			for k := range ps {
				ps[k].sh = tg.sh
			}
			results <- result{i, ps, err}
		}()
	}
	var (
		out      []popped
		firstErr error
	)
	for range started {
		r := <-results
		err := l.settle(ctx, ts, conns, r.i, r.err)
		if len(r.ps) > 0 {
			out = append(out, r.ps...)
			cancel()
		}
		if err != nil && firstErr == nil && !errors.Is(err, context.Canceled) {
			firstErr = err
		}
	}
	if len(out) > 0 {
		return out, nil
	}
	return nil, firstErr
}

// ordJanitor records expired messages, drops expired buffered ones and
// puts back in Redis the messages of ordinary channels that no Receive
// took within bufferHold.
func (l *Layer) ordJanitor() {
	defer l.wg.Done()
	s := &l.ord
	t := time.NewTimer(janitorTick)
	defer t.Stop()
	for {
		select {
		case <-l.closeCtx.Done():
			return
		case <-s.kick:
		case <-t.C:
		}
		l.rmu.Lock()
		now := time.Now()
		var stale map[string][]oentry
		for ch, q := range s.queues {
			for q.len() > 0 && l.expired(q.items[q.head].score, now) {
				e := s.popFront(ch, q)
				l.st.expired.Add(1)
				s.marks = append(s.marks, mark{shard: e.sh, channel: ch, score: e.score})
			}
			if q.len() == 0 || strings.IndexByte(ch, '?') >= 0 || now.Sub(q.since) < bufferHold {
				continue
			}
			waited := false
			for _, f := range s.index[ch] {
				if len(f.waiters) > 0 {
					waited = true
				}
			}
			if waited {
				continue
			}
			if stale == nil {
				stale = make(map[string][]oentry)
			}
			for q.len() > 0 {
				stale[ch] = append(stale[ch], s.popFront(ch, q))
			}
			s.returning[ch]++
		}
		marks := s.marks
		s.marks = nil
		if s.total > 0 {
			t.Reset(janitorTick)
		}
		l.rmu.Unlock()
		l.writeMarks(marks)
		if stale != nil {
			l.putBack(stale)
			l.rmu.Lock()
			for ch := range stale {
				if s.returning[ch]--; s.returning[ch] <= 0 {
					delete(s.returning, ch)
				}
			}
			close(s.retDone)
			s.retDone = make(chan struct{})
			l.rmu.Unlock()
		}
	}
}

// putBack puts popped messages back in Redis where they were: one call
// per host (per slot in Cluster mode).
func (l *Layer) putBack(entries map[string][]oentry) {
	type call struct {
		sh   *shard
		keys []string
		args []string
		n    int
	}
	calls := make(map[string]*call)
	for ch, es := range entries {
		key := l.key(ch)
		id := strconv.Itoa(es[0].sh.index) + "/" + l.slotTag(ch)
		c := calls[id]
		if c == nil {
			c = &call{sh: es[0].sh, args: []string{l.keyTTL()}}
			calls[id] = c
		}
		c.keys = append(c.keys, key)
		c.args = append(c.args, strconv.Itoa(len(es)))
		for _, e := range es {
			c.args = append(c.args, formatScore(e.score), e.member)
		}
		c.n += len(es)
	}
	for _, c := range calls {
		ctx, cancel := l.s.withTimeout(context.Background())
		err := pushBackManyScript.exec(ctx, c.sh.client, c.keys, c.args).Error()
		cancel()
		if err != nil {
			l.st.lost.Add(uint64(c.n))
			l.s.log.Error("popped messages could not be put back and are lost", "messages", c.n, "host", c.sh.name, "error", err)
			continue
		}
		l.st.pushedBack.Add(uint64(c.n))
	}
}

// putBackAll puts every buffered message of ordinary and single-reader
// channels back in Redis (when the layer closes).
func (l *Layer) putBackAll() {
	l.rmu.Lock()
	var all map[string][]oentry
	for ch, q := range l.ord.queues {
		if all == nil {
			all = make(map[string][]oentry)
		}
		for q.len() > 0 {
			all[ch] = append(all[ch], l.ord.popFront(ch, q))
		}
	}
	marks := l.ord.marks
	l.ord.marks = nil
	l.rmu.Unlock()
	l.writeMarks(marks)
	if all != nil {
		l.putBack(all)
	}
}

func formatInt(n int) string { return strconv.Itoa(n) }

// formatScore writes a score read from Redis back exactly.
func formatScore(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }
