package redislayer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/internal/encoded"
	"github.com/redis/rueidis"
	"github.com/tinylib/msgp/msgp"
)

// Sends are batched: concurrent Sends to one host (one hash slot in
// Cluster mode) share one round trip: one MULTI holding, per Redis key,
// one ZADD of all its messages and what checks capacity (see execAdd). A
// Send that finds no batch under way runs its own once the Sends ready to
// run with it have joined (see batcher.send), so an idle layer adds no
// delay; while batches are under way, the Sends that arrive meanwhile
// queue and go out together in the next one.
// Under load a batch holds about as many messages as arrive during one
// round trip, which is what makes Redis spend a fraction of a call per
// message.

const (
	// maxRunningBatches is how many send batches one host (or slot) may
	// have under way at once; a second one would start only while the one
	// under way is small (smallBatch). One at a time makes the largest
	// batches: with two (under 50 concurrent echoes over two workers)
	// batches were a third smaller and Redis and the processes spent
	// about 10% more CPU per message, for no gain in latency.
	maxRunningBatches = 1
	smallBatch        = 16
	// maxBatchMessages and maxBatchBytes bound one batch.
	maxBatchMessages = 256
	maxBatchBytes    = 256 << 10
	// maxYields bounds how many times a Send that starts a batch yields
	// while other Sends keep joining it (see batcher.send).
	maxYields = 8
)

// sendReq is one message in a send batch.
type sendReq struct {
	channel string // channel name
	group   string // what shares its key: the name, or its process prefix
	member  []byte
	capStr  string

	res  byte // '1' sent, '0' full, '-' looks full: run the exact check
	err  error
	done chan struct{} // buffered: the result, or the lead of a batch
	lead []*sendReq    // a batch this Send must run
}

var reqPool = sync.Pool{New: func() any { return &sendReq{done: make(chan struct{}, 1)} }}

// batcher gathers the Sends to one host or slot.
type batcher struct {
	sh       *shard
	mu       sync.Mutex
	pending  []*sendReq
	spare    []*sendReq // the slice of a batch that ended, for pending
	running  int        // batches under way
	inFlight int        // messages in them
}

// send adds r to a batch and returns when its batch has run.
//
// A Send that starts a batch yields first, for as long as other Sends keep
// joining it (at most maxYields times): Sends made ready by one event (the
// frames of one network poll, the messages of one pop handed to a
// worker's goroutines) then share its round trip instead of the first of
// them going alone and the rest waiting for the next one. With nothing
// else to run, runtime.Gosched returns at once, so an idle layer adds no
// delay.
func (b *batcher) send(r *sendReq) {
	b.mu.Lock()
	b.pending = append(b.pending, r)
	if b.running == 0 || b.running < maxRunningBatches && b.inFlight < smallBatch {
		b.running++
		for range maxYields {
			n := len(b.pending)
			b.mu.Unlock()
			runtime.Gosched()
			b.mu.Lock()
			if len(b.pending) == n {
				break
			}
		}
		batch := b.takeLocked()
		if batch == nil { // taken meanwhile by a batch that ended
			b.running--
		}
		b.inFlight += len(batch)
		b.mu.Unlock()
		if batch != nil {
			b.run(batch)
		}
	} else {
		b.mu.Unlock()
	}
	for {
		<-r.done
		if r.lead == nil {
			return
		}
		batch := r.lead
		r.lead = nil
		b.run(batch)
	}
}

// takeLocked takes the next batch from the pending sends.
func (b *batcher) takeLocked() []*sendReq {
	n, size := 0, 0
	for n < len(b.pending) && n < maxBatchMessages {
		size += len(b.pending[n].member)
		if n > 0 && size > maxBatchBytes {
			break
		}
		n++
	}
	if n == 0 {
		return nil
	}
	if n == len(b.pending) {
		batch := b.pending
		b.pending, b.spare = b.spare, nil
		return batch
	}
	batch := make([]*sendReq, n)
	copy(batch, b.pending)
	b.pending = append(b.pending[:0], b.pending[n:]...)
	return batch
}

// run executes a batch, hands the next one (if any) to one of its senders
// and wakes the senders of this one.
func (b *batcher) run(batch []*sendReq) {
	b.sh.l.st.batches.Add(1)
	b.sh.l.execSends(b.sh, batch)
	b.mu.Lock()
	b.inFlight -= len(batch)
	next := b.takeLocked()
	if next == nil {
		b.running--
	}
	b.inFlight += len(next)
	b.mu.Unlock()
	for _, r := range batch {
		r.done <- struct{}{}
	}
	// The next batch's runner is woken last, so that it runs next on
	// this thread, before the Sends just woken.
	if next != nil {
		next[0].lead = next
		next[0].done <- struct{}{}
	}
	// The batch's slice serves again for pending Sends.
	clear(batch)
	b.mu.Lock()
	if b.spare == nil && cap(batch) <= 2*maxBatchMessages {
		b.spare = batch[:0]
	}
	b.mu.Unlock()
}

// sendConn returns a connection for a send batch. Batches run on
// connections of their own, one per running batch: the write and the read
// happen in the goroutine running the batch, without the pipelining
// machinery's goroutines in between.
func (sh *shard) sendConn() rueidis.DedicatedClient {
	select {
	case dc := <-sh.sendConns:
		return dc
	default:
	}
	dc, _ := sh.client.Dedicate()
	return dc
}

// putSendConn returns a connection after a batch; one whose call failed
// without an answer from Redis is closed.
func (sh *shard) putSendConn(dc rueidis.DedicatedClient, err error) {
	if err != nil {
		if _, ok := rueidis.IsRedisErr(err); !ok {
			dc.Close()
			return
		}
	}
	select {
	case sh.sendConns <- dc:
	default:
		dc.Close()
	}
}

// execSends runs one batch on sh.
//
// A batch's connection that sat idle may have been closed by Redis
// meanwhile, unnoticed (see heal.go). When every reply of the batch's
// MULTI fails with that broken connection, Redis ran none of it, and the
// batch runs again on the host's client, which replaces broken
// connections, before its Sends fail.
func (l *Layer) execSends(sh *shard, batch []*sendReq) {
	var err error
	if sh.cluster {
		// The cluster client routes the batch (one slot) to its node.
		err = l.execSendsOn(sh, sh.client, batch)
	} else {
		dc := sh.sendConn()
		err = l.execSendsOn(sh, dc, batch)
		sh.putSendConn(dc, err)
		if isBrokenSend(err) && !l.closed() {
			l.st.retried.Add(1)
			err = l.execSendsOn(sh, sh.client, batch)
		}
	}
	if err != nil {
		return
	}
	// Send rates (ChannelStats), once per channel and batch.
	now := time.Now()
	for i := 0; i < len(batch); {
		j, n := i, int64(0)
		for ; j < len(batch) && batch[j].channel == batch[i].channel; j++ {
			if batch[j].res == '1' {
				n++
			}
		}
		if n > 0 {
			l.rates.add(batch[i].channel, n, now)
		}
		i = j
	}
}

// isBrokenSend reports whether err is an errBrokenSend.
func isBrokenSend(err error) bool {
	if err == nil {
		return false
	}
	var broken errBrokenSend
	return errors.As(err, &broken)
}

// sendScratch holds the slices one send batch fills, reused from batch to
// batch.
type sendScratch struct {
	names  []string     // the groups (keys) of the batch
	groups [][]*sendReq // their sends, in the order of names
	index  map[string]int
	one    [1][]*sendReq
	args   []string
	cmds   rueidis.Commands
}

var scratchPool = sync.Pool{New: func() any { return new(sendScratch) }}

// execSendsOn runs one batch on the connection dc of sh and returns the
// error of the call, if any.
func (l *Layer) execSendsOn(sh *shard, dc rueidis.CommandClient, batch []*sendReq) error {
	sc := scratchPool.Get().(*sendScratch)
	defer sc.put()
	same := true
	for _, r := range batch[1:] {
		if r.group != batch[0].group {
			same = false
			break
		}
	}
	if same {
		// One key, the usual case: the batch is its group.
		sc.one[0] = batch
		return l.execAdd(dc, sc, sc.one[:], formatMicros(l.clock.next()))
	}
	for _, r := range batch {
		gi := -1
		if len(sc.index) > 0 {
			if i, ok := sc.index[r.group]; ok {
				gi = i
			}
		} else {
			for i, n := range sc.names {
				if n == r.group {
					gi = i
					break
				}
			}
		}
		if gi < 0 {
			gi = len(sc.names)
			sc.names = append(sc.names, r.group)
			if cap(sc.groups) > gi {
				sc.groups = sc.groups[:gi+1] // its slice, emptied by put
			} else {
				sc.groups = append(sc.groups, nil)
			}
			if len(sc.index) > 0 {
				sc.index[r.group] = gi
			} else if len(sc.names) > 8 {
				if sc.index == nil {
					sc.index = make(map[string]int, len(batch))
				}
				for i, n := range sc.names {
					sc.index[n] = i
				}
			}
		}
		sc.groups[gi] = append(sc.groups[gi], r)
	}
	return l.execAdd(dc, sc, sc.groups, formatMicros(l.clock.next()))
}

// put empties sc (dropping what it refers to) and returns it to the pool.
func (sc *sendScratch) put() {
	sc.one[0] = nil
	clear(sc.names)
	sc.names = sc.names[:0]
	all := sc.groups[:cap(sc.groups)]
	for i, g := range all {
		clear(g)
		all[i] = g[:0]
	}
	sc.groups = sc.groups[:0]
	clear(sc.index)
	clear(sc.args)
	sc.args = sc.args[:0]
	clear(sc.cmds)
	sc.cmds = sc.cmds[:0]
	if cap(sc.args) > 4*maxBatchMessages || len(sc.groups) > 64 {
		return // grown by an unusual batch: let it go
	}
	scratchPool.Put(sc)
}

// execAdd adds messages to channel keys (one slice of sends per key: an
// ordinary channel, or the process prefix that the process-specific
// channels of one process share) with plain commands, no script: in one
// MULTI, per key a ZADD of all its messages, which share a score, then
// ZCARD and PEXPIRE. A key that holds more messages than its capacity (see
// Layer.capacity) afterwards is trimmed by trimScript, which counts live
// messages exactly and removes as many of the batch's messages as are over
// capacity (those that are not already received): their Sends get
// ErrChannelFull. A key can thus hold more than its capacity for the
// length of one round trip, and a message received meanwhile counts as
// sent.
func (l *Layer) execAdd(c rueidis.CommandClient, sc *sendScratch, groups [][]*sendReq, score string) error {
	cmds := sc.cmds[:0]
	cmds = append(cmds, c.B().Multi().Build())
	keys := make([]string, len(groups))
	for i, reqs := range groups {
		keys[i] = l.keyOf(reqs[0].group)
		args := sc.args[:0]
		for _, r := range reqs {
			args = append(args, score, rueidis.BinaryString(r.member))
		}
		sc.args = args
		cmds = append(cmds,
			c.B().Arbitrary("ZADD").Keys(keys[i]).Args(args...).Build(),
			c.B().Zcard().Key(keys[i]).Build(),
			c.B().Arbitrary("PEXPIRE").Keys(keys[i]).Args(l.keyTTLArg).Build())
	}
	cmds = append(cmds, c.B().Exec().Build())
	sc.cmds = cmds
	// No context per call: the connection's own timeout bounds the wait
	// (see connect).
	res := c.DoMulti(context.Background(), cmds...)
	arr, err := res[len(res)-1].ToArray()
	if err == nil {
		for _, r := range res[:len(res)-1] {
			if err = r.Error(); err != nil {
				break
			}
		}
	} else if allBroken(context.Background(), res) {
		err = errBrokenSend{err}
	}
	if err == nil && len(arr) != 3*len(groups) {
		err = fmt.Errorf("MULTI returned %d results for %d commands", len(arr), 3*len(groups))
	}
	var over []int
	for i, reqs := range groups {
		var size int64
		if err == nil {
			size, err = arr[3*i+1].AsInt64()
		}
		for _, r := range reqs {
			r.res, r.err = '1', err
		}
		if err == nil && size > int64(l.capacity(reqs[0].channel)) {
			over = append(over, i)
		}
	}
	if err != nil || len(over) == 0 {
		return err
	}
	tkeys := make([]string, len(over))
	args := []string{l.cutoff(l.clock.next())}
	for j, i := range over {
		tkeys[j] = keys[i]
		args = append(args, groups[i][0].capStr, strconv.Itoa(len(groups[i])))
		for _, r := range groups[i] {
			args = append(args, rueidis.BinaryString(r.member))
		}
	}
	out, err := trimScript.exec(context.Background(), c, tkeys, args).ToString()
	k := 0
	for _, i := range over {
		for _, r := range groups[i] {
			switch {
			case err != nil:
				r.err = err
			case k < len(out):
				r.res = out[k]
			}
			k++
		}
	}
	return err
}

// errBrokenSend is the error of a send batch whose connection was found
// broken before Redis answered any of it (see brokenConn).
type errBrokenSend struct{ err error }

func (e errBrokenSend) Error() string { return e.err.Error() }
func (e errBrokenSend) Unwrap() error { return e.err }

// batcherFor returns the batcher of the channels named group (the name,
// or the process prefix) on sh: one per host, one per hash slot in
// Cluster mode.
func (sh *shard) batcherFor(group string) *batcher {
	if sh.cluster {
		return sh.slotBatcher(crc16(group) % slotCount)
	}
	return &sh.batch
}

// Send implements channels.Layer. Concurrent sends to one host are batched
// (see the package documentation, Throughput): Send blocks for about one
// round trip to the channel's host, two when the batch takes the
// channel's key over its capacity, and never waits for room. The
// process-specific channels of one process are bounded together (see
// Config.ProcessCapacity).
func (l *Layer) Send(ctx context.Context, channel string, c channels.Content) error {
	if err := l.s.names.CheckChannel(channel); err != nil {
		return err
	}
	if l.closed() {
		return channels.ErrLayerClosed
	}
	buf := getBuf()
	defer putBuf(buf)
	member, err := l.encodeMember(*buf, "send to", channel, c, procOf(channel))
	*buf = member
	if err != nil {
		return err
	}
	return l.sendMember(ctx, channel, member)
}

// procOf returns channel when it is process-specific (its messages carry
// their channel's name, see encodeMember), and "" otherwise.
func procOf(channel string) string {
	if nonLocal(channel) != channel {
		return channel
	}
	return ""
}

// sendMember sends member, a message encoded for channel by encodeMember,
// in a batch (the rest of Send).
func (l *Layer) sendMember(ctx context.Context, channel string, member []byte) error {
	sh := l.sendShard(channel)
	r := reqPool.Get().(*sendReq)
	r.channel = channel
	r.group = nonLocal(channel)
	r.member = member
	r.capStr = l.capString(channel)
	sh.batcherFor(r.group).send(r)
	res, err := r.res, r.err
	*r = sendReq{done: r.done}
	reqPool.Put(r)
	if err != nil {
		return l.failOp(ctx, "send to", channel, err)
	}
	if res != '1' {
		l.st.full.Add(1)
		return fmt.Errorf("redislayer: %s: %w", opString("send to", channel), channels.ErrChannelFull)
	}
	l.st.sent.Add(1)
	return nil
}

// encLayer is the layer's encoded.Layer: a consumer's outbox holds its
// sends encoded (see package encoded).
type encLayer Layer

func init() {
	encoded.Register(func(l any) (encoded.Layer, bool) {
		if rl, ok := l.(*Layer); ok {
			return (*encLayer)(rl), true
		}
		return nil, false
	})
}

// Encode implements encoded.Layer: the member Send would make, in one
// allocation of its size.
func (e *encLayer) Encode(channel string, c map[string]any) ([]byte, bool) {
	l := (*Layer)(e)
	if l.s.names.CheckChannel(channel) != nil {
		return nil, false
	}
	buf := getBuf()
	defer putBuf(buf)
	member, err := l.encodeMember(*buf, "send to", channel, c, procOf(channel))
	*buf = member
	if err != nil {
		return nil, false
	}
	return bytes.Clone(member), true
}

// SendEncoded implements encoded.Layer. Every attempt sends the message
// under new random bytes, as Send would make it anew.
func (e *encLayer) SendEncoded(ctx context.Context, channel string, msg []byte) error {
	l := (*Layer)(e)
	if err := l.s.names.CheckChannel(channel); err != nil {
		return err
	}
	if l.closed() {
		return channels.ErrLayerClosed
	}
	if len(msg) < randomBytes {
		return fmt.Errorf("redislayer: %s: %w: not a message Encode made", opString("send to", channel), channels.ErrInvalidContent)
	}
	fillRandom(msg[:randomBytes])
	return l.sendMember(ctx, channel, msg)
}

// encodeMember validates c and appends to buf a sorted-set member: 12
// random bytes followed by the msgpack encoding of c. For a
// process-specific channel the map starts with "__asgi_channel__" =
// channel (channels_redis puts it anywhere; first lets the Lua scripts
// read it without decoding the message). verb and name name the operation
// in errors.
func (l *Layer) encodeMember(buf []byte, verb, name string, c channels.Content, channel string) ([]byte, error) {
	if _, ok := c[channelKey]; ok {
		return buf, fmt.Errorf("redislayer: %s: %w: key %q is reserved", opString(verb, name), channels.ErrInvalidContent, channelKey)
	}
	b := append(buf[:0], make([]byte, randomBytes)...)
	fillRandom(b[:randomBytes])
	n := uint32(len(c))
	if channel != "" {
		n++
	}
	b = msgp.AppendMapHeader(b, n)
	if channel != "" {
		b = msgp.AppendString(b, channelKey)
		b = msgp.AppendString(b, channel)
	}
	start := len(b)
	b, _, err := appendEntries(b, c, false)
	if err != nil {
		return b, fmt.Errorf("redislayer: %s: %w", opString(verb, name), err)
	}
	if err := l.checkSize(verb, name, c, len(b)-start+5); err != nil {
		return b, err
	}
	return b, nil
}

// checkSize checks the JSON size of c, whose msgpack encoding is at most
// n bytes long, against the limit; it measures only when the bound
// jsonBound(n) is over the limit.
func (l *Layer) checkSize(verb, name string, c channels.Content, n int) error {
	if l.s.maxSize <= 0 || jsonBound(n) <= l.s.maxSize {
		return nil
	}
	buf := getBuf()
	defer putBuf(buf)
	var size int
	*buf, size, _ = appendEntries((*buf)[:0], c, true)
	if size > l.s.maxSize {
		l.st.tooLarge.Add(1)
		return fmt.Errorf("redislayer: %s: %w (%d bytes, limit %d)", opString(verb, name), channels.ErrMessageTooLarge, size, l.s.maxSize)
	}
	return nil
}

// encodeBody validates c and returns the msgpack map header of a message
// with one more entry than c (for "__asgi_channel__") and c's encoded
// entries, for group sends.
func (l *Layer) encodeBody(verb, name string, c channels.Content) (head, entries []byte, err error) {
	if _, ok := c[channelKey]; ok {
		return nil, nil, fmt.Errorf("redislayer: %s: %w: key %q is reserved", opString(verb, name), channels.ErrInvalidContent, channelKey)
	}
	entries, _, err = appendEntries(nil, c, false)
	if err != nil {
		return nil, nil, fmt.Errorf("redislayer: %s: %w", opString(verb, name), err)
	}
	if err := l.checkSize(verb, name, c, len(entries)+5); err != nil {
		return nil, nil, err
	}
	return msgp.AppendMapHeader(nil, uint32(len(c))+1), entries, nil
}

// capString returns the capacity of channel's key as a decimal string.
func (l *Layer) capString(channel string) string {
	n := l.capacity(channel)
	if s, ok := l.capStrs[n]; ok {
		return s
	}
	return strconv.Itoa(n)
}
