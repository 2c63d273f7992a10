package redislayer

import (
	"context"
	"errors"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/gochannels/channels"
	"github.com/redis/rueidis"
)

// bconn is a connection reserved for pops, with its Redis client ID so
// that a blocking pop can be interrupted with CLIENT UNBLOCK, sent with
// node (the shard's client, or in Cluster mode a client of the node the
// connection is to).
type bconn struct {
	dc     rueidis.DedicatedClient
	id     int64
	node   rueidis.Client
	addr   string // Cluster mode: the node's address
	pooled bool   // from acquire, counted in ReceiveConns
	sh     *shard

	// Interruption of its pops (see interrupt.go).
	mu         sync.Mutex
	popping    bool            // a blocking pop is under way
	unblocking bool            // unblock runs
	finished   chan struct{}   // closed when unblock ends
	guard      *time.Timer     // closes the connection when Redis stops answering
	popDone    <-chan struct{} // the Done channel of the pop's context
	// The context whose being done interrupts pops (see watch): its Done
	// channel and what stops watching it. Used only by the connection's
	// holder.
	watchDone <-chan struct{}
	watchStop func() bool
}

// dedicate opens a connection for pops: to the shard's host, or in
// Cluster mode to the node that serves slot (slot < 0 outside Cluster
// mode).
func (sh *shard) dedicate(ctx context.Context, slot int) (*bconn, error) {
	node, addr := rueidis.Client(sh.client), ""
	if sh.cluster {
		var err error
		if addr, node, err = sh.nodeFor(ctx, uint16(slot), false); err != nil {
			return nil, err
		}
	}
	dc, _ := node.Dedicate()
	cctx, cancel := sh.l.s.withTimeout(ctx)
	defer cancel()
	id, err := dc.Do(cctx, dc.B().ClientId().Build()).AsInt64()
	if err != nil {
		dc.Close()
		return nil, err
	}
	return &bconn{dc: dc, id: id, node: node, addr: addr, sh: sh}, nil
}

// acquire returns a connection for pops (to the node serving slot in
// Cluster mode; slot < 0 otherwise), waiting while ReceiveConns of them
// are in use, until ctx is done or it (if not nil) is interrupted
// (context.Canceled).
func (sh *shard) acquire(ctx context.Context, it *interrupter, slot int) (*bconn, error) {
	select {
	case sh.sem <- struct{}{}:
	default:
		var intr <-chan struct{}
		if it != nil {
			intr = it.done()
		}
		select {
		case sh.sem <- struct{}{}:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-intr:
			return nil, context.Canceled
		}
	}
	addr := ""
	if sh.cluster {
		var err error
		if addr, _, err = sh.nodeFor(ctx, uint16(slot), false); err != nil {
			<-sh.sem
			return nil, err
		}
	}
	sh.cmu.Lock()
	for i := len(sh.free) - 1; i >= 0; i-- {
		if bc := sh.free[i]; bc.addr == addr {
			sh.free = append(sh.free[:i], sh.free[i+1:]...)
			sh.cmu.Unlock()
			return bc, nil
		}
	}
	sh.cmu.Unlock()
	bc, err := sh.dedicate(ctx, slot)
	if err != nil {
		<-sh.sem
		return nil, err
	}
	bc.pooled = true
	return bc, nil
}

// release returns a connection to the pool, or closes it when it failed
// (or is not from the pool).
func (sh *shard) release(bc *bconn, broken bool) {
	if !bc.pooled {
		bc.close()
		return
	}
	if broken || sh.l.closed() {
		bc.close()
	} else {
		sh.cmu.Lock()
		sh.free = append(sh.free, bc)
		if len(sh.free) > sh.l.s.receiveConns {
			sh.free[0].close()
			sh.free = append(sh.free[:0], sh.free[1:]...)
		}
		sh.cmu.Unlock()
	}
	<-sh.sem
}

// moved reports whether err is a Cluster redirection (the slot is served
// by another node now); the slot map is then reloaded.
func (sh *shard) moved(ctx context.Context, err error, slot int) bool {
	re, ok := rueidis.IsRedisErr(err)
	if !ok || !sh.cluster {
		return false
	}
	if _, isMoved := re.IsMoved(); !isMoved {
		if _, isAsk := re.IsAsk(); !isAsk {
			return false
		}
	}
	_, _, _ = sh.nodeFor(ctx, uint16(slot), true)
	return true
}

// popped is a message taken from a sorted set.
type popped struct {
	key    string
	member string
	score  float64
	sh     *shard // the host it came from
	d      decoded
	// decoded: d holds the message, decoded
	decoded bool
}

// errBroken marks an error after which a dedicated connection must not be
// reused.
type errBroken struct{ err error }

func (e errBroken) Error() string { return e.err.Error() }
func (e errBroken) Unwrap() error { return e.err }

// bpop pops up to count messages from the first non-empty of keys,
// waiting at most timeout for one to arrive (BZMPOP; BZPOPMIN, one
// message, before Redis 7). When ctx is done, the layer closes or it (if
// not nil) is interrupted, the pop is interrupted in Redis with CLIENT
// UNBLOCK ... TIMEOUT (see interrupt.go), so Redis either answers with the
// messages it already popped or with nothing: a message is never popped
// and then dropped. bpop then returns that answer (messages are returned
// even though ctx is done); a pop interrupted before it started returns
// nothing.
func (sh *shard) bpop(ctx context.Context, it *interrupter, bc *bconn, keys []string, timeout time.Duration, count int) ([]popped, error) {
	ms := max(math.Ceil(float64(timeout)/float64(time.Millisecond)), 1)
	// The guard only matters when Redis stops answering without closing
	// the connection.
	slack := sh.l.s.timeout
	if slack <= 0 {
		slack = time.Minute
	}
	bc.watch(ctx)
	bc.startPop(time.Duration(ms)*time.Millisecond+slack, ctx.Done())
	run := true
	if it != nil && !it.attach(bc) {
		run = false
	}
	var res rueidis.RedisResult
	if run && ctx.Err() == nil && !sh.l.closed() {
		// No context: only the guard bounds the wait.
		if sh.zmpop {
			res = bc.dc.Do(context.Background(), bc.dc.B().Bzmpop().Timeout(ms/1000).Numkeys(int64(len(keys))).Key(keys...).Min().Count(int64(count)).Build())
		} else {
			res = bc.dc.Do(context.Background(), bc.dc.B().Bzpopmin().Key(keys...).Timeout(ms/1000).Build())
		}
	} else {
		run = false
	}
	if it != nil {
		it.detach(bc)
	}
	bc.endPop()
	if !run {
		return nil, nil
	}
	if err := res.Error(); err != nil {
		if rueidis.IsRedisNil(err) {
			return nil, nil
		}
		if _, ok := rueidis.IsRedisErr(err); ok {
			return nil, err
		}
		return nil, errBroken{err}
	}
	if sh.zmpop {
		out, err := zmpopReply(res)
		if err != nil {
			return nil, errBroken{err}
		}
		return out, nil
	}
	arr, err := res.ToArray()
	if err != nil || len(arr) != 3 {
		return nil, errBroken{errors.New("unexpected BZPOPMIN reply")}
	}
	var p popped
	p.key, _ = arr[0].ToString()
	p.member, _ = arr[1].ToString()
	if p.score, err = arr[2].AsFloat64(); err != nil {
		return nil, errBroken{err}
	}
	return []popped{p}, nil
}

// zmpopReply reads the reply of a (B)ZMPOP that did not fail: the key and
// its members with their scores.
func zmpopReply(res rueidis.RedisResult) ([]popped, error) {
	arr, err := res.ToArray()
	if err != nil {
		return nil, err
	}
	if len(arr) != 2 {
		return nil, errors.New("unexpected ZMPOP reply")
	}
	key, err := arr[0].ToString()
	if err != nil {
		return nil, err
	}
	return zscores(&arr[1], key)
}

// zscores reads members with their scores, popped from key: pairs, or a
// flat list of member, score (as AsZScores reads them), without the
// copies of AsZScores.
func zscores(m *rueidis.RedisMessage, key string) ([]popped, error) {
	arr, err := m.ToArray()
	if err != nil || len(arr) == 0 {
		return nil, err
	}
	var out []popped
	if arr[0].IsArray() {
		out = make([]popped, len(arr))
		for i := range arr {
			pair, err := arr[i].ToArray()
			if err == nil && len(pair) != 2 {
				err = errors.New("unexpected sorted set reply")
			}
			if err != nil {
				return nil, err
			}
			if out[i].member, err = pair[0].ToString(); err != nil {
				return nil, err
			}
			if out[i].score, err = pair[1].AsFloat64(); err != nil {
				return nil, err
			}
			out[i].key = key
		}
		return out, nil
	}
	out = make([]popped, len(arr)/2)
	for i := range out {
		if out[i].member, err = arr[2*i].ToString(); err != nil {
			return nil, err
		}
		if out[i].score, err = arr[2*i+1].AsFloat64(); err != nil {
			return nil, err
		}
		out[i].key = key
	}
	return out, nil
}

// popMany pops, without waiting, up to count messages from the first
// non-empty key (in the order given): ZPOPMIN for one key, ZMPOP for
// several (a script before Redis 7). Expired messages are among them; the
// caller drops them.
func (sh *shard) popMany(c rueidis.CommandClient, keys []string, count int) ([]popped, error) {
	// A pop must finish even when the caller gives up: abandoning it could
	// drop messages Redis already popped. Only the connection's timeout
	// bounds it (see connect).
	ctx := context.Background()
	if len(keys) == 1 {
		msg, err := c.Do(ctx, c.B().Zpopmin().Key(keys[0]).Count(int64(count)).Build()).ToMessage()
		if err != nil {
			return nil, err
		}
		return zscores(&msg, keys[0])
	}
	if sh.zmpop {
		res := c.Do(ctx, c.B().Zmpop().Numkeys(int64(len(keys))).Key(keys...).Min().Count(int64(count)).Build())
		if err := res.Error(); err != nil {
			if rueidis.IsRedisNil(err) {
				return nil, nil
			}
			return nil, err
		}
		return zmpopReply(res)
	}
	arr, err := popScript.exec(ctx, c, keys, []string{formatInt(count)}).ToArray()
	if err != nil {
		return nil, err
	}
	if len(arr) < 1 || (len(arr)-1)%2 != 0 {
		return nil, errors.New("unexpected pop script reply")
	}
	i, _ := arr[0].AsInt64()
	if i < 1 || int(i) > len(keys) {
		return nil, nil
	}
	out := make([]popped, 0, (len(arr)-1)/2)
	for j := 1; j+1 < len(arr); j += 2 {
		var p popped
		p.key = keys[i-1]
		p.member, _ = arr[j].ToString()
		if p.score, err = arr[j+1].AsFloat64(); err != nil {
			return out, err
		}
		out = append(out, p)
	}
	return out, nil
}

// Receive implements channels.Layer.
//
// Ordinary and single-reader channels are popped by one fetcher per set of
// channel names received on together (see fetch.go): a goroutine that
// pops, in one round trip, as many messages as there are Receive calls
// waiting on the set (plus a few ahead, see Config.ReceiveBuffer), with a
// blocking pop on a connection of its own when Redis has none. The order
// of the channels is rotated on every pop, so that a busy channel does not
// starve the others. Process-specific channels ('!') are read from this
// process's buffers, filled by one receive loop per host for every
// process prefix with a waiting receiver. A Receive over both kinds
// alternates which kind it serves first.
//
// When ctx is done, Receive returns ctx's error, unless a message had
// already been popped for it: that message is returned with a nil error.
// Either way nothing is lost.
func (l *Layer) Receive(ctx context.Context, names ...string) (string, channels.Content, error) {
	if len(names) == 0 {
		return "", nil, nil
	}
	if err := l.checkChannels(names); err != nil {
		return "", nil, err
	}
	if l.closed() {
		return "", nil, channels.ErrLayerClosed
	}
	normal, proc := splitNames(names)
	if len(normal) == 0 {
		return l.receiveLocal(ctx, proc, nil)
	}
	return l.receiveAny(ctx, normal, proc)
}

// splitNames separates ordinary (and single-reader) channel names from
// process-specific ones.
func splitNames(names []string) (normal, proc []string) {
	n := 0
	for _, name := range names {
		if strings.IndexByte(name, '!') < 0 {
			n++
		}
	}
	if n == len(names) {
		return names, nil
	}
	normal = make([]string, 0, n)
	proc = make([]string, 0, len(names)-n)
	for _, name := range names {
		if strings.IndexByte(name, '!') < 0 {
			normal = append(normal, name)
		} else {
			proc = append(proc, name)
		}
	}
	return normal, proc
}

// receiveAny receives from ordinary channels, and also from
// process-specific ones when proc is not empty.
func (l *Layer) receiveAny(ctx context.Context, normal, proc []string) (string, channels.Content, error) {
	if err := ctx.Err(); err != nil {
		return "", nil, err
	}
	var (
		ow  *owaiter
		pw  *waiter
		sig chan struct{}
	)
	defer func() {
		if ow != nil {
			l.rmu.Lock()
			l.ord.unregister(l, ow)
			l.rmu.Unlock()
		}
		if pw != nil {
			l.mu.Lock()
			l.local.unregister(pw)
			l.mu.Unlock()
		}
		if ow != nil {
			// Nothing refers to ow any more: recycle it.
			select {
			case <-ow.signal:
			default:
			}
			*ow = owaiter{signal: ow.signal}
			waiterPool.Put(ow)
		}
	}()
	// Every other call, process-specific channels go first, so that
	// neither kind starves the other. When ordinary channels go first,
	// Redis is asked at once, not only this process's buffers.
	procFirst := len(proc) > 0 && l.mixRot.Add(1)%2 == 0
	if len(proc) > 0 && !procFirst {
		if ch, c, err := l.pollNormal(ctx, normal); err != nil || c != nil {
			return ch, c, err
		}
	}
	for {
		if procFirst {
			if ch, c, ok := l.takeLocal(proc, &pw, &sig); ok {
				return ch, c, nil
			}
		}
		l.rmu.Lock()
		ch, e, ok := ow.take()
		if !ok {
			ch, e, ok = l.ord.takeNames(l, normal)
		}
		if ok {
			l.rmu.Unlock()
			if c, ok := l.deliverEntry(ch, e); ok {
				return ch, c, nil
			}
			continue
		}
		if ow == nil {
			l.rmu.Unlock()
			// Alone on these channels, a Receive over ordinary channels
			// only waits in Redis itself.
			ch, e, ok, ran := l.popDirect(ctx, normal, len(proc) == 0)
			if ok {
				if c, ok := l.deliverEntry(ch, e); ok {
					return ch, c, nil
				}
				continue
			}
			if ran && len(proc) == 0 {
				if err := ctx.Err(); err != nil {
					return "", nil, err
				}
				if l.closed() {
					return "", nil, channels.ErrLayerClosed
				}
				continue
			}
			l.rmu.Lock()
			ow = waiterPool.Get().(*owaiter)
			if sig == nil {
				sig = ow.signal
			} else {
				ow.signal = sig
			}
			l.ord.register(l, ow, normal)
		} else {
			l.ord.requeue(l, ow)
		}
		if ow.err != nil {
			err := ow.err
			ow.err = nil
			l.rmu.Unlock()
			if ctx.Err() != nil {
				return "", nil, ctx.Err()
			}
			return "", nil, l.failCtx(ctx, "receive", err)
		}
		l.rmu.Unlock()
		if !procFirst && len(proc) > 0 {
			if ch, c, ok := l.takeLocal(proc, &pw, &sig); ok {
				return ch, c, nil
			}
		}
		if pw != nil {
			l.mu.Lock()
			werr := pw.err
			pw.fired, pw.err = false, nil
			l.mu.Unlock()
			if werr != nil {
				return "", nil, werr
			}
		}
		procFirst = len(proc) > 0 && !procFirst
		select {
		case <-sig:
		case <-ctx.Done():
		case <-l.closeCtx.Done():
		}
		if err := ctx.Err(); err != nil || l.closed() {
			l.rmu.Lock()
			ch, e, ok := ow.take()
			l.rmu.Unlock()
			if ok {
				if c, ok := l.deliverEntry(ch, e); ok {
					return ch, c, nil
				}
			}
			if err != nil {
				return "", nil, err
			}
			return "", nil, channels.ErrLayerClosed
		}
	}
}

// takeLocal takes a message of the process-specific channels names from
// this process's buffers, or registers *pw (with signal *sig) to be woken
// when one arrives.
func (l *Layer) takeLocal(names []string, pw **waiter, sig *chan struct{}) (string, channels.Content, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ch, c, ok := l.local.takeNames(l, names); ok {
		return ch, c, true
	}
	if *pw == nil {
		if *sig == nil {
			*sig = make(chan struct{}, 1)
		}
		*pw = l.local.registerSignal(l, names, namesSet(names), *sig)
	}
	return "", nil, false
}

// deliverEntry decodes a message taken from an ordinary channel. It
// reports false when the message cannot be decoded (it is then counted,
// logged and dropped).
func (l *Layer) deliverEntry(name string, e oentry) (channels.Content, bool) {
	d, err := decodeMember(e.member)
	if err != nil {
		l.st.undeliverable.Add(1)
		l.s.log.Error("dropped a message that cannot be decoded", "channel", name, "error", err)
		return nil, false
	}
	l.st.received.Add(1)
	return d.c, true
}

// Poll implements channels.Poller: a Receive that does not wait. It takes
// a message this process already popped, or pops one itself; for
// process-specific channels it asks the receive loops to take, without
// waiting, what Redis holds under their prefixes, so it makes at least one
// round trip to every host.
func (l *Layer) Poll(ctx context.Context, names ...string) (string, channels.Content, error) {
	if len(names) == 0 {
		return "", nil, nil
	}
	if err := l.checkChannels(names); err != nil {
		return "", nil, err
	}
	if l.closed() {
		return "", nil, channels.ErrLayerClosed
	}
	normal, proc := splitNames(names)
	if len(proc) > 0 {
		ch, c, err := l.pollLocal(ctx, proc, func() (string, channels.Content, bool) {
			return l.local.takeNames(l, proc)
		})
		if err != nil || c != nil {
			return ch, c, err
		}
	}
	if len(normal) == 0 {
		return "", nil, nil
	}
	return l.pollNormal(ctx, normal)
}

// pollNormal takes a message of the ordinary channels normal that this
// process already popped, or pops one itself, without waiting.
func (l *Layer) pollNormal(ctx context.Context, normal []string) (string, channels.Content, error) {
	for {
		l.rmu.Lock()
		ch, e, ok := l.ord.takeNames(l, normal)
		l.rmu.Unlock()
		if !ok {
			break
		}
		if c, ok := l.deliverEntry(ch, e); ok {
			return ch, c, nil
		}
	}
	n := len(normal)
	start := int(l.rot.Add(1) % uint32(n))
	keys := make([]string, n)
	for i := range n {
		keys[i] = l.key(normal[(start+i)%n])
	}
	ts := l.targets(keys)
	for i := range ts {
		t := ts[(start+i)%len(ts)]
		sh := t.sh
		for {
			if err := ctx.Err(); err != nil {
				return "", nil, err
			}
			ps, err := sh.popMany(sh.client, t.keys, 1)
			if err != nil {
				return "", nil, l.failCtx(ctx, "poll", err)
			}
			if len(ps) == 0 {
				break
			}
			p := &ps[0]
			name := l.nameOf(p.key)
			if l.expired(p.score, time.Now()) {
				l.st.expired.Add(1)
				l.writeMarks([]mark{{shard: sh, channel: name, score: p.score}})
				continue
			}
			if c, ok := l.deliverEntry(name, oentry{member: p.member, score: p.score, sh: sh}); ok {
				return name, c, nil
			}
		}
	}
	return "", nil, nil
}

func namesSet(names []string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}
