// Package inmemory is a channel layer that lives in one process: the default
// for development (runserver) and for tests.
//
// It implements channels.GroupLayer, channels.Flusher, channels.Poller,
// channels.PrefixReceiver and channels.StatsReporter. Channels are bounded
// FIFO queues; messages expire when unread for Config.Expiry, and a channel
// on which a message expired unread is removed from every group it belonged
// to (its reader is deemed gone). Group memberships expire Config.GroupExpiry
// after their last GroupAdd.
//
// The reference in-memory layer of Django Channels defaulted to a capacity of
// 10; this one defaults to 100, like the Redis layer, because runserver runs
// real traffic through it. Process-specific channels (the reply channels of
// interface servers) default to 1000: their reader moves every message at
// once into a bounded per-connection queue with its own slow-client policy,
// so the layer's bound there only has to absorb bursts, such as a group
// broadcast produced faster than sockets can be written.
//
// An interface server in the same process (the gateway of runserver)
// attaches itself to the layer for its process prefixes: messages sent to
// its reply channels then go straight to it in the sender's goroutine and
// never wait in a queue here. A reply channel whose connection has ended is
// removed from its groups at once, since nothing can receive on it again.
package inmemory

import (
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/internal/capacities"
	"github.com/gochannels/channels/internal/fanout"
	"github.com/gochannels/channels/internal/naming"
	"github.com/gochannels/channels/internal/normal"
	"github.com/gochannels/channels/internal/owned"
)

// Defaults for Config's zero fields.
const (
	DefaultExpiry          = 60 * time.Second
	DefaultGroupExpiry     = 86400 * time.Second
	DefaultCapacity        = 100
	DefaultProcessCapacity = 1000
	DefaultMaxMessageSize  = 1 << 20
)

// Config configures a Layer. The zero value is a working default.
type Config struct {
	// Expiry is how long a message may wait unread. Zero means 60 s.
	Expiry time.Duration
	// GroupExpiry is how long a group membership lasts after its last
	// GroupAdd. Zero means 86 400 s.
	GroupExpiry time.Duration
	// Capacity is the number of messages a channel can hold. Zero means 100.
	Capacity int
	// ProcessCapacity is the capacity of process-specific channels (names
	// with '!') that no ChannelCapacity rule matches. Zero means 1000.
	ProcessCapacity int
	// ChannelCapacity gives other capacities to channels whose names match;
	// the first matching rule wins.
	ChannelCapacity []channels.CapacityRule
	// MaxMessageSize is the largest message accepted, measured as its JSON
	// encoding. Zero means 1 MiB.
	MaxMessageSize int
	// MaxNameLength is the length from which names are refused. Zero means
	// 100.
	MaxNameLength int
	// Now is the clock. Nil means time.Now. Tests inject a fake clock to
	// make messages and memberships expire without waiting.
	Now func() time.Time
}

// Layer is an in-process channel layer. It is safe for concurrent use.
type Layer struct {
	expiry, groupExpiry time.Duration
	maxSize             int
	caps                *capacities.Table
	processCap          int
	names               naming.Rules
	now                 func() time.Time

	mu        sync.Mutex
	closed    bool
	queues    map[string]*queue
	groups    map[string]map[string]time.Time // group → member → last add
	memberOf  map[string]map[string]struct{}  // channel → groups
	waiters   map[string]map[*waiter]struct{} // channel or prefix → receivers waiting
	ready     map[string]*readyList           // process prefix → channels with messages
	rot       uint32
	lastSweep time.Time
	stats     channels.Stats

	sinks     atomic.Pointer[sinkMap] // attached interface servers (see AttachLocal)
	localSent atomic.Uint64           // messages handed to attached sinks, counted as sent

	runners    map[string]*attachment // channel → attached worker (see AttachRunner); under mu
	hasRunners atomic.Bool            // len(runners) > 0
	inlineRun  atomic.Uint64          // messages taken by attached workers at send, counted as sent and received
}

type queue struct {
	items []entry
	head  int

	windowStart time.Time // for PerSecond
	windowCount int
	lastRate    float64
	lastSend    time.Time
}

type entry struct {
	c       channels.Content
	sent    time.Time
	expires time.Time
	shared  bool // the same content is queued for other group members: copy on receive
	// rec, for a group message, lists the members under this channel's
	// process prefix that the same message was queued for: a multi
	// receive takes it from all of them at once (see takeReady).
	rec *groupRec
}

// groupRec is one group message sent to several channels of one process
// prefix.
type groupRec struct{ members []string }

func (q *queue) len() int {
	if q == nil {
		return 0
	}
	return len(q.items) - q.head
}

// keepEmptyCap is the largest backing array an empty queue keeps.
const keepEmptyCap = 16

func (q *queue) push(e entry) { q.items = append(q.items, e) }

func (q *queue) pop() entry {
	e := q.items[q.head]
	q.items[q.head] = entry{}
	q.head++
	switch {
	case q.head == len(q.items) && cap(q.items) > keepEmptyCap:
		// Empty after a burst: let the array go. A reply channel's queue
		// stays in the layer for a whole expiry after its connection
		// closed, and a fan-out burst grows each to hundreds of entries.
		q.items, q.head = nil, 0
	case q.head == len(q.items):
		q.items, q.head = q.items[:0], 0
	case q.head >= 32 && q.head*2 >= len(q.items):
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
	return e
}

type waiter struct{ c chan struct{} }

func (w *waiter) wake() {
	select {
	case w.c <- struct{}{}:
	default:
	}
}

// readyList is a FIFO of the channel names under one process prefix that
// may hold messages, without duplicates.
type readyList struct {
	names []string
	in    map[string]bool
}

// New returns an empty layer. It returns an error only for an invalid
// ChannelCapacity rule.
func New(cfg Config) (*Layer, error) {
	l := &Layer{
		expiry:      cfg.Expiry,
		groupExpiry: cfg.GroupExpiry,
		maxSize:     cfg.MaxMessageSize,
		names:       naming.Rules{MaxLength: cfg.MaxNameLength},
		now:         cfg.Now,
		queues:      make(map[string]*queue),
		groups:      make(map[string]map[string]time.Time),
		memberOf:    make(map[string]map[string]struct{}),
		waiters:     make(map[string]map[*waiter]struct{}),
		ready:       make(map[string]*readyList),
	}
	if l.expiry <= 0 {
		l.expiry = DefaultExpiry
	}
	if l.groupExpiry <= 0 {
		l.groupExpiry = DefaultGroupExpiry
	}
	if l.maxSize <= 0 {
		l.maxSize = DefaultMaxMessageSize
	}
	if l.now == nil {
		l.now = time.Now
	}
	capacity := cfg.Capacity
	if capacity <= 0 {
		capacity = DefaultCapacity
	}
	caps, err := capacities.New(capacity, cfg.ChannelCapacity)
	if err != nil {
		return nil, fmt.Errorf("inmemory: %w", err)
	}
	l.caps = caps
	l.processCap = cfg.ProcessCapacity
	if l.processCap <= 0 {
		l.processCap = DefaultProcessCapacity
	}
	return l, nil
}

// MustNew is New for configurations known to be valid; it panics on error.
func MustNew(cfg Config) *Layer {
	l, err := New(cfg)
	if err != nil {
		panic(err)
	}
	return l
}

// String describes the layer for logs.
func (l *Layer) String() string { return "in-memory layer" }

// GroupExpiry returns the configured group expiry; interface servers use it
// as the longest a WebSocket may stay open.
func (l *Layer) GroupExpiry() time.Duration { return l.groupExpiry }

// Send implements channels.Layer.
func (l *Layer) Send(ctx context.Context, channel string, c channels.Content) error {
	return l.send(channel, c, false)
}

// SendOwned is Send for a caller that hands c over and never touches it
// again: content already in normal form (see channels.Content) is queued as
// it is, without a copy. The module's interface servers and the Runner's
// outbox use it for the messages they build.
func (l *Layer) SendOwned(ctx context.Context, channel string, c channels.Content) error {
	return l.send(channel, c, true)
}

// OwnedSenderLayer returns l: SendOwned is used only on the layer itself,
// never through a type that embeds it.
func (l *Layer) OwnedSenderLayer() any { return l }

var _ owned.Sender[channels.Content] = (*Layer)(nil)

func (l *Layer) send(channel string, c channels.Content, owned bool) error {
	nc, size, fits, err := l.prepare(channel, c, owned)
	if err != nil {
		return err
	}
	return l.enqueue(channel, nc, size, fits)
}

// prepare checks channel's name and returns c in normal form, its size
// and whether it fits the size limit. Content handed over (owned) in
// normal form is only checked against the limit (normal.Fits); other
// content is copied into normal form, which measures it.
func (l *Layer) prepare(channel string, c channels.Content, owned bool) (nc channels.Content, size int, fits bool, err error) {
	if err := l.names.CheckChannel(channel); err != nil {
		return nil, 0, false, err
	}
	nc, ok := c, false
	if owned {
		fits, ok = normal.Fits(c, l.maxSize)
		if ok && !fits {
			size, _ = normal.Size(c) // for the error
		}
	}
	if !ok {
		if nc, size, err = normal.Normalize(c); err != nil {
			return nil, 0, false, fmt.Errorf("inmemory: send to %q: %w", channel, err)
		}
		fits = size <= l.maxSize
	}
	return nc, size, fits, nil
}

// enqueue hands nc, as prepare returned it, to the interface server
// attached for channel, or queues it.
func (l *Layer) enqueue(channel string, nc channels.Content, size int, fits bool) error {
	if s := l.sinkFor(channel); s != nil && fits {
		l.sendLocal(s, channel, nc)
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return channels.ErrLayerClosed
	}
	if !fits {
		l.stats.TooLarge++
		return fmt.Errorf("inmemory: send to %q: %w (%d bytes, limit %d)", channel, channels.ErrMessageTooLarge, size, l.maxSize)
	}
	now := l.now()
	l.maybeSweep(now)
	if !l.push(channel, nc, now, false, nil) {
		l.stats.Full++
		return fmt.Errorf("inmemory: send to %q: %w", channel, channels.ErrChannelFull)
	}
	return nil
}

// push queues c on channel unless it is full. l.mu is held.
func (l *Layer) push(channel string, c channels.Content, now time.Time, shared bool, rec *groupRec) bool {
	q := l.queues[channel]
	if q == nil {
		q = &queue{windowStart: now}
		l.queues[channel] = q
	} else {
		l.dropExpired(channel, q, now)
	}
	if q.len() >= l.capacity(channel) {
		return false
	}
	q.push(entry{c: c, sent: now, expires: now.Add(l.expiry), shared: shared, rec: rec})
	q.lastSend = now
	if el := now.Sub(q.windowStart); el >= 10*time.Second {
		q.lastRate = float64(q.windowCount) / el.Seconds()
		q.windowStart, q.windowCount = now, 0
	}
	q.windowCount++
	l.stats.Sent++
	for w := range l.waiters[channel] {
		w.wake()
	}
	if p := naming.ProcessPrefix(channel); p != "" {
		rl := l.ready[p]
		if rl == nil {
			rl = &readyList{in: make(map[string]bool)}
			l.ready[p] = rl
		}
		if !rl.in[channel] {
			rl.in[channel] = true
			rl.names = append(rl.names, channel)
		}
		for w := range l.waiters[p] {
			w.wake()
		}
	}
	return true
}

// capacity returns the capacity of the named channel.
func (l *Layer) capacity(channel string) int {
	if n, ok := l.caps.Rule(channel); ok {
		return n
	}
	if naming.ProcessPrefix(channel) != "" {
		return l.processCap
	}
	return l.caps.Default()
}

// dropExpired discards the expired messages at the head of q and, if any
// expired, evicts the channel from every group. l.mu is held.
func (l *Layer) dropExpired(channel string, q *queue, now time.Time) {
	expired := false
	for q.len() > 0 && !now.Before(q.items[q.head].expires) {
		q.pop()
		l.stats.Expired++
		expired = true
	}
	if expired {
		for g := range l.memberOf[channel] {
			l.removeMember(g, channel)
		}
	}
}

func (l *Layer) removeMember(group, channel string) {
	if m := l.groups[group]; m != nil {
		delete(m, channel)
		if len(m) == 0 {
			delete(l.groups, group)
		}
	}
	if gs := l.memberOf[channel]; gs != nil {
		delete(gs, group)
		if len(gs) == 0 {
			delete(l.memberOf, channel)
		}
	}
}

// maybeSweep, at most once a second, drops expired messages and memberships
// everywhere and forgets idle empty channels, so that abandoned channels do
// not hold memory. l.mu is held.
func (l *Layer) maybeSweep(now time.Time) {
	if now.Sub(l.lastSweep) < time.Second && !now.Before(l.lastSweep) {
		return
	}
	l.lastSweep = now
	for name, q := range l.queues {
		l.dropExpired(name, q, now)
		if q.len() == 0 && now.Sub(q.lastSend) >= l.expiry {
			delete(l.queues, name)
		}
	}
	for g, members := range l.groups {
		for ch, added := range members {
			if now.Sub(added) >= l.groupExpiry {
				l.removeMember(g, ch)
			}
		}
	}
	for p, rl := range l.ready {
		if len(rl.names) == 0 && len(l.waiters[p]) == 0 {
			delete(l.ready, p)
		}
	}
	for k, ws := range l.waiters {
		if len(ws) == 0 {
			delete(l.waiters, k)
		}
	}
}

// take pops the next live message on channel. l.mu is held.
func (l *Layer) take(channel string, now time.Time) (channels.Content, bool) {
	e, ok := l.takeEntry(channel, now)
	if !ok {
		return nil, false
	}
	if e.shared {
		return e.c.Clone(), true
	}
	return e.c, true
}

// takeEntry pops the next live entry on channel, its content not copied.
// l.mu is held.
func (l *Layer) takeEntry(channel string, now time.Time) (entry, bool) {
	q := l.queues[channel]
	if q == nil {
		return entry{}, false
	}
	l.dropExpired(channel, q, now)
	if q.len() == 0 {
		return entry{}, false
	}
	e := q.pop()
	l.stats.Received++
	return e, true
}

func (l *Layer) checkNames(names []string) error {
	for _, n := range names {
		if err := l.names.CheckChannel(n); err != nil {
			return err
		}
	}
	return nil
}

// tryReceive takes from the first non-empty channel, starting at a rotating
// position so that no channel is starved. a is the attached worker
// receiving, nil for any other receive (see tookFrom). l.mu is held.
func (l *Layer) tryReceive(names []string, now time.Time, a *attachment) (string, channels.Content, bool) {
	n := len(names)
	start := int(l.rot % uint32(n))
	l.rot++
	for i := range n {
		name := names[(start+i)%n]
		if c, ok := l.take(name, now); ok {
			if len(l.runners) > 0 {
				l.tookFrom(name, a)
			}
			return name, c, true
		}
	}
	return "", nil, false
}

// Receive implements channels.Layer.
func (l *Layer) Receive(ctx context.Context, names ...string) (string, channels.Content, error) {
	if len(names) == 0 {
		return "", nil, nil
	}
	if err := l.checkNames(names); err != nil {
		return "", nil, err
	}
	ch, _, c, err := l.wait(ctx, names, false, false, nil)
	return ch, c, err
}

// Poll implements channels.Poller.
func (l *Layer) Poll(ctx context.Context, names ...string) (string, channels.Content, error) {
	if len(names) == 0 {
		return "", nil, nil
	}
	if err := l.checkNames(names); err != nil {
		return "", nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return "", nil, channels.ErrLayerClosed
	}
	ch, c, _ := l.tryReceive(names, l.now(), nil)
	return ch, c, nil
}

// ReceivePrefix implements channels.PrefixReceiver.
func (l *Layer) ReceivePrefix(ctx context.Context, prefixes ...string) (string, channels.Content, error) {
	if len(prefixes) == 0 {
		return "", nil, nil
	}
	for _, p := range prefixes {
		if err := l.names.CheckPattern(p); err != nil || p[len(p)-1] != '!' {
			return "", nil, fmt.Errorf("%w: process prefix %q must be a name ending in '!'", channels.ErrInvalidName, p)
		}
	}
	ch, _, c, err := l.wait(ctx, prefixes, true, false, nil)
	return ch, c, err
}

// ReceivePrefixMulti implements fanout.Receiver: ReceivePrefix, except that
// a group message at the head of several member channels under the
// prefixes is taken from all of them at once and returned once, with their
// names (in the order of the group send), uncopied and shared.
//
// Each member's channel still holds its own place for the message until
// then: capacity, expiry and the order of each channel's messages are
// those of ReceivePrefix. A member with older messages waiting gets the
// group message later, on its own.
func (l *Layer) ReceivePrefixMulti(ctx context.Context, prefixes ...string) (string, []string, channels.Content, error) {
	if len(prefixes) == 0 {
		return "", nil, nil, nil
	}
	for _, p := range prefixes {
		if err := l.names.CheckPattern(p); err != nil || p[len(p)-1] != '!' {
			return "", nil, nil, fmt.Errorf("%w: process prefix %q must be a name ending in '!'", channels.ErrInvalidName, p)
		}
	}
	return l.wait(ctx, prefixes, true, true, nil)
}

// tryPrefixes takes from the first prefix with a message, starting at a
// rotating position. l.mu is held.
func (l *Layer) tryPrefixes(prefixes []string, now time.Time, multi bool) (string, []string, channels.Content, bool) {
	n := len(prefixes)
	start := int(l.rot % uint32(n))
	l.rot++
	for i := range n {
		if ch, names, c, ok := l.takeReady(prefixes[(start+i)%n], now, multi); ok {
			return ch, names, c, true
		}
	}
	return "", nil, nil, false
}

// takeReady takes one message from the next channel under prefix that has
// one, and moves that channel to the back of the list (round robin between
// connections). With multi set, a group message is also taken from the
// other members that have it at the head of their channel, and returned
// once with the names of all (see ReceivePrefixMulti); those members stay
// in the list, and are skipped once they come first with nothing waiting.
// l.mu is held.
func (l *Layer) takeReady(prefix string, now time.Time, multi bool) (string, []string, channels.Content, bool) {
	rl := l.ready[prefix]
	if rl == nil {
		return "", nil, nil, false
	}
	for len(rl.names) > 0 {
		name := rl.names[0]
		rl.names[0] = ""
		rl.names = rl.names[1:]
		delete(rl.in, name)
		e, ok := l.takeEntry(name, now)
		if !ok {
			continue // emptied by a direct Receive, or expired
		}
		var names []string
		if multi && e.rec != nil && len(e.rec.members) > 1 {
			names = l.takeRest(name, e.rec, now)
		}
		if q := l.queues[name]; q != nil && q.len() > 0 {
			rl.in[name] = true
			rl.names = append(rl.names, name)
		}
		if len(rl.names) == 0 {
			rl.names = nil // let the backing array go
		}
		switch {
		case names != nil:
			return "", names, e.c, true
		case e.shared:
			return name, nil, e.c.Clone(), true
		}
		return name, nil, e.c, true
	}
	return "", nil, nil, false
}

// takeRest takes the group message rec from every member other than first
// that has it at the head of its channel, and returns first and those
// members, or nil when none had it there. l.mu is held.
func (l *Layer) takeRest(first string, rec *groupRec, now time.Time) []string {
	var names []string
	for _, m := range rec.members {
		if m == first {
			continue
		}
		q := l.queues[m]
		if q == nil {
			continue
		}
		l.dropExpired(m, q, now)
		if q.len() == 0 || q.items[q.head].rec != rec {
			continue
		}
		q.pop()
		l.stats.Received++
		if names == nil {
			names = make([]string, 0, len(rec.members))
			names = append(names, first)
		}
		names = append(names, m)
	}
	return names
}

// wait takes the next message on one of keys (channel names, or process
// prefixes when prefix is set), waiting for a send to one of them between
// attempts. Nothing is taken once ctx is done. a is the attached worker
// receiving, if any (see tryReceive).
func (l *Layer) wait(ctx context.Context, keys []string, prefix, multi bool, a *attachment) (string, []string, channels.Content, error) {
	var w *waiter
	defer func() {
		if w != nil {
			select { // a wake-up that came too late is not for the next user
			case <-w.c:
			default:
			}
			waiterPool.Put(w)
		}
	}()
	l.mu.Lock()
	for {
		if l.closed {
			l.mu.Unlock()
			return "", nil, nil, channels.ErrLayerClosed
		}
		if err := ctx.Err(); err != nil {
			l.mu.Unlock()
			return "", nil, nil, err
		}
		var (
			ch    string
			names []string
			c     channels.Content
			ok    bool
		)
		if prefix {
			ch, names, c, ok = l.tryPrefixes(keys, l.now(), multi)
		} else {
			ch, c, ok = l.tryReceive(keys, l.now(), a)
		}
		if ok {
			l.mu.Unlock()
			return ch, names, c, nil
		}
		if w == nil {
			w = waiterPool.Get().(*waiter)
		}
		for _, k := range keys {
			ws := l.waiters[k]
			if ws == nil {
				ws = make(map[*waiter]struct{})
				l.waiters[k] = ws
			}
			ws[w] = struct{}{}
		}
		l.mu.Unlock()
		select {
		case <-w.c:
		case <-ctx.Done():
		}
		l.mu.Lock()
		for _, k := range keys {
			// Empty sets stay for the next receive on the same key; the
			// sweep forgets them.
			delete(l.waiters[k], w)
		}
	}
}

var waiterPool = sync.Pool{New: func() any { return &waiter{c: make(chan struct{}, 1)} }}

// NewChannel implements channels.Layer. The suffix is 12 characters from
// crypto/rand (72 bits).
func (l *Layer) NewChannel(ctx context.Context, pattern string) (string, error) {
	if err := l.names.CheckPattern(pattern); err != nil {
		return "", err
	}
	for {
		name := pattern + RandomSuffix(12)
		l.mu.Lock()
		_, used := l.queues[name]
		l.mu.Unlock()
		if !used {
			return name, nil
		}
	}
}

const suffixAlphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"

// RandomSuffix returns n characters valid in channel names, from crypto/rand
// (6 bits each).
func RandomSuffix(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand panics instead)
	for i := range b {
		b[i] = suffixAlphabet[b[i]&63]
	}
	return string(b)
}

// GroupAdd implements channels.GroupLayer.
func (l *Layer) GroupAdd(ctx context.Context, group, channel string) error {
	if err := l.names.CheckGroup(group); err != nil {
		return err
	}
	if err := l.names.CheckChannel(channel); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return channels.ErrLayerClosed
	}
	m := l.groups[group]
	if m == nil {
		m = make(map[string]time.Time)
		l.groups[group] = m
	}
	m[channel] = l.now()
	gs := l.memberOf[channel]
	if gs == nil {
		gs = make(map[string]struct{})
		l.memberOf[channel] = gs
	}
	gs[group] = struct{}{}
	return nil
}

// GroupDiscard implements channels.GroupLayer.
func (l *Layer) GroupDiscard(ctx context.Context, group, channel string) error {
	if err := l.names.CheckGroup(group); err != nil {
		return err
	}
	if err := l.names.CheckChannel(channel); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return channels.ErrLayerClosed
	}
	l.removeMember(group, channel)
	return nil
}

// members returns the live members of group, dropping expired memberships.
// l.mu is held.
func (l *Layer) members(group string, now time.Time) []string {
	m := l.groups[group]
	out := make([]string, 0, len(m))
	for ch, added := range m {
		if now.Sub(added) >= l.groupExpiry {
			l.removeMember(group, ch)
			continue
		}
		out = append(out, ch)
	}
	return out
}

// GroupSend implements channels.GroupLayer. Members are sent the same
// content, copied when each of them receives it.
func (l *Layer) GroupSend(ctx context.Context, group string, c channels.Content) error {
	if err := l.names.CheckGroup(group); err != nil {
		return err
	}
	nc, size, err := normal.Normalize(c)
	if err != nil {
		return fmt.Errorf("inmemory: send to group %q: %w", group, err)
	}
	var local localBatch
	l.mu.Lock()
	defer func() {
		l.mu.Unlock()
		if local.sinks != nil {
			l.deliverBatch(&local, nc)
		}
	}()
	if l.closed {
		return channels.ErrLayerClosed
	}
	if size > l.maxSize {
		l.stats.TooLarge++
		return fmt.Errorf("inmemory: send to group %q: %w (%d bytes, limit %d)", group, channels.ErrMessageTooLarge, size, l.maxSize)
	}
	now := l.now()
	l.maybeSweep(now)
	members := l.members(group, now)
	shared := len(members) > 1
	// The members under one process prefix share a record of the
	// message, through which a multi receive takes it for all of them.
	var (
		lastPrefix string
		lastRec    *groupRec
		recs       map[string]*groupRec
	)
	recFor := func(p string) *groupRec {
		if p == lastPrefix && lastRec != nil {
			return lastRec
		}
		if lastRec != nil && recs == nil {
			recs = map[string]*groupRec{lastPrefix: lastRec}
		}
		r := recs[p]
		if r == nil {
			r = &groupRec{}
			if recs != nil {
				recs[p] = r
			}
		}
		lastPrefix, lastRec = p, r
		return r
	}
	for _, ch := range members {
		if q := l.queues[ch]; q != nil {
			// A member on which a message expired unread is evicted
			// here, before this message is queued for it.
			l.dropExpired(ch, q, now)
			if _, still := l.groups[group][ch]; !still {
				continue
			}
		}
		if sk := l.sinkFor(ch); sk != nil {
			if q := l.queues[ch]; q == nil || q.len() == 0 {
				local.add(sk, ch) // delivered once l.mu is released
				continue
			}
		}
		var rec *groupRec
		if p := naming.ProcessPrefix(ch); p != "" && shared {
			rec = recFor(p)
		}
		if !l.push(ch, nc, now, shared, rec) {
			l.stats.GroupSkipped++
			continue
		}
		if rec != nil {
			rec.members = append(rec.members, ch)
		}
	}
	return nil
}

// GroupChannels implements channels.GroupLayer.
func (l *Layer) GroupChannels(ctx context.Context, group string) ([]string, error) {
	if err := l.names.CheckGroup(group); err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, channels.ErrLayerClosed
	}
	out := l.members(group, l.now())
	slices.Sort(out)
	return out, nil
}

// Flush implements channels.Flusher: every message and group is deleted.
func (l *Layer) Flush(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return channels.ErrLayerClosed
	}
	l.queues = make(map[string]*queue)
	l.groups = make(map[string]map[string]time.Time)
	l.memberOf = make(map[string]map[string]struct{})
	l.ready = make(map[string]*readyList)
	return nil
}

// Stats implements channels.StatsReporter.
func (l *Layer) Stats(ctx context.Context) (channels.Stats, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.stats
	s.Sent += l.localSent.Load() + l.inlineRun.Load()
	s.Received += l.inlineRun.Load()
	for _, q := range l.queues {
		if n := q.len(); n > 0 {
			s.Messages += int64(n)
			s.Channels++
		}
	}
	s.Groups = int64(len(l.groups))
	return s, nil
}

// ChannelStats implements channels.StatsReporter.
func (l *Layer) ChannelStats(ctx context.Context, channel string) (channels.ChannelStats, error) {
	if err := l.names.CheckChannel(channel); err != nil {
		return channels.ChannelStats{}, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	cs := channels.ChannelStats{Capacity: l.capacity(channel)}
	q := l.queues[channel]
	if q == nil {
		return cs, nil
	}
	now := l.now()
	l.dropExpired(channel, q, now)
	cs.Length = q.len()
	if cs.Length > 0 {
		cs.Age = now.Sub(q.items[q.head].sent)
	}
	if el := now.Sub(q.windowStart); el >= time.Second {
		cs.PerSecond = float64(q.windowCount) / el.Seconds()
	} else {
		cs.PerSecond = q.lastRate
	}
	return cs, nil
}

// Close releases waiting receivers, which return ErrLayerClosed, as do all
// later calls.
func (l *Layer) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	l.sinks.Store(nil) // later sends fail with ErrLayerClosed
	for _, ws := range l.waiters {
		for w := range ws {
			w.wake()
		}
	}
	return nil
}

var (
	_ channels.GroupLayer     = (*Layer)(nil)
	_ channels.Flusher        = (*Layer)(nil)
	_ channels.Poller         = (*Layer)(nil)
	_ channels.PrefixReceiver = (*Layer)(nil)
	_ channels.StatsReporter  = (*Layer)(nil)
	_ fanout.Receiver         = (*Layer)(nil)
)
