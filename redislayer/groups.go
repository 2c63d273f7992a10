package redislayer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"

	"github.com/gochannels/channels"
	"github.com/redis/rueidis"
)

// GroupAdd implements channels.GroupLayer: the channel joins the group's
// sorted set (<prefix>:group:<name>, scored by the time of the add), whose
// expiry is reset to the group expiry. It blocks for one round trip.
func (l *Layer) GroupAdd(ctx context.Context, group, channel string) error {
	if err := l.checkMember(group, channel); err != nil {
		return err
	}
	sh := l.shardFor(group)
	cctx, cancel := l.s.withTimeout(ctx)
	defer cancel()
	err := groupAddScript.exec(cctx, sh.client, []string{l.groupKey(group)}, []string{
		formatMicros(l.clock.next()), channel, l.groupTTL(),
	}).Error()
	return l.failCtx(ctx, "group add", err)
}

// GroupDiscard implements channels.GroupLayer. It blocks for one round
// trip.
func (l *Layer) GroupDiscard(ctx context.Context, group, channel string) error {
	if err := l.checkMember(group, channel); err != nil {
		return err
	}
	sh := l.shardFor(group)
	cctx, cancel := l.s.withTimeout(ctx)
	defer cancel()
	err := sh.client.Do(cctx, sh.client.B().Zrem().Key(l.groupKey(group)).Member(channel).Build()).Error()
	return l.failCtx(ctx, "group discard", err)
}

// A group's snapshot (see groupSendScript): the members its encoded
// member lists were built from, <prefix>:gsnap:<group>, a sorted set, and
// the lists, <prefix>:glists:<group>, a hash. Both expire with the group.
const (
	snapshotInfix = ":gsnap:"
	listsInfix    = ":glists:"
)

type member struct {
	channel string
	added   string // score as Redis returned it
}

// members drops expired memberships and returns the rest.
func (l *Layer) members(ctx context.Context, group string, checkMarkers bool) ([]member, error) {
	sh := l.shardFor(group)
	now := l.clock.next()
	check := "0"
	if checkMarkers {
		check = "1"
	}
	cctx, cancel := l.s.withTimeout(ctx)
	defer cancel()
	keys := []string{l.groupKey(group)}
	if checkMarkers {
		keys = append(keys, l.markerPrefix()) // the marker index
	}
	arr, err := groupMembersScript.exec(cctx, sh.client, keys, []string{
		formatMicros(now - l.s.groupExpiry.Microseconds()), check,
	}).AsStrSlice()
	if err != nil {
		return nil, err
	}
	out := make([]member, 0, len(arr)/2)
	for i := 0; i+1 < len(arr); i += 2 {
		out = append(out, member{arr[i], arr[i+1]})
	}
	return out, nil
}

// GroupChannels implements channels.GroupLayer. Memberships past the
// group expiry are removed; with one host (not in Cluster mode), so are
// members evicted because a message expired unread on their channel. It blocks for one round trip.
func (l *Layer) GroupChannels(ctx context.Context, group string) ([]string, error) {
	if err := l.s.names.CheckGroup(group); err != nil {
		return nil, err
	}
	if l.closed() {
		return nil, channels.ErrLayerClosed
	}
	ms, err := l.members(ctx, group, len(l.shards) == 1 && !l.s.cluster)
	if err != nil {
		return nil, l.failCtx(ctx, "group channels", err)
	}
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.channel
	}
	slices.Sort(out)
	return out, nil
}

// GroupSend implements channels.GroupLayer. Members whose channels share a
// Redis key (process-specific channels of one process) get one message
// naming all of them, as channels_redis 4 does, if their process prefix
// has room (one capacity check per Redis key, not per member). Full
// members are skipped and counted (Stats().GroupSkipped), never reported. Members whose
// channel had a message expire unread since they joined are evicted from
// the group instead.
//
// With one host the whole send is one Lua call (unless a capacity rule is
// a Regexp, which adds one round trip); with several, one call on the
// group's host and one per host holding members, in parallel; in Cluster
// mode, one on the group's slot and one per hash slot holding members. If a host
// is unreachable the members on the others still get the message and the
// error wraps ErrUnavailable.
func (l *Layer) GroupSend(ctx context.Context, group string, c channels.Content) error {
	if err := l.s.names.CheckGroup(group); err != nil {
		return err
	}
	if l.closed() {
		return channels.ErrLayerClosed
	}
	const verb = "send to group"
	what := opString(verb, group)
	head, entries, err := l.encodeBody(verb, group, c)
	if err != nil {
		return err
	}
	rnd := make([]byte, randomBytes)
	fillRandom(rnd)
	now := l.clock.next()
	if len(l.shards) == 1 && l.luaCapsOK && !l.s.cluster {
		sh := l.shards[0]
		args := []string{
			formatMicros(now),
			formatMicros(now - l.s.groupExpiry.Microseconds()),
			l.cutoff(now),
			l.s.prefix,
			l.markerPrefix(),
			l.markerTTL(),
			l.keyTTL(),
			rueidis.BinaryString(head),
			rueidis.BinaryString(entries),
			rueidis.BinaryString(rnd),
			l.capStrs[l.s.caps.Default()],
			l.capStrs[l.s.processCap],
			l.groupTTL(),
		}
		args = append(args, l.luaCaps...)
		keys := []string{l.groupKey(group), l.s.prefix + snapshotInfix + group, l.s.prefix + listsInfix + group}
		cctx, cancel := l.s.withTimeout(ctx)
		defer cancel()
		res, err := groupSendScript.exec(cctx, sh.client, keys, args).AsIntSlice()
		if err != nil {
			return l.failCtx(ctx, what, err)
		}
		if len(res) != 4 {
			return fmt.Errorf("redislayer: %s: unexpected script reply %v", what, res)
		}
		l.countGroupSend(group, res[0], res[1], res[2], res[3])
		return nil
	}
	return l.groupSendSharded(ctx, what, group, head, entries, rnd, now)
}

func (l *Layer) countGroupSend(group string, sent, skipped, evicted, expired int64) {
	l.st.sent.Add(uint64(sent))
	l.st.groupSkipped.Add(uint64(skipped))
	l.st.evicted.Add(uint64(evicted))
	l.st.expired.Add(uint64(expired))
	if skipped > 0 {
		l.s.log.Debug("group send skipped full channels", "group", group, "skipped", skipped, "sent", sent)
	}
}

// groupSendSharded is GroupSend over several hosts (or with capacity rules
// Lua cannot evaluate).
func (l *Layer) groupSendSharded(ctx context.Context, what, group string, head, entries, rnd []byte, now int64) error {
	ms, err := l.members(ctx, group, false)
	if err != nil {
		return l.failCtx(ctx, what, err)
	}
	if len(ms) == 0 {
		return nil
	}
	type bucket struct {
		key     string
		members []member
	}
	// One delivery call per host, and per hash slot in Cluster mode.
	type target struct {
		sh   *shard
		slot int
	}
	perShard := make(map[target][]*bucket)
	byKey := make(map[string]*bucket)
	for _, m := range ms {
		key := l.key(m.channel)
		b := byKey[key]
		if b == nil {
			b = &bucket{key: key}
			byKey[key] = b
			t := target{l.shardFor(m.channel), -1}
			if l.s.cluster {
				t.slot = int(keySlot(key))
			}
			perShard[t] = append(perShard[t], b)
		}
		b.members = append(b.members, m)
	}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		evict    []string
		firstErr error
	)
	for t, buckets := range perShard {
		sh := t.sh
		keys := make([]string, len(buckets))
		args := []string{
			formatMicros(now), l.cutoff(now), l.markerPrefix(), l.markerTTL(), l.keyTTL(),
			rueidis.BinaryString(head), rueidis.BinaryString(entries), rueidis.BinaryString(rnd),
		}
		for i, b := range buckets {
			keys[i] = b.key
			args = append(args, l.capString(b.members[0].channel), strconv.Itoa(len(b.members)))
			for _, m := range b.members {
				args = append(args, m.channel, m.added)
			}
		}
		wg.Go(func() {
			cctx, cancel := l.s.withTimeout(ctx)
			defer cancel()
			arr, err := groupDeliverScript.exec(cctx, sh.client, keys, args).ToArray()
			if err == nil && len(arr) < 3 {
				err = errors.New("unexpected script reply")
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = l.failCtx(ctx, what, err)
				}
				return
			}
			sent, _ := arr[0].AsInt64()
			skipped, _ := arr[1].AsInt64()
			expired, _ := arr[2].AsInt64()
			for _, e := range arr[3:] {
				if s, err := e.ToString(); err == nil {
					evict = append(evict, s)
				}
			}
			l.countGroupSend(group, sent, skipped, 0, expired)
		})
	}
	wg.Wait()
	if len(evict) > 0 {
		sh := l.shardFor(group)
		cctx, cancel := l.s.withTimeout(ctx)
		err := sh.client.Do(cctx, sh.client.B().Zrem().Key(l.groupKey(group)).Member(evict...).Build()).Error()
		cancel()
		if err != nil && firstErr == nil {
			firstErr = l.failCtx(ctx, what, err)
		} else if err == nil {
			l.st.evicted.Add(uint64(len(evict)))
		}
	}
	return firstErr
}

// checkMember validates a group membership call's names and that the
// layer is open.
func (l *Layer) checkMember(group, channel string) error {
	if err := l.s.names.CheckGroup(group); err != nil {
		return err
	}
	if err := l.s.names.CheckChannel(channel); err != nil {
		return err
	}
	if l.closed() {
		return channels.ErrLayerClosed
	}
	return nil
}
