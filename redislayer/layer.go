package redislayer

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"math/bits"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/inmemory"
	"github.com/gochannels/channels/internal/rawio"
	"github.com/redis/rueidis"
)

// ErrUnavailable is wrapped by the errors of calls that failed because
// Redis could not be reached or did not answer in time. The call may be
// retried; the layer reconnects by itself. It matches
// channels.ErrUnavailable with errors.Is, so code that does not import this
// package can tell an outage from other errors.
var ErrUnavailable error = unavailableError{}

type unavailableError struct{}

func (unavailableError) Error() string { return "redislayer: Redis unavailable" }

// Is makes errors.Is(err, channels.ErrUnavailable) true.
func (unavailableError) Is(target error) bool { return target == channels.ErrUnavailable }

// Layer is a channel layer on one or more Redis servers. It is safe for
// concurrent use by any number of goroutines.
type Layer struct {
	s      settings
	shards []*shard
	clock  clock

	// Lua patterns for the capacity rules, or ok=false when one rule
	// cannot be evaluated in Lua (a Regexp rule).
	luaCaps   []string
	luaCapsOK bool

	rot atomic.Uint32 // rotates receive order
	// turns counts the sends of each ordinary channel, to send its
	// messages to the hosts in turn (nil with one host or
	// Config.GoReceiversOnly). Channels whose names hash to the same slot
	// share a counter.
	turns    *[turnSlots]atomic.Uint32
	turnSeed maphash.Seed
	mixRot   atomic.Uint32 // alternates the kind a mixed Receive serves first

	// Arguments that never change, formatted once.
	keyTTLArg, markerTTLArg, groupTTLArg string
	markerPfx                            string
	capStrs                              map[int]string // capacities as arguments
	keyTTLms, epochTTLms                 int64

	closeCtx  context.Context
	closeFn   context.CancelFunc
	kmu       sync.RWMutex
	keys      map[string]string // see keyOf
	popsMu    sync.Mutex
	pops      map[*bconn]struct{} // connections with a blocking pop under way
	closeOnce sync.Once
	wg        sync.WaitGroup

	// Process-specific channels: buffers, waiters and the receive loops'
	// state. See local.go.
	mu    sync.Mutex
	local localState

	// Ordinary and single-reader channels: buffers, waiters and fetchers.
	// See fetch.go.
	rmu sync.Mutex
	ord ordState

	st    counters
	rates rateTable
	loss  lossWatchers
}

// shard is one Redis host.
type shard struct {
	l      *Layer
	index  int
	name   string // for logs, without password
	client rueidis.Client

	// zmpop: the server has ZMPOP (Redis 7), so pops over several keys need
	// no Lua.
	zmpop bool

	// batch gathers concurrent sends, which run on sendConns (see
	// send.go); in Cluster mode there is a batcher per hash slot, and
	// they use the cluster client.
	batch        batcher
	sendConns    chan rueidis.DedicatedClient
	slotBatchers sync.Map // hash slot → *batcher
	cluster      bool
	nodes        nodes // Cluster mode: which node serves a slot

	// Dedicated connections for blocking pops.
	sem  chan struct{}
	cmu  sync.Mutex
	free []*bconn

	loop loopState // guarded by l.mu

	epoch string // the host's epoch (see epoch.go); epochLoop only, after New
}

// New connects to the configured Redis hosts and returns a layer. It fails
// when the configuration is invalid or a host cannot be reached (within
// Config.Timeout); it then wraps ErrUnavailable.
func New(ctx context.Context, cfg Config) (*Layer, error) {
	s, err := cfg.settings()
	if err != nil {
		return nil, err
	}
	l := &Layer{s: s}
	l.closeCtx, l.closeFn = context.WithCancel(context.Background())
	l.pops = make(map[*bconn]struct{})
	l.keys = make(map[string]string)
	context.AfterFunc(l.closeCtx, l.interruptPops)
	l.local.init()
	l.ord.init()
	if !s.goOnly && len(s.hosts) > 1 {
		l.turns = new([turnSlots]atomic.Uint32)
		l.turnSeed = maphash.MakeSeed()
	}
	l.keyTTLms = max(s.expiry.Milliseconds(), 1) // channels_redis's
	if s.goOnly {
		l.keyTTLms = 2*s.expiry.Milliseconds() + 1000
	}
	l.keyTTLArg = strconv.FormatInt(l.keyTTLms, 10)
	l.epochTTLms = max(s.groupExpiry, time.Minute).Milliseconds()
	l.markerTTLArg = strconv.FormatInt(max(s.groupExpiry.Milliseconds(), 1000), 10)
	l.groupTTLArg = strconv.FormatInt(max(s.groupExpiry.Milliseconds(), 1), 10)
	l.markerPfx = s.prefix + ":expired:"
	if s.cluster {
		l.markerPfx += "{"
	}
	l.capStrs = map[int]string{
		s.caps.Default(): strconv.Itoa(s.caps.Default()),
		s.processCap:     strconv.Itoa(s.processCap),
	}
	for _, r := range s.rules {
		l.capStrs[r.Capacity] = strconv.Itoa(r.Capacity)
	}
	l.luaCapsOK = true
	for _, r := range s.rules {
		if r.Regexp != nil {
			l.luaCapsOK = false
			break
		}
		p, ok := globToLua(r.Pattern)
		if !ok {
			l.luaCapsOK = false
			break
		}
		l.luaCaps = append(l.luaCaps, p, strconv.Itoa(r.Capacity))
	}
	hosts := s.hosts
	if len(s.sentinels) > 0 || s.cluster {
		hosts = hosts[:1] // a Cluster's other hosts are seeds: see connect
	}
	for i, h := range hosts {
		sh, err := l.connect(ctx, i, h)
		if err != nil {
			l.closeShards()
			return nil, err
		}
		l.shards = append(l.shards, sh)
	}
	for _, sh := range l.shards {
		l.wg.Add(2)
		go l.procLoop(sh)
		go l.epochLoop(sh)
	}
	l.wg.Add(1)
	go l.ordJanitor()
	return l, nil
}

// Open is New with a configuration written as one URL; see ParseURL for
// the parameters. For example:
//
//	redis://:secret@redis.internal:6379/0?prefix=chat&capacity=200&expiry=30
func Open(ctx context.Context, rawURL string) (*Layer, error) {
	cfg, err := ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	return New(ctx, cfg)
}

func (l *Layer) connect(ctx context.Context, index int, rawURL string) (*shard, error) {
	opt, err := rueidis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("redislayer: host %q: %w", redact(rawURL), err)
	}
	name := redact(rawURL)
	if opt.TLSConfig != nil && l.s.tlsConfig != nil {
		tc := l.s.tlsConfig.Clone()
		if tc.ServerName == "" {
			tc.ServerName = opt.TLSConfig.ServerName
		}
		tc.InsecureSkipVerify = tc.InsecureSkipVerify || opt.TLSConfig.InsecureSkipVerify
		opt.TLSConfig = tc
	}
	if l.s.cluster {
		opt.InitAddress, err = l.clusterSeeds()
		if err != nil {
			return nil, err
		}
		if opt.SelectDB != 0 {
			return nil, fmt.Errorf("redislayer: host %q: Redis Cluster has only database 0", name)
		}
		name = "cluster:" + strings.Join(opt.InitAddress, ",")
	} else if len(l.s.sentinels) > 0 {
		opt.InitAddress = l.s.sentinels
		opt.Sentinel.MasterSet = l.s.masterName
		opt.Sentinel.Username = opt.Username
		opt.Sentinel.Password = opt.Password
		opt.Sentinel.TLSConfig = opt.TLSConfig
		name = "sentinel:" + l.s.masterName
	} else {
		opt.ForceSingleClient = true
	}
	opt.DisableCache = true
	// Each connection's ring of calls under way: 256 slots (the smallest
	// rueidis recommends) instead of 1,024. Dedicated connections have one
	// call under way at a time, and a batch of sends takes one slot for
	// its whole MULTI, so the larger rings were about 1 MB of heap per
	// process that nothing used; a call that finds its connection's ring
	// full waits for a slot, it does not fail.
	opt.RingScaleEachConn = 8
	opt.ReadBufferEachConn = l.s.connBuffer
	opt.WriteBufferEachConn = l.s.connBuffer
	// Dedicated connections: blocking pops and fetchers, send batches, the
	// receive loop, and a few to spare.
	opt.BlockingPoolSize = l.s.receiveConns + maxRunningBatches + 4
	opt.MaxFlushDelay = l.s.flushDelay
	if l.s.timeout > 0 {
		// A pipelined connection whose replies stop coming is closed
		// after this long (rueidis pings it after Dialer.KeepAlive without
		// replies), failing every call waiting on it: the hot paths rely
		// on that instead of a context per call.
		opt.ConnWriteTimeout = l.s.timeout
	}
	opt.PipelineMultiplex = bits.Len(uint(l.s.pipelineConns)) - 1 // connections = 2^PipelineMultiplex
	if opt.Dialer.Timeout == 0 && l.s.timeout > 0 {
		opt.Dialer.Timeout = min(l.s.timeout, rueidis.DefaultDialTimeout)
	}
	if opt.ClientName == "" {
		opt.ClientName = "channels-go"
	}
	opt.ClientSetInfo = rueidis.DisableClientSetInfo
	if opt.TLSConfig == nil && opt.DialCtxFn == nil && opt.DialFn == nil {
		opt.DialCtxFn = dialRaw
	}
	client, err := rueidis.NewClient(opt)
	if err != nil {
		return nil, l.fail("connect to "+name, err)
	}
	if l.s.cluster && client.Mode() != rueidis.ClientModeCluster {
		client.Close()
		return nil, fmt.Errorf("redislayer: %s is not a Redis Cluster (cluster_enabled is off); drop Cluster to use it as a single host", name)
	}
	client = healingClient{Client: client, attempts: l.s.pipelineConns + 1, retried: func() { l.st.retried.Add(1) }}
	sh := &shard{
		l:       l,
		index:   index,
		name:    name,
		client:  client,
		sem:     make(chan struct{}, l.s.receiveConns),
		cluster: l.s.cluster,

		sendConns: make(chan rueidis.DedicatedClient, maxRunningBatches),
	}
	sh.batch.sh = sh
	sh.loop.kick = make(chan struct{}, 1)
	sh.loop.sweepCh = make(chan struct{})
	cctx, cancel := l.s.withTimeout(ctx)
	defer cancel()
	info, err := client.Do(cctx, client.B().Info().Section("server").Build()).ToString()
	if err != nil {
		client.Close()
		return nil, l.fail("connect to "+name, err)
	}
	sh.zmpop = serverMajor(info) >= 7
	if sh.epoch, err = sh.readEpoch(cctx); err != nil {
		client.Close()
		return nil, l.fail("connect to "+name, err)
	}
	return sh, nil
}

// clusterSeeds returns the addresses of the Cluster nodes given as hosts.
func (l *Layer) clusterSeeds() ([]string, error) {
	var out []string
	for _, h := range l.s.hosts {
		opt, err := rueidis.ParseURL(h)
		if err != nil {
			return nil, fmt.Errorf("redislayer: host %q: %w", redact(h), err)
		}
		out = append(out, opt.InitAddress...)
	}
	return out, nil
}

// serverMajor returns the major version in an INFO server reply, or 0.
func serverMajor(info string) int {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
			major, _, _ := strings.Cut(v, ".")
			n, _ := strconv.Atoi(major)
			return n
		}
	}
	return 0
}

// String describes the layer for logs.
func (l *Layer) String() string {
	names := make([]string, len(l.shards))
	for i, sh := range l.shards {
		names[i] = sh.name
	}
	return fmt.Sprintf("Redis layer (prefix %q, hosts %s)", l.s.prefix, strings.Join(names, ", "))
}

// GroupExpiry returns the configured group expiry; interface servers use it
// as the longest a WebSocket may stay open.
func (l *Layer) GroupExpiry() time.Duration { return l.s.groupExpiry }

// Prefix returns the key prefix.
func (l *Layer) Prefix() string { return l.s.prefix }

// Close stops the receive loops and closes the connections, blocking until
// the loops have stopped. Receive calls in progress return ErrLayerClosed,
// as do all later calls. Messages of ordinary and single-reader channels
// that this process had popped ahead of demand are put back in Redis
// first (see Config.ReceiveBuffer); messages of its process-specific
// channels held in memory are dropped with it. It is safe to call more
// than once and from any goroutine.
func (l *Layer) Close() error {
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.local.closed = true
		l.local.wakeAll(channels.ErrLayerClosed)
		for _, sh := range l.shards {
			sh.loop.interrupt()
		}
		l.mu.Unlock()
		l.rmu.Lock()
		l.ord.closed = true
		for _, f := range l.ord.fetchers {
			if f.popping {
				f.intr.interrupt()
			}
			for _, w := range f.waiters {
				w.wake()
			}
		}
		l.rmu.Unlock()
		l.closeFn()
		l.wg.Wait()
		l.putBackAll()
		l.closeShards()
	})
	return nil
}

func (l *Layer) closeShards() {
	for _, sh := range l.shards {
		sh.cmu.Lock()
		for _, bc := range sh.free {
			bc.close()
		}
		sh.free = nil
		sh.cmu.Unlock()
		for done := false; !done; {
			select {
			case dc := <-sh.sendConns:
				dc.Close()
			default:
				done = true
			}
		}
		sh.client.Close()
	}
}

func (l *Layer) closed() bool { return l.closeCtx.Err() != nil }

// shardFor returns the host of a channel or group name: channels_redis's
// consistent hash of the name, or of the process prefix for a
// process-specific channel. (channels_redis 4.0 hashes the full name when
// it sends to a process-specific channel and the prefix when it receives,
// so with several hosts its messages can land where nobody reads; this
// layer hashes the prefix on both sides.)
func (l *Layer) shardFor(name string) *shard {
	if len(l.shards) == 1 {
		return l.shards[0]
	}
	return l.shards[ConsistentHash(nonLocal(name), len(l.shards))]
}

// turnSlots is the number of send counters of a layer over several hosts
// (see Layer.turns).
const turnSlots = 4096

// sendShard returns the host a message to channel goes to: for an
// ordinary channel, the hosts in turn, as channels_redis 4 sends them (its
// receivers read the hosts in turn, waiting on each until a message
// comes); with Config.GoReceiversOnly, and for single-reader and
// process-specific channels, shardFor's host. Single-reader channels keep
// their order that way: no channels_redis process can name them (its
// channel names have no '?'). Receivers of ordinary channels read every
// host either way.
//
// The turn is counted per channel, from the first host: a channel's
// messages then alternate between the hosts however sends to several
// channels interleave, as a channels_redis receiver of that channel
// alternates (starting, in a new process, with the first host).
// channels_redis counts one turn for all channels, so that interleaved
// sends can leave all of one channel's messages on one host.
func (l *Layer) sendShard(channel string) *shard {
	if !l.inTurn(channel) {
		return l.shardFor(channel)
	}
	c := &l.turns[maphash.String(l.turnSeed, channel)%turnSlots]
	return l.shards[int(c.Add(1)-1)%len(l.shards)]
}

// inTurn reports whether messages to channel go to the hosts in turn (see
// sendShard), each host then holding up to the channel's capacity.
func (l *Layer) inTurn(channel string) bool {
	return l.turns != nil && len(l.shards) > 1 && strings.IndexAny(channel, "!?") < 0
}

// key returns the Redis key of a channel (of its process prefix for a
// process-specific channel); in Cluster mode the name is a hash tag.
func (l *Layer) key(name string) string {
	if l.s.cluster {
		return l.s.prefix + "{" + nonLocal(name) + "}"
	}
	return l.s.prefix + nonLocal(name)
}

// keyCacheSize bounds the keys keyOf remembers.
const keyCacheSize = 4096

// keyOf is key for a name without '!' or a process prefix (what a
// channel's key is named after), remembered for the names in use.
func (l *Layer) keyOf(name string) string {
	l.kmu.RLock()
	k, ok := l.keys[name]
	l.kmu.RUnlock()
	if ok {
		return k
	}
	k = l.key(name)
	l.kmu.Lock()
	if len(l.keys) >= keyCacheSize {
		clear(l.keys)
	}
	l.keys[name] = k
	l.kmu.Unlock()
	return k
}

// nameOf returns the channel name (the process prefix for a
// process-specific key) of a channel key.
func (l *Layer) nameOf(key string) string {
	n := strings.TrimPrefix(key, l.s.prefix)
	if l.s.cluster && len(n) >= 2 && n[0] == '{' && n[len(n)-1] == '}' {
		n = n[1 : len(n)-1]
	}
	return n
}

// slotTag returns what decides the hash slot of a channel's keys in
// Cluster mode (its name, or its process prefix), and "" otherwise.
func (l *Layer) slotTag(name string) string {
	if l.s.cluster {
		return nonLocal(name)
	}
	return ""
}

func (l *Layer) groupKey(group string) string {
	if l.s.cluster {
		return l.s.prefix + ":group:{" + group + "}"
	}
	return l.s.prefix + ":group:" + group
}

// markerPrefix is what the Lua scripts put before a channel name to make
// its marker key; in Cluster mode it ends in '{', and the scripts close
// the hash tag.
func (l *Layer) markerPrefix() string { return l.markerPfx }

// capacity returns the capacity of the Redis key that holds channel's
// messages. An ordinary or single-reader channel has its own: the first
// ChannelCapacity rule matching its name, else Capacity. The
// process-specific channels of one process share one key, bounded as a
// whole, as in channels_redis: the first rule matching the process prefix
// ("http.response!*" matches "http.response!"), else ProcessCapacity.
func (l *Layer) capacity(channel string) int {
	nl := nonLocal(channel)
	if nl == channel {
		return l.s.caps.For(channel)
	}
	if n, ok := l.s.caps.Rule(nl); ok {
		return n
	}
	return l.s.processCap
}

// markerKey is the key of the expiry marker of a channel.
func (l *Layer) markerKey(channel string) string {
	if l.s.cluster {
		nl := nonLocal(channel)
		return l.markerPfx + nl + "}" + channel[len(nl):]
	}
	return l.markerPfx + channel
}

// keyTTL is how long a channel key outlives its last message: the
// expiry, as channels_redis sets it, so that no Python receiver gets a
// message of this layer after it expired; with Config.GoReceiversOnly
// twice the expiry (plus a second), so that expired messages stay long
// enough to be seen (and their channels evicted from groups) before the
// key goes.
func (l *Layer) keyTTL() string { return l.keyTTLArg }

func (l *Layer) markerTTL() string { return l.markerTTLArg }

func (l *Layer) groupTTL() string { return l.groupTTLArg }

// cutoff is the newest score that has expired at score now.
func (l *Layer) cutoff(now int64) string { return formatMicros(now - l.s.expiry.Microseconds()) }

func (l *Layer) expired(score float64, now time.Time) bool {
	return !now.Before(scoreTime(score).Add(l.s.expiry))
}

// fail classifies an error from Redis: the caller's own cancellation is
// returned as is, everything that means Redis is out of reach (network
// errors, timeouts, a server loading or failing over) wraps ErrUnavailable
// and is counted.
func (l *Layer) fail(op string, err error) error {
	return l.failCtx(nil, op, err)
}

func (l *Layer) failCtx(ctx context.Context, op string, err error) error {
	return l.failOp(ctx, op, "", err)
}

// opString names an operation in errors: verb, and the quoted name if any.
// It is built only when an error is returned.
func opString(verb, name string) string {
	if name == "" {
		return verb
	}
	return verb + " " + strconv.Quote(name)
}

// failOp is failCtx for an operation on a named channel or group.
func (l *Layer) failOp(ctx context.Context, verb, name string, err error) error {
	if err == nil {
		return nil
	}
	op := opString(verb, name)
	if ctx != nil && ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return fmt.Errorf("redislayer: %s: %w", op, ctx.Err())
	}
	if l.closed() {
		return fmt.Errorf("redislayer: %s: %w", op, channels.ErrLayerClosed)
	}
	if !isUnavailable(err) {
		l.st.errors.Add(1)
		return fmt.Errorf("redislayer: %s: %w", op, err)
	}
	l.st.unavailable.Add(1)
	return fmt.Errorf("%w: %s: %w", ErrUnavailable, op, err)
}

// isUnavailable tells errors that may heal by themselves (network errors,
// timeouts, a server loading or failing over) from those that will not: a
// command refused by Redis, a wrong password, an untrusted certificate.
func isUnavailable(err error) bool {
	var re *rueidis.RedisError
	if errors.As(err, &re) {
		return unavailableRedisErr(re)
	}
	var (
		verr *tls.CertificateVerificationError
		uerr x509.UnknownAuthorityError
		herr x509.HostnameError
	)
	if errors.As(err, &verr) || errors.As(err, &uerr) || errors.As(err, &herr) {
		return false
	}
	msg := err.Error()
	for _, p := range []string{"WRONGPASS", "NOAUTH", "NOPERM"} {
		if strings.Contains(msg, p) {
			return false
		}
	}
	return true
}

func unavailableRedisErr(re *rueidis.RedisError) bool {
	msg := re.Error()
	for _, p := range []string{"LOADING", "MASTERDOWN", "READONLY", "TRYAGAIN", "CLUSTERDOWN", "BUSY"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

func (l *Layer) checkChannels(names []string) error {
	for _, n := range names {
		if err := l.s.names.CheckChannel(n); err != nil {
			return err
		}
	}
	return nil
}

// NewChannel implements channels.Layer: pattern followed by 12 random
// characters (72 bits). For a single-reader ('?') pattern it also checks,
// in one round trip, that no messages wait under the name; for a
// process-specific ('!') one it does not block.
func (l *Layer) NewChannel(ctx context.Context, pattern string) (string, error) {
	if err := l.s.names.CheckPattern(pattern); err != nil {
		return "", err
	}
	if l.closed() {
		return "", channels.ErrLayerClosed
	}
	for {
		name := pattern + inmemory.RandomSuffix(12)
		if pattern[len(pattern)-1] == '!' {
			return name, nil
		}
		// Its messages may be on any host (sent in turn).
		found := false
		for _, sh := range l.shards {
			cctx, cancel := l.s.withTimeout(ctx)
			n, err := sh.client.Do(cctx, sh.client.B().Exists().Key(l.key(name)).Build()).AsInt64()
			cancel()
			if err != nil {
				return "", l.failCtx(ctx, "new channel", err)
			}
			found = found || n > 0
		}
		if !found {
			return name, nil
		}
	}
}

// Flush implements channels.Flusher: it deletes every key under the
// layer's prefix on every host (messages, groups, markers; not the epoch
// key, see OnDataLoss), scanning with
// SCAN so that Redis is never blocked, and empties this process's buffers.
// It blocks until done. Buffers of other processes sharing the prefix are not
// reached; their messages were taken from Redis already.
func (l *Layer) Flush(ctx context.Context) error {
	if l.closed() {
		return channels.ErrLayerClosed
	}
	l.mu.Lock()
	l.local.flush()
	l.mu.Unlock()
	l.rmu.Lock()
	l.ord.flush()
	l.rmu.Unlock()
	epoch := l.epochKey()
	err := l.scan(ctx, "", 0, func(sh *shard, keys []string) error {
		// The epoch stays: a flush is not a loss (see epoch.go).
		keys = slices.DeleteFunc(keys, func(k string) bool { return k == epoch })
		if len(keys) == 0 {
			return nil
		}
		cctx, cancel := l.s.withTimeout(ctx)
		defer cancel()
		if !sh.cluster {
			return sh.client.Do(cctx, sh.client.B().Unlink().Key(keys...).Build()).Error()
		}
		// One UNLINK per key: the keys are in different slots.
		cmds := make(rueidis.Commands, len(keys))
		for i, k := range keys {
			cmds[i] = sh.client.B().Unlink().Key(k).Build()
		}
		for _, r := range sh.client.DoMulti(cctx, cmds...) {
			if err := r.Error(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return l.failCtx(ctx, "flush", err)
	}
	// Messages popped by a receive loop before the keys went are dropped
	// by the flush generation (local.go); empty the buffers once more for
	// what arrived meanwhile.
	l.mu.Lock()
	l.local.flush()
	l.mu.Unlock()
	l.rmu.Lock()
	l.ord.flush()
	l.rmu.Unlock()
	return nil
}

// scan calls fn with the keys under the layer's prefix (of Redis type typ
// when not empty), batch by batch, on every host; in Cluster mode on every
// node, fn then getting the cluster client, which routes each key to its
// node. It stops after about limit keys per host or node when limit > 0.
func (l *Layer) scan(ctx context.Context, typ string, limit int, fn func(sh *shard, keys []string) error) error {
	match := globEscape(l.s.prefix) + "*"
	for _, sh := range l.shards {
		nodes := []rueidis.Client{sh.client}
		if sh.cluster {
			nodes = nodes[:0]
			for _, c := range sh.client.Nodes() {
				nodes = append(nodes, c)
			}
		}
		for _, c := range nodes {
			var cursor uint64
			seen := 0
			for {
				cmd := c.B().Scan().Cursor(cursor).Match(match).Count(1000)
				var built rueidis.Completed
				if typ != "" {
					built = cmd.Type(typ).Build()
				} else {
					built = cmd.Build()
				}
				cctx, cancel := l.s.withTimeout(ctx)
				e, err := c.Do(cctx, built).AsScanEntry()
				cancel()
				if err != nil {
					return err
				}
				if len(e.Elements) > 0 {
					if err := fn(sh, e.Elements); err != nil {
						return err
					}
				}
				seen += len(e.Elements)
				cursor = e.Cursor
				if cursor == 0 || limit > 0 && seen >= limit {
					break
				}
			}
		}
	}
	return nil
}

// globEscape escapes the glob characters of a SCAN MATCH pattern.
func globEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// counters are the layer's statistics.
type counters struct {
	sent, received, expired, full, groupSkipped, tooLarge atomic.Uint64
	unavailable, errors, reconnects, pushedBack, lost     atomic.Uint64
	undeliverable, evicted, retried, dataLosses, returned atomic.Uint64
	batches                                               atomic.Uint64 // send batches run (see batcher.run), for benchmarks
}

// Counters are figures of the layer's own health, beyond channels.Stats.
// Counters count since the layer was created.
type Counters struct {
	Unavailable   uint64 // calls that failed with ErrUnavailable
	Errors        uint64 // other errors returned by Redis (script errors, wrong types)
	Reconnects    uint64 // receive-loop recoveries after Redis was unreachable
	PushedBack    uint64 // messages popped ahead of demand and put back in Redis (unclaimed, or at Close)
	Lost          uint64 // messages popped that could be neither delivered nor put back (Redis went away meanwhile); logged
	Undeliverable uint64 // messages that could not be decoded or routed (no "__asgi_channel__"); logged and dropped
	Evicted       uint64 // group members evicted because a message expired unread on their channel
	Returned      uint64 // held messages put back in their channel because their hold ended unacknowledged (see ReceiveHeld)
	DataLosses    uint64 // times a host was found to have lost its data (restarted empty; see OnDataLoss)
	Retried       uint64 // calls run again because the connection they were written to was found closed by Redis (an idle connection after a restart)
	Buffered      int64  // messages popped and held in this process now (see Config.ReceiveBuffer and ProcessBuffer)
}

// Counters returns the layer's health figures. It does not contact Redis.
func (l *Layer) Counters() Counters {
	l.mu.Lock()
	buffered := l.local.total
	l.mu.Unlock()
	l.rmu.Lock()
	buffered += l.ord.total
	l.rmu.Unlock()
	return Counters{
		Unavailable:   l.st.unavailable.Load(),
		Errors:        l.st.errors.Load(),
		Reconnects:    l.st.reconnects.Load(),
		PushedBack:    l.st.pushedBack.Load(),
		Lost:          l.st.lost.Load(),
		Undeliverable: l.st.undeliverable.Load(),
		Evicted:       l.st.evicted.Load(),
		Retried:       l.st.retried.Load(),
		DataLosses:    l.st.dataLosses.Load(),
		Returned:      l.st.returned.Load(),
		Buffered:      int64(buffered),
	}
}

// statsScanLimit bounds the keys Stats looks at per host.
const statsScanLimit = 100000

// Stats implements channels.StatsReporter. The counters are this process's;
// Messages, Channels and Groups are read from Redis by scanning the keys
// under the prefix (at most 100 000 per host), plus the messages buffered
// in this process. Messages that expired are counted when the layer removes
// them, by whichever call notices.
func (l *Layer) Stats(ctx context.Context) (channels.Stats, error) {
	st := channels.Stats{
		Sent:         l.st.sent.Load(),
		Received:     l.st.received.Load(),
		Expired:      l.st.expired.Load(),
		Full:         l.st.full.Load(),
		GroupSkipped: l.st.groupSkipped.Load(),
		TooLarge:     l.st.tooLarge.Load(),
		Unavailable:  l.st.unavailable.Load(),
	}
	if l.closed() {
		return st, channels.ErrLayerClosed
	}
	l.mu.Lock()
	st.Messages = int64(l.local.total)
	l.mu.Unlock()
	l.rmu.Lock()
	st.Messages += int64(l.ord.total)
	l.rmu.Unlock()
	groupPrefix := l.s.prefix + ":group:"
	heldPrefix := l.s.prefix + ":held:"
	snapPrefix := l.s.prefix + snapshotInfix
	markers := l.markerPrefix()
	var seen map[string]bool // Cluster mode: keys met on several nodes (replicas)
	if l.s.cluster {
		seen = map[string]bool{}
	}
	err := l.scan(ctx, "zset", statsScanLimit, func(sh *shard, found []string) error {
		var keys []string
		for _, k := range found {
			if seen != nil {
				if seen[k] {
					continue
				}
				seen[k] = true
			}
			switch {
			case strings.HasPrefix(k, groupPrefix):
				st.Groups++
			case strings.HasPrefix(k, markers), strings.HasPrefix(k, heldPrefix), strings.HasPrefix(k, snapPrefix):
			default:
				keys = append(keys, k)
			}
		}
		if len(keys) == 0 {
			return nil
		}
		cmds := make(rueidis.Commands, len(keys))
		for i, k := range keys {
			cmds[i] = sh.client.B().Zcard().Key(k).Build()
		}
		cctx, cancel := l.s.withTimeout(ctx)
		defer cancel()
		for _, r := range sh.client.DoMulti(cctx, cmds...) {
			if n, err := r.AsInt64(); err == nil && n > 0 {
				st.Messages += n
				st.Channels++
			}
		}
		return nil
	})
	if err != nil {
		return st, l.failCtx(ctx, "stats", err)
	}
	return st, nil
}

// ChannelStats implements channels.StatsReporter. Length and Age are read
// from Redis; for a process-specific channel they cover every channel under
// its process prefix (they share one key), plus this channel's messages
// buffered here, and Capacity is the prefix's. An ordinary channel over
// several hosts is counted on every host: Length and Capacity are the sums
// of the hosts' (its messages go to the hosts in turn, each holding up to
// the capacity). PerSecond counts this process's sends to the channel over
// the last ten seconds.
func (l *Layer) ChannelStats(ctx context.Context, channel string) (channels.ChannelStats, error) {
	if err := l.s.names.CheckChannel(channel); err != nil {
		return channels.ChannelStats{}, err
	}
	cs := channels.ChannelStats{Capacity: l.capacity(channel), PerSecond: l.rates.rate(channel, time.Now())}
	if l.inTurn(channel) {
		// Each host takes up to the capacity, as Length counts every host.
		cs.Capacity *= len(l.shards)
	}
	if l.closed() {
		return cs, channels.ErrLayerClosed
	}
	now := l.clock.next()
	key := l.key(channel)
	hosts := []*shard{l.shardFor(channel)}
	if nonLocal(channel) == channel {
		hosts = l.shards // sent to the hosts in turn
	}
	oldest := math.Inf(1)
	for _, sh := range hosts {
		cctx, cancel := l.s.withTimeout(ctx)
		res := sh.client.DoMulti(cctx,
			sh.client.B().Zcount().Key(key).Min("("+l.cutoff(now)).Max("+inf").Build(),
			sh.client.B().Zrangebyscore().Key(key).Min("("+l.cutoff(now)).Max("+inf").Withscores().Limit(0, 1).Build(),
		)
		cancel()
		n, err := res[0].AsInt64()
		if err != nil {
			return cs, l.failCtx(ctx, "channel stats", err)
		}
		cs.Length += int(n)
		if zs, err := res[1].AsZScores(); err == nil && len(zs) > 0 {
			oldest = math.Min(oldest, zs[0].Score)
		}
	}
	if nonLocal(channel) != channel {
		l.mu.Lock()
		if n, first, ok := l.local.channelStats(channel); ok {
			cs.Length += n
			oldest = math.Min(oldest, first)
		}
		l.mu.Unlock()
	} else {
		l.rmu.Lock()
		if n, first, ok := l.ord.channelStats(channel); ok {
			cs.Length += n
			oldest = math.Min(oldest, first)
		}
		l.rmu.Unlock()
	}
	if !math.IsInf(oldest, 1) {
		cs.Age = max(time.Since(scoreTime(oldest)), 0)
	}
	return cs, nil
}

// rateTable tracks recent sends per channel for ChannelStats, for at most
// rateChannels channels. Recording a send takes no lock once the channel
// is known. When the table is full, channels idle for two windows are
// forgotten by a sweep that runs at most once per rateSweep: between
// sweeps a new channel is simply not tracked. (A sweep per send to a new
// channel made every reply to a fresh reply channel scan the whole table
// once thousands of HTTP requests had filled it.)
type rateTable struct {
	m         sync.Map // channel → *rate
	n         atomic.Int64
	lastSweep atomic.Int64 // Unix nanoseconds of the last sweep
}

type rate struct {
	windowStart atomic.Int64 // Unix nanoseconds
	count       atomic.Int64
	last        atomic.Uint64 // float64 bits: the rate of the previous window
}

const (
	rateChannels = 4096
	rateWindow   = 10 * time.Second
	rateSweep    = time.Second
)

func (t *rateTable) add(channel string, n int64, now time.Time) {
	v, ok := t.m.Load(channel)
	if !ok {
		if t.n.Load() >= rateChannels {
			last := t.lastSweep.Load()
			if now.UnixNano()-last < int64(rateSweep) || !t.lastSweep.CompareAndSwap(last, now.UnixNano()) {
				return // full, and swept a moment ago (or being swept now)
			}
			t.m.Range(func(k, v any) bool { // forget idle channels
				if now.Sub(time.Unix(0, v.(*rate).windowStart.Load())) > 2*rateWindow {
					t.m.Delete(k)
					t.n.Add(-1)
				}
				return true
			})
			if t.n.Load() >= rateChannels {
				return
			}
		}
		r := &rate{}
		r.windowStart.Store(now.UnixNano())
		var loaded bool
		if v, loaded = t.m.LoadOrStore(channel, r); !loaded {
			t.n.Add(1)
		}
	}
	r := v.(*rate)
	start := r.windowStart.Load()
	if el := now.UnixNano() - start; el >= int64(rateWindow) && r.windowStart.CompareAndSwap(start, now.UnixNano()) {
		n := r.count.Swap(0)
		r.last.Store(math.Float64bits(float64(n) / time.Duration(el).Seconds()))
	}
	r.count.Add(n)
}

func (t *rateTable) rate(channel string, now time.Time) float64 {
	v, ok := t.m.Load(channel)
	if !ok {
		return 0
	}
	r := v.(*rate)
	el := now.Sub(time.Unix(0, r.windowStart.Load()))
	last := math.Float64frombits(r.last.Load())
	switch {
	case el >= 2*rateWindow:
		return 0
	case el < time.Second && last > 0: // a window just began
		return last
	}
	return float64(r.count.Load()) / max(el, time.Second).Seconds()
}

var (
	_ channels.GroupLayer     = (*Layer)(nil)
	_ channels.Flusher        = (*Layer)(nil)
	_ channels.Poller         = (*Layer)(nil)
	_ channels.PrefixReceiver = (*Layer)(nil)
	_ channels.StatsReporter  = (*Layer)(nil)
)

// dialRaw dials a plain TCP connection to Redis whose reads and writes are
// raw system calls (internal/rawio): a busy layer's connections otherwise
// keep the Go scheduler's monitor handing processors between threads.
func dialRaw(ctx context.Context, addr string, d *net.Dialer, _ *tls.Config) (net.Conn, error) {
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return rawio.Wrap(c), nil
}
