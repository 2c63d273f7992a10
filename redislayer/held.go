package redislayer

import (
	"context"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/gochannels/channels"
)

// Held receives: a message taken with ReceiveHeld leaves its channel's
// sorted set for the channel's held set ("<prefix>:held:<channel>"), in the
// same script, scored with the time its hold ends; the member is the
// message's score (its send time), '|', and the message. Acknowledging
// removes it from there. Whichever ReceiveHeld on the channel runs after a
// hold has ended, in any process, first puts the message back in the
// channel with its send time, so that it is received again and expires
// when it would have.

// holdScript returns the channel's messages whose hold ended (score up to
// ARGV[1]) to it, then pops up to ARGV[2] messages and holds them until
// ARGV[3]; both keys get the expiry ARGV[4] when touched. It returns how
// many it returned and the popped members and scores.
var holdScript = newScript(`
local back = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, 1000)
for _, m in ipairs(back) do
  local p = string.find(m, '|', 1, true)
  if p then
    redis.call('ZADD', KEYS[1], string.sub(m, 1, p - 1), string.sub(m, p + 1))
  end
  redis.call('ZREM', KEYS[2], m)
end
if #back > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
local r = redis.call('ZPOPMIN', KEYS[1], ARGV[2])
for i = 1, #r, 2 do
  redis.call('ZADD', KEYS[2], ARGV[3], r[i + 1] .. '|' .. r[i])
end
if #r > 0 then redis.call('PEXPIRE', KEYS[2], ARGV[4]) end
return {#back, r}
`)

// heldPoll bounds the wait between two looks at an empty channel in
// ReceiveHeld: a message arriving there waits at most this long, and an
// idle receiver costs Redis 20 small script calls a second per host.
const heldPoll = 50 * time.Millisecond

// heldKey is the key of a channel's held messages, in the channel's hash
// slot in Cluster mode.
func (l *Layer) heldKey(channel string) string {
	if l.s.cluster {
		return l.s.prefix + ":held:{" + channel + "}"
	}
	return l.s.prefix + ":held:" + channel
}

// ReceiveHeld receives up to max messages of the ordinary channel (not
// process-specific nor single-reader), waiting until there is at least one
// or ctx is done. Unlike Receive, the messages stay in Redis, held, until
// ack is called: a receiver that stores them elsewhere acknowledges after
// its commit, and when it crashes first, the messages it held go back to
// the channel once hold has passed (the next ReceiveHeld on the channel,
// in any process, returns them) and are received again, with the same
// ids. An id is the message's identity (24 hexadecimal digits): a receiver
// that committed a message but died before acknowledging it recognises the
// copy it receives again by its id. Messages go back with their send time,
// so they expire when they would have. ack may be called once, from any
// goroutine; the messages go back if it fails.
//
// A message that cannot be decoded, or that expired, is dropped and
// counted, as Receive does. While the channel is empty ReceiveHeld looks
// again at most every 50 ms (it cannot wait in Redis, which has no
// blocking pop that keeps the message). Do not mix it with Receive on the
// same channel in one process: Receive may take messages ahead of demand
// into this process's buffers (Config.ReceiveBuffer), where ReceiveHeld
// does not look.
func (l *Layer) ReceiveHeld(ctx context.Context, channel string, max int, hold time.Duration) (ids []string, msgs []channels.Content, ack func(context.Context) error, err error) {
	if err := l.s.names.CheckChannel(channel); err != nil {
		return nil, nil, nil, err
	}
	if nonLocal(channel) != channel || strings.IndexByte(channel, '?') >= 0 {
		return nil, nil, nil, fmt.Errorf("redislayer: receive held from %q: %w: only ordinary channels can be held", channel, channels.ErrInvalidName)
	}
	if max <= 0 || hold <= 0 {
		return nil, nil, nil, fmt.Errorf("redislayer: receive held from %q: max (%d) and hold (%v) must be positive", channel, max, hold)
	}
	keys := []string{l.key(channel), l.heldKey(channel)}
	wait := 5 * time.Millisecond
	for {
		// Every host in turn (messages of ordinary channels go to the
		// hosts in turn, see sendShard), starting with a different one
		// each time.
		start := int(l.rot.Add(1))
		for i := range l.shards {
			sh := l.shards[(start+i)%len(l.shards)]
			ids, msgs, ack, err = l.receiveHeldOn(ctx, sh, channel, keys, max, hold)
			if err != nil || len(msgs) > 0 {
				return ids, msgs, ack, err
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
		case <-l.closeCtx.Done():
		}
		t.Stop()
		wait = min(2*wait, heldPoll)
	}
}

// receiveHeldOn is one look of ReceiveHeld at one host: it returns no
// messages and no error when the channel is empty there.
func (l *Layer) receiveHeldOn(ctx context.Context, sh *shard, channel string, keys []string, max int, hold time.Duration) (ids []string, msgs []channels.Content, ack func(context.Context) error, err error) {
	if l.closed() {
		return nil, nil, nil, channels.ErrLayerClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, nil, err
	}
	now := time.Now()
	// No context: a pop must finish once sent, or the messages it took
	// would wait for their hold to end; the connection's timeout bounds
	// it.
	arr, err := holdScript.exec(context.Background(), sh.client, keys, []string{
		strconv.FormatInt(now.UnixMilli(), 10),
		strconv.Itoa(max),
		strconv.FormatInt(now.Add(hold).UnixMilli(), 10),
		l.keyTTL(),
	}).ToArray()
	if err != nil {
		return nil, nil, nil, l.failOp(ctx, "receive held from", channel, err)
	}
	if len(arr) != 2 {
		return nil, nil, nil, fmt.Errorf("redislayer: receive held from %q: unexpected reply of %d elements", channel, len(arr))
	}
	if back, _ := arr[0].AsInt64(); back > 0 {
		l.st.returned.Add(uint64(back))
		l.s.log.Info("held messages not acknowledged in time went back to their channel", "channel", channel, "count", back)
	}
	popped, err := arr[1].ToArray()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("redislayer: receive held from %q: %w", channel, err)
	}
	var tokens, drop []string
	for i := 0; i+1 < len(popped); i += 2 {
		member, _ := popped[i].ToString()
		score, _ := popped[i+1].ToString()
		token := score + "|" + member
		sc, perr := strconv.ParseFloat(score, 64)
		if perr == nil && l.expired(sc, now) {
			l.st.expired.Add(1)
			drop = append(drop, token)
			continue
		}
		d, derr := decodeMember(member)
		if derr != nil {
			l.st.undeliverable.Add(1)
			l.s.log.Error("dropped a message that cannot be decoded", "channel", channel, "error", derr)
			drop = append(drop, token)
			continue
		}
		ids = append(ids, hex.EncodeToString([]byte(member[:randomBytes])))
		msgs = append(msgs, d.c)
		tokens = append(tokens, token)
	}
	if len(drop) > 0 {
		_ = l.unhold(context.Background(), sh, keys[1], drop)
	}
	if len(msgs) > 0 {
		l.st.received.Add(uint64(len(msgs)))
		done := false
		ack = func(ctx context.Context) error {
			if done {
				return nil
			}
			done = true
			if err := l.unhold(ctx, sh, keys[1], tokens); err != nil {
				return l.failOp(ctx, "acknowledge held messages of", channel, err)
			}
			return nil
		}
		return ids, msgs, ack, nil
	}
	return nil, nil, nil, nil
}

// unhold removes held messages (their tokens: score|member).
func (l *Layer) unhold(ctx context.Context, sh *shard, key string, tokens []string) error {
	cctx, cancel := l.s.withTimeout(ctx)
	defer cancel()
	return sh.client.Do(cctx, sh.client.B().Zrem().Key(key).Member(tokens...).Build()).Error()
}
