package redislayer

import (
	"context"
	"errors"
	"math"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gochannels/channels"
	"github.com/redis/rueidis"
)

// bconn is a connection reserved for blocking pops, with its Redis client
// ID so that a pop can be interrupted with CLIENT UNBLOCK.
type bconn struct {
	dc rueidis.DedicatedClient
	id int64
}

// dedicate opens a connection for blocking pops.
func (sh *shard) dedicate(ctx context.Context) (*bconn, error) {
	dc, _ := sh.client.Dedicate()
	cctx, cancel := sh.l.s.withTimeout(ctx)
	defer cancel()
	id, err := dc.Do(cctx, dc.B().ClientId().Build()).AsInt64()
	if err != nil {
		dc.Close()
		return nil, err
	}
	return &bconn{dc: dc, id: id}, nil
}

// acquire returns a connection for a blocking pop, waiting while
// ReceiveConns of them are in use.
func (sh *shard) acquire(ctx context.Context) (*bconn, error) {
	select {
	case sh.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	sh.cmu.Lock()
	if n := len(sh.free); n > 0 {
		bc := sh.free[n-1]
		sh.free = sh.free[:n-1]
		sh.cmu.Unlock()
		return bc, nil
	}
	sh.cmu.Unlock()
	bc, err := sh.dedicate(ctx)
	if err != nil {
		<-sh.sem
		return nil, err
	}
	return bc, nil
}

// release returns a connection to the pool, or closes it when it failed.
func (sh *shard) release(bc *bconn, broken bool) {
	if broken || sh.l.closed() {
		bc.dc.Close()
	} else {
		sh.cmu.Lock()
		sh.free = append(sh.free, bc)
		sh.cmu.Unlock()
	}
	<-sh.sem
}

// popped is a message taken from a sorted set.
type popped struct {
	key    string
	member string
	score  float64
	d      *decoded // set once decoded
}

func (p *popped) channels() []string {
	if p.d == nil {
		return nil
	}
	return p.d.chans
}

// errBroken marks an error after which a dedicated connection must not be
// reused.
type errBroken struct{ err error }

func (e errBroken) Error() string { return e.err.Error() }
func (e errBroken) Unwrap() error { return e.err }

// bpop runs BZPOPMIN over keys for at most timeout. When ctx is done first,
// the pop is interrupted in Redis with CLIENT UNBLOCK ... TIMEOUT, so Redis
// either answers with the message it already popped or with nothing: a
// message is never popped and then dropped. bpop then returns that answer
// (a message is returned even though ctx is done).
func (sh *shard) bpop(ctx context.Context, bc *bconn, keys []string, timeout time.Duration) (*popped, error) {
	var done atomic.Bool
	finished := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(finished)
		for !done.Load() {
			uctx, cancel := sh.l.s.withTimeout(context.Background())
			n, err := sh.client.Do(uctx, sh.client.B().ClientUnblock().ClientId(bc.id).Timeout().Build()).AsInt64()
			cancel()
			if n == 1 {
				return
			}
			if err != nil {
				// Redis does not answer: give the pop up by closing its
				// connection. Were Redis only slow, a message it popped
				// meanwhile would be lost with the connection; there is
				// no way to tell.
				bc.dc.Close()
				return
			}
			// The pop has not reached Redis yet, or has just been answered.
			time.Sleep(200 * time.Microsecond)
		}
	})
	ms := max(math.Ceil(float64(timeout)/float64(time.Millisecond)), 1)
	// The deadline only matters when Redis stops answering without closing
	// the connection.
	slack := sh.l.s.timeout
	if slack <= 0 {
		slack = time.Minute
	}
	guard := time.Duration(ms)*time.Millisecond + slack
	dctx, cancel := context.WithTimeout(context.Background(), guard)
	res := bc.dc.Do(dctx, bc.dc.B().Bzpopmin().Key(keys...).Timeout(ms/1000).Build())
	cancel()
	done.Store(true)
	if !stop() {
		<-finished // an unblock in flight must not reach this connection's next command
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
	return &p, nil
}

// poll pops, without waiting, the oldest live message of the first
// non-empty key (in the order given). names are the keys' channel names,
// for expiry markers. It pops with ZPOPMIN or ZMPOP; when that yields an
// expired message it records it and falls back to a script that removes
// every expired message of the keys before popping.
func (sh *shard) poll(ctx context.Context, keys, names []string) (*popped, int64, error) {
	l := sh.l
	// A pop must finish even when the caller gives up: abandoning it could
	// drop a message Redis already popped. Only the connection's timeout
	// bounds it (see connect).
	cctx := context.Background()
	if len(keys) == 1 || sh.zmpop {
		p, err := sh.zpop(cctx, keys)
		if err != nil || p == nil {
			return nil, 0, err
		}
		if !l.expired(p.score, time.Now()) {
			return p, 0, nil
		}
		name := strings.TrimPrefix(p.key, l.s.prefix)
		l.writeMarks([]mark{{shard: sh, channel: name, score: p.score}})
		l.st.expired.Add(1)
	}
	now := l.clock.next()
	args := make([]string, 0, 3+len(names))
	args = append(args, l.cutoff(now), l.markerPrefix(), l.markerTTL())
	args = append(args, names...)
	arr, err := popScript.Exec(cctx, sh.client, keys, args).ToArray()
	if err != nil {
		return nil, 0, err
	}
	if len(arr) != 4 {
		return nil, 0, errors.New("unexpected pop script reply")
	}
	i, _ := arr[0].AsInt64()
	expired, _ := arr[3].AsInt64()
	if i == 0 {
		return nil, expired, nil
	}
	var p popped
	p.key = keys[i-1]
	p.member, _ = arr[1].ToString()
	p.score, err = arr[2].AsFloat64()
	if err != nil {
		return nil, expired, err
	}
	return &p, expired, nil
}

// zpop pops the oldest message of the first non-empty key.
func (sh *shard) zpop(ctx context.Context, keys []string) (*popped, error) {
	c := sh.client
	if len(keys) == 1 {
		zs, err := c.Do(ctx, c.B().Zpopmin().Key(keys[0]).Build()).AsZScores()
		if err != nil || len(zs) == 0 {
			return nil, err
		}
		return &popped{key: keys[0], member: zs[0].Member, score: zs[0].Score}, nil
	}
	kz, err := c.Do(ctx, c.B().Zmpop().Numkeys(int64(len(keys))).Key(keys...).Min().Count(1).Build()).AsZMPop()
	if rueidis.IsRedisNil(err) {
		return nil, nil
	}
	if err != nil || len(kz.Values) == 0 {
		return nil, err
	}
	return &popped{key: kz.Key, member: kz.Values[0].Member, score: kz.Values[0].Score}, nil
}

// pushBack puts a popped message back in Redis where it was.
func (l *Layer) pushBack(sh *shard, p *popped) {
	ctx, cancel := l.s.withTimeout(context.Background())
	defer cancel()
	score := strconv.FormatFloat(p.score, 'f', -1, 64)
	if err := pushBackScript.Exec(ctx, sh.client, []string{p.key}, []string{p.member, score, l.keyTTL()}).Error(); err != nil {
		l.st.lost.Add(1)
		l.s.log.Error("a popped message could not be put back and is lost", "key", p.key, "host", sh.name, "error", err)
		return
	}
	l.st.pushedBack.Add(1)
}

// Receive implements channels.Layer. Ordinary channels are read with
// blocking pops on connections of their own (at most ReceiveConns per
// host); process-specific channels ('!') are read from this process's
// buffers, filled by one receive loop per host for every process prefix
// with a waiting receiver. The order of the channels is rotated on every
// call, so that a busy channel does not starve the others.
//
// When ctx is done while a pop is waiting in Redis, the pop is interrupted
// and nothing is lost: a message Redis had already popped is returned
// (with a nil error), since it cannot be un-popped without reordering.
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
	var normal, proc []string
	for _, n := range names {
		if nonLocal(n) != n {
			proc = append(proc, n)
		} else {
			normal = append(normal, n)
		}
	}
	if len(normal) == 0 {
		return l.receiveLocal(ctx, proc, nil)
	}
	return l.receiveMixed(ctx, normal, proc)
}

// receiveMixed receives from ordinary channels, and also from
// process-specific ones when proc is not empty.
func (l *Layer) receiveMixed(ctx context.Context, normal, proc []string) (string, channels.Content, error) {
	if err := ctx.Err(); err != nil {
		return "", nil, err
	}
	var w *waiter
	if len(proc) > 0 {
		l.mu.Lock()
		w = l.local.register(l, proc, namesSet(proc))
		l.mu.Unlock()
		defer func() {
			l.mu.Lock()
			l.local.unregister(w)
			l.mu.Unlock()
		}()
	}
	n := len(normal)
	allKeys := make([]string, n)
	for i, name := range normal {
		allKeys[i] = l.key(name)
	}
	keys := make([]string, n)
	order := make([]string, n)
	for {
		rot := l.rot.Add(1)
		start := int(rot % uint32(n))
		for i := range n {
			order[i] = normal[(start+i)%n]
			keys[i] = allKeys[(start+i)%n]
		}
		// Every other call, process-specific channels go first, so that
		// neither kind starves the other.
		if w != nil && rot%2 == 0 {
			l.mu.Lock()
			if ch, c, ok := l.local.takeNames(l, proc); ok {
				l.mu.Unlock()
				return ch, c, nil
			}
			l.mu.Unlock()
		}
		// First without waiting: under load a message is usually there.
		p, sh, err := l.pollShards(ctx, keys, order)
		if p == nil && (err == nil || len(l.shards) > 1) {
			if w != nil {
				l.mu.Lock()
				if ch, c, ok := l.local.takeNames(l, proc); ok {
					l.mu.Unlock()
					return ch, c, nil
				}
				l.mu.Unlock()
			}
			var berr error
			p, sh, berr = l.blockingPop(ctx, w, keys)
			if err == nil {
				err = berr
			}
		}
		if p != nil {
			name := strings.TrimPrefix(p.key, l.s.prefix)
			if c, ok := l.deliverPopped(sh, p, name); ok {
				return name, c, nil
			}
			continue
		}
		if l.closed() {
			return "", nil, channels.ErrLayerClosed
		}
		if err := ctx.Err(); err != nil {
			return "", nil, err
		}
		if err != nil && !errors.Is(err, context.Canceled) {
			return "", nil, l.failCtx(ctx, "receive", err)
		}
		if w != nil {
			l.mu.Lock()
			if ch, c, ok := l.local.takeNames(l, proc); ok {
				l.mu.Unlock()
				return ch, c, nil
			}
			werr := w.err
			w.fired, w.err = false, nil
			l.mu.Unlock()
			if werr != nil {
				return "", nil, werr
			}
		}
	}
}

// blockingPop waits for a message on keys for at most one block timeout,
// and less when the waiter w (if any) is woken by a message on a
// process-specific channel or the layer closes.
func (l *Layer) blockingPop(ctx context.Context, w *waiter, keys []string) (*popped, *shard, error) {
	ictx, cancel := context.WithCancel(ctx)
	defer cancel()
	if w != nil {
		l.mu.Lock()
		if w.fired {
			cancel()
		} else {
			w.notify = cancel
		}
		l.mu.Unlock()
		defer func() {
			l.mu.Lock()
			w.notify = nil
			l.mu.Unlock()
		}()
	}
	stopClose := context.AfterFunc(l.closeCtx, cancel)
	defer stopClose()
	return l.block(ictx, keys)
}

// deliverPopped decodes a message popped from an ordinary channel. It
// reports false when the message had expired or cannot be decoded (it is
// then counted and dropped).
func (l *Layer) deliverPopped(sh *shard, p *popped, name string) (channels.Content, bool) {
	now := time.Now()
	if l.expired(p.score, now) {
		l.st.expired.Add(1)
		l.writeMarks([]mark{{shard: sh, channel: name, score: p.score}})
		return nil, false
	}
	d, err := decodeMember(p.member)
	if err != nil {
		l.st.undeliverable.Add(1)
		l.s.log.Error("dropped a message that cannot be decoded", "channel", name, "error", err)
		return nil, false
	}
	l.st.received.Add(1)
	return d.c, true
}

// blockFor is how long the next blocking pop may wait.
func (l *Layer) blockFor(ctx context.Context) (time.Duration, bool) {
	t := l.s.blockTimeout
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl)
		if left <= 0 {
			return 0, false
		}
		t = min(t, left)
	}
	return t, true
}

// pollShards takes one message from keys (ordinary channels named names)
// without waiting, trying the hosts in turn from a rotating start. It
// returns the first error when no host had a message.
func (l *Layer) pollShards(ctx context.Context, keys, names []string) (*popped, *shard, error) {
	n := len(l.shards)
	start := 0
	if n > 1 {
		start = int(l.rot.Load() % uint32(n))
	}
	var firstErr error
	for i := range n {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		sh := l.shards[(start+i)%n]
		p, expired, err := sh.poll(ctx, keys, names)
		if expired > 0 {
			l.st.expired.Add(uint64(expired))
		}
		if p != nil {
			return p, sh, nil
		}
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return nil, nil, firstErr
}

// block takes one message from keys, waiting at most one block timeout.
// With several hosts it waits on all of them at once and puts back any
// message popped after the first.
func (l *Layer) block(ctx context.Context, keys []string) (*popped, *shard, error) {
	t, ok := l.blockFor(ctx)
	if !ok {
		return nil, nil, ctx.Err()
	}
	n := len(l.shards)
	if n == 1 {
		return l.bpopOn(ctx, l.shards[0], keys, t)
	}
	type result struct {
		p   *popped
		sh  *shard
		err error
	}
	mctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan result, n)
	for _, sh := range l.shards {
		go func() {
			p, _, err := l.bpopOn(mctx, sh, keys, t)
			results <- result{p, sh, err}
		}()
	}
	var (
		win      *result
		firstErr error
	)
	for range n {
		r := <-results
		switch {
		case r.p != nil && win == nil:
			win = &r
			cancel()
		case r.p != nil:
			l.pushBack(r.sh, r.p)
		case r.err != nil && firstErr == nil && !errors.Is(r.err, context.Canceled):
			firstErr = r.err
		}
	}
	if win != nil {
		return win.p, win.sh, nil
	}
	return nil, nil, firstErr
}

// bpopOn runs one blocking pop on a pooled connection of sh.
func (l *Layer) bpopOn(ctx context.Context, sh *shard, keys []string, t time.Duration) (*popped, *shard, error) {
	bc, err := sh.acquire(ctx)
	if err != nil {
		return nil, nil, err
	}
	p, err := sh.bpop(ctx, bc, keys, t)
	var broken errBroken
	sh.release(bc, errors.As(err, &broken))
	if p != nil {
		return p, sh, nil
	}
	return nil, nil, err
}

// Poll implements channels.Poller: a Receive that does not wait. For
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
	var normal, proc []string
	for _, n := range names {
		if nonLocal(n) != n {
			proc = append(proc, n)
		} else {
			normal = append(normal, n)
		}
	}
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
	n := len(normal)
	start := int(l.rot.Add(1) % uint32(n))
	keys := make([]string, n)
	order := make([]string, n)
	for i := range n {
		order[i] = normal[(start+i)%n]
		keys[i] = l.key(order[i])
	}
	for i := range l.shards {
		sh := l.shards[(start+i)%len(l.shards)]
		for {
			p, expired, err := sh.poll(ctx, keys, order)
			if expired > 0 {
				l.st.expired.Add(uint64(expired))
			}
			if err != nil {
				return "", nil, l.failCtx(ctx, "poll", err)
			}
			if p == nil {
				break
			}
			name := strings.TrimPrefix(p.key, l.s.prefix)
			if c, ok := l.deliverPopped(sh, p, name); ok {
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
