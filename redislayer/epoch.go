package redislayer

import (
	"context"
	"sync"
	"time"

	"github.com/gochannels/channels/inmemory"
	"github.com/redis/rueidis"
)

// Each host holds an epoch key, "<prefix>:epoch", a random value written
// (SET NX) by the first layer to find it missing and read by every other
// layer sharing the prefix. Flush leaves it, and every read renews its
// expiry (the group expiry, at least a minute: it goes only once no layer
// has watched it for that long, and group memberships are gone by then
// too), so it disappears only with the host's data: when Redis restarts
// empty, or another program deletes the prefix's keys (channels_redis's
// flush does).
// Every layer reads it every epochInterval (every epochRetry while the host
// does not answer): a value other than the one it knows means every group
// membership and waiting message on that host is gone. The layer then
// counts it (Counters().DataLosses), logs it and calls the functions
// registered with OnDataLoss, so that interface servers can close or
// re-add their connections.

const (
	epochInterval = 250 * time.Millisecond
	epochRetry    = 50 * time.Millisecond
)

// epochKey is the key of the host's epoch.
func (l *Layer) epochKey() string {
	if l.s.cluster {
		return l.s.prefix + ":{epoch}"
	}
	return l.s.prefix + ":epoch"
}

// readEpoch writes a new epoch on sh unless it has one and returns the
// host's epoch.
func (sh *shard) readEpoch(ctx context.Context) (string, error) {
	c, key := sh.client, sh.l.epochKey()
	for {
		res := c.DoMulti(ctx,
			c.B().Set().Key(key).Value(inmemory.RandomSuffix(16)).Nx().PxMilliseconds(sh.l.epochTTLms).Build(),
			c.B().Pexpire().Key(key).Milliseconds(sh.l.epochTTLms).Build(),
			c.B().Get().Key(key).Build())
		for _, r := range res[:2] {
			if err := r.Error(); err != nil && !rueidis.IsRedisNil(err) {
				return "", err
			}
		}
		v, err := res[2].ToString()
		if rueidis.IsRedisNil(err) {
			continue // deleted between the two commands
		}
		return v, err
	}
}

// lossWatchers are the functions registered with OnDataLoss.
type lossWatchers struct {
	mu   sync.Mutex
	next int
	fns  map[int]func()
	back chan struct{} // closed when a host answers again, or lost its data
}

// recovered returns a channel closed the next time a host that did not
// answer answers again (or is found to have lost its data): the receive
// loops retry at once then, instead of at the end of their backoff.
func (w *lossWatchers) recovered() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.back == nil {
		w.back = make(chan struct{})
	}
	return w.back
}

func (w *lossWatchers) signalRecovered() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.back != nil {
		close(w.back)
		w.back = nil
	}
}

// OnDataLoss registers fn to be called each time the layer finds that a
// Redis host lost its data (it restarted empty, or the prefix's keys were
// deleted by another program): every group membership and every message
// waiting on that host is gone. It is noticed within about 250 ms of the
// host answering again. fn is called from a goroutine of the layer, once
// per host and loss, and must return quickly. The returned function
// unregisters fn. Interface servers use it to close the connections whose
// group memberships were lost (see gateway.CloseLayerDataLost).
func (l *Layer) OnDataLoss(fn func()) (unregister func()) {
	w := &l.loss
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fns == nil {
		w.fns = map[int]func(){}
	}
	id := w.next
	w.next++
	w.fns[id] = fn
	return func() {
		w.mu.Lock()
		delete(w.fns, id)
		w.mu.Unlock()
	}
}

// epochLoop watches the epoch of sh until the layer closes.
func (l *Layer) epochLoop(sh *shard) {
	defer l.wg.Done()
	down := false
	t := time.NewTimer(epochInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-l.closeCtx.Done():
			return
		}
		cctx, cancel := l.s.withTimeout(l.closeCtx)
		v, err := sh.readEpoch(cctx)
		cancel()
		if l.closed() {
			return
		}
		if err != nil {
			if !down {
				l.s.log.Debug("epoch check: Redis does not answer", "host", sh.name, "error", err)
			}
			down = true
			t.Reset(epochRetry)
			continue
		}
		if v != sh.epoch {
			l.dataLost(sh, v)
		} else if down {
			l.loss.signalRecovered()
		}
		down = false
		t.Reset(epochInterval)
	}
}

// dataLost records that sh lost its data and now has epoch v, and calls
// the OnDataLoss functions.
func (l *Layer) dataLost(sh *shard, v string) {
	sh.epoch = v
	l.st.dataLosses.Add(1)
	l.s.log.Warn("Redis lost its data (restarted empty, or the prefix's keys were deleted): group memberships and waiting messages on this host are gone", "host", sh.name)
	l.loss.signalRecovered()
	l.loss.mu.Lock()
	fns := make([]func(), 0, len(l.loss.fns))
	for _, fn := range l.loss.fns {
		fns = append(fns, fn)
	}
	l.loss.mu.Unlock()
	for _, fn := range fns {
		fn()
	}
}
