package redislayer

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"strings"

	"github.com/redis/rueidis"
)

// The layer's Lua scripts. Each runs atomically on one host (one hash slot
// in Cluster mode), so a key never exists without an expiry and capacity
// checks cannot race with sends. The hot paths, sends and pops, use plain
// commands in MULTI instead (a call from Lua costs Redis several times a
// plain command); scripts settle the rare cases (a channel over capacity)
// and run group sends.
//
// Expired messages are removed by group sends and by the process-specific
// sends that find a channel full, and discarded by the pops that take
// them; those nobody meets go with their key's expiry. Each leaves a
// marker, <prefix>:expired:<channel> = the newest expired message's score,
// kept for the group expiry: a group member whose marker is newer than its
// membership is evicted from the group at the next group send (its reader
// is deemed gone; spec L17).
//
// Process-specific channels of one process share one sorted set, keyed by
// the process prefix, as in channels_redis. Their per-channel capacity is
// kept in a hash beside it, <prefix>:count:<process prefix>, channel →
// messages waiting: senders of this package add to it and its receive loop
// takes away. Counts can only drift upwards (a receiver that does not count,
// such as channels_redis in Python, or a count lost with a connection), so
// a channel that looks full is recounted exactly from the sorted set before
// a send is refused (procFixScript), unless nothing left the sorted set since the last
// recount (then the counts are exact, and a stalled reader costs no scan).
// The whole prefix key is also bounded (Config.ProcessCapacity). The hash
// holds a field "~h" with an 80-byte value, which makes Redis keep it as a
// real hash table: under hash-max-listpack-value (64 bytes) it would be a
// listpack, where every update costs time in proportion to the number of
// channels with waiting messages. Sends and the receive loop update the
// counts with plain commands (HINCRBY in a MULTI); counts that reach zero
// are deleted once a second by cleanCountsScript.
//
// The channels of a process-specific message are read from its
// "__asgi_channel__" entry: Go senders write it first in the msgpack map,
// where it is found without decoding the message; messages from other
// senders are decoded with cmsgpack.

// luaLib is prepended to every script that needs it. Scripts set MP (marker
// prefix), MTTL (marker lifetime, ms), CKP (count key prefix) and KTTL (key
// lifetime, ms) before calling its functions.
const luaLib = `
local MP, MTTL, CKP, KTTL = '', '0', '', '0'
local HPAD = string.rep('-', 80)

local function nonlocal(ch)
  local i = string.find(ch, '!', 1, true)
  if i then return string.sub(ch, 1, i) end
  return ch
end

-- mkey and ckey are the marker key of a channel and the count key of a
-- process prefix. In Cluster mode MP and CKP end in '{': the channel's
-- name, or its process prefix, is the hash tag.
local function mkey(ch)
  if string.sub(MP, -1) == '{' then
    local nl = nonlocal(ch)
    return MP .. nl .. '}' .. string.sub(ch, #nl + 1)
  end
  return MP .. ch
end

local function ckey(pp)
  if string.sub(CKP, -1) == '{' then return CKP .. pp .. '}' end
  return CKP .. pp
end

local function mark(ch, score)
  local k = mkey(ch)
  local cur = redis.call('GET', k)
  if (not cur) or tonumber(cur) < tonumber(score) then
    redis.call('SET', k, score, 'PX', MTTL)
  end
end

local function rdstr(m, p)
  local t = string.byte(m, p)
  if not t then return nil, p end
  if t >= 0xa0 and t <= 0xbf then
    local n = t - 0xa0
    return string.sub(m, p + 1, p + n), p + 1 + n
  end
  if t == 0xd9 then
    local n = string.byte(m, p + 1)
    return string.sub(m, p + 2, p + 1 + n), p + 2 + n
  end
  return nil, p
end

-- chans_of returns the channel names in a message's __asgi_channel__.
local function chans_of(m)
  local p = 13
  local t = string.byte(m, p)
  if t and ((t >= 0x80 and t <= 0x8f) or t == 0xde or t == 0xdf) then
    if t == 0xde then p = p + 3 elseif t == 0xdf then p = p + 5 else p = p + 1 end
    if string.sub(m, p, p + 16) == '\176__asgi_channel__' then
      p = p + 17
      t = string.byte(m, p)
      if t and ((t >= 0xa0 and t <= 0xbf) or t == 0xd9) then
        local s = rdstr(m, p)
        if s then return {s} end
      elseif t and ((t >= 0x90 and t <= 0x9f) or t == 0xdc) then
        local n
        if t == 0xdc then
          n = string.byte(m, p + 1) * 256 + string.byte(m, p + 2)
          p = p + 3
        else
          n = t - 0x90
          p = p + 1
        end
        local out = {}
        for i = 1, n do
          local s
          s, p = rdstr(m, p)
          if not s then break end
          out[i] = s
        end
        if #out == n then return out end
      end
    end
  end
  local ok, d = pcall(cmsgpack.unpack, string.sub(m, 13))
  local out = {}
  if ok and type(d) == 'table' then
    local a = d['__asgi_channel__']
    if type(a) == 'string' then
      out[1] = a
    elseif type(a) == 'table' then
      for _, c in ipairs(a) do
        if type(c) == 'string' then out[#out + 1] = c end
      end
    end
  end
  return out
end

local function dec(ck, ch)
  if redis.call('HINCRBY', ck, ch, -1) <= 0 then
    redis.call('HDEL', ck, ch)
  end
end

-- trim removes the messages of key sent at or before cutoff and returns
-- how many it removed. name is the channel of an ordinary key, or the
-- process prefix of a process key (then the channels are read from the
-- messages and their counts decreased).
local function trim(key, cutoff, name)
  local old = redis.call('ZRANGEBYSCORE', key, '-inf', cutoff, 'WITHSCORES')
  local n = #old / 2
  if n == 0 then return 0 end
  if string.sub(name, -1) ~= '!' then
    mark(name, old[#old])
  else
    local ck = ckey(name)
    for i = 1, #old, 2 do
      for _, c in ipairs(chans_of(old[i])) do
        mark(c, old[i + 1])
        dec(ck, c)
      end
    end
  end
  redis.call('ZREMRANGEBYSCORE', key, '-inf', cutoff)
  return n
end

-- recount rebuilds the count hash of a process key from its messages,
-- with the key's size then (~z) and the messages added since (~a).
local function recount(key, ck)
  local counts = {}
  local all = redis.call('ZRANGE', key, 0, -1)
  for i = 1, #all do
    for _, c in ipairs(chans_of(all[i])) do
      counts[c] = (counts[c] or 0) + 1
    end
  end
  redis.call('DEL', ck)
  local args = {'~z', #all, '~a', 0, '~h', HPAD}
  for c, n in pairs(counts) do
    args[#args + 1] = c
    args[#args + 1] = n
    if #args >= 1000 then
      redis.call('HSET', ck, unpack(args))
      args = {}
    end
  end
  if #args > 0 then redis.call('HSET', ck, unpack(args)) end
  redis.call('PEXPIRE', ck, KTTL)
  return counts
end

-- has_room reports whether process-specific channel ch, on key, holds
-- fewer than cap messages. A count at capacity is checked by a recount,
-- unless nothing left the key since the last recount (its size is at
-- least what it was plus what was added since): then the counts are exact.
local function has_room(key, ck, ch, cap, recounted)
  local n = tonumber(redis.call('HGET', ck, ch)) or 0
  if n < cap then return true, recounted end
  if not recounted then
    local z0 = tonumber(redis.call('HGET', ck, '~z'))
    local a = tonumber(redis.call('HGET', ck, '~a')) or 0
    if z0 and redis.call('ZCARD', key) >= z0 + a then return false, recounted end
    recounted = recount(key, ck)
  end
  return (recounted[ch] or 0) < cap, recounted
end

local function count_added(ck, list)
  for _, c in ipairs(list) do redis.call('HINCRBY', ck, c, 1) end
  redis.call('HINCRBY', ck, '~a', 1)
  redis.call('HSETNX', ck, '~h', HPAD)
  redis.call('PEXPIRE', ck, KTTL)
end

-- msgpack str and array headers, to build the member list of a body.
local function be(n, bytes)
  local t = {}
  for i = bytes, 1, -1 do
    t[i] = string.char(n % 256)
    n = math.floor(n / 256)
  end
  return table.concat(t)
end

local function enc_str(s)
  local n = #s
  if n < 32 then return string.char(0xa0 + n) .. s end
  if n < 256 then return '\217' .. string.char(n) .. s end
  if n < 65536 then return '\218' .. be(n, 2) .. s end
  return '\219' .. be(n, 4) .. s
end

local function enc_array(list)
  local n = #list
  local h
  if n < 16 then h = string.char(0x90 + n)
  elseif n < 65536 then h = '\220' .. be(n, 2)
  else h = '\221' .. be(n, 4) end
  local t = {h}
  for i = 1, n do t[i + 1] = enc_str(list[i]) end
  return table.concat(t)
end

-- deliver adds one message for the channels of bucket (all on key) that
-- have room, and returns how many got it and how many were full.
local function deliver(key, list, cap, pcap, score, msg_of, recounted)
  if nonlocal(list[1]) == list[1] then
    if redis.call('ZCARD', key) >= cap then return 0, #list end
    redis.call('ZADD', key, score, msg_of(list))
    redis.call('PEXPIRE', key, KTTL)
    return #list, 0
  end
  if redis.call('ZCARD', key) >= pcap then return 0, #list end
  local ck = ckey(nonlocal(list[1]))
  local ok, room = {}, false
  for _, c in ipairs(list) do
    room, recounted = has_room(key, ck, c, cap, recounted)
    if room then ok[#ok + 1] = c end
  end
  if #ok == 0 then return 0, #list end
  redis.call('ZADD', key, score, msg_of(ok))
  redis.call('PEXPIRE', key, KTTL)
  count_added(ck, ok)
  return #ok, #list - #ok
end
`

// procFixScript settles the messages of a send batch to a process key
// (see execProcess) whose channel count went over its capacity, or that
// went over the process capacity: each is taken out again (with its
// count), expired messages are removed, and then each is added back only
// if the exact check finds room for it, recounting the key
// when the counts may have drifted. A message already received counts as
// sent. KEYS[1] process key; ARGV: 1 cutoff, 2 marker prefix, 3 marker TTL,
// 4 key TTL, 5 count key prefix, 6 process prefix, 7 process capacity,
// 8 score, then (channel, capacity, member) triples. Returns {one
// character per message, '1' sent or '0' full; messages expired}.
var procFixScript = newScript(luaLib + `
MP, MTTL, KTTL, CKP = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local key, pp, pcap, score = KEYS[1], ARGV[6], tonumber(ARGV[7]), ARGV[8]
local ck = ckey(pp)
local gone = {}
for i = 9, #ARGV, 3 do
  if redis.call('ZREM', key, ARGV[i + 2]) == 1 then
    dec(ck, ARGV[i])
    redis.call('HINCRBY', ck, '~a', -1)
  else
    gone[i] = true
  end
end
local expired = trim(key, ARGV[1], pp)
local out, recounted = {}, nil
for i = 9, #ARGV, 3 do
  local r = '1'
  if not gone[i] then
    local ch, room = ARGV[i], false
    if redis.call('ZCARD', key) < pcap then
      room, recounted = has_room(key, ck, ch, tonumber(ARGV[i + 1]), recounted)
    end
    if room then
      redis.call('ZADD', key, score, ARGV[i + 2])
      count_added(ck, {ch})
      if recounted then recounted[ch] = (recounted[ch] or 0) + 1 end
    else
      r = '0'
    end
  end
  out[#out + 1] = r
end
redis.call('PEXPIRE', key, KTTL)
redis.call('PEXPIRE', ck, KTTL)
return {table.concat(out), expired}
`)

// cleanCountsScript deletes the channel counts of a process key that are
// zero or less (the receive loop decrements counts without deleting them;
// a count below zero comes from messages sent by processes that do not
// count, such as channels_redis). KEYS[1] count key. Returns the number
// deleted.
var cleanCountsScript = newScript(`
local all = redis.call('HGETALL', KEYS[1])
local del = {}
for i = 1, #all, 2 do
  if string.sub(all[i], 1, 1) ~= '~' and tonumber(all[i + 1]) <= 0 then
    del[#del + 1] = all[i]
    if #del == 1000 then
      redis.call('HDEL', KEYS[1], unpack(del))
      del = {}
    end
  end
end
if #del > 0 then redis.call('HDEL', KEYS[1], unpack(del)) end
return #del
`)

// trimScript removes messages of a send batch that took ordinary channels
// over their capacity (see execOrdinary), newest first, while the channel
// holds more live messages than its capacity. KEYS: channel keys; ARGV:
// cutoff, then per key capacity, n, n × member. Returns one character per
// member: '1' kept (or already received), '0' removed.
var trimScript = newScript(`
local cut = ARGV[1]
local out, a = {}, 2
for k = 1, #KEYS do
  local cap, n = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  a = a + 2
  local live = redis.call('ZCOUNT', KEYS[k], '(' .. cut, '+inf')
  local r = {}
  for i = n, 1, -1 do
    r[i] = '1'
    if live > cap and redis.call('ZREM', KEYS[k], ARGV[a + i - 1]) == 1 then
      r[i] = '0'
      live = live - 1
    end
  end
  out[#out + 1] = table.concat(r)
  a = a + n
end
return table.concat(out)
`)

// popScript pops up to ARGV[1] messages from the first non-empty key, for
// servers without ZMPOP (before Redis 7). KEYS: channel keys in the order
// to try. Returns {key index (0: none), member, score, ...}.
var popScript = newScript(`
for i = 1, #KEYS do
  local r = redis.call('ZPOPMIN', KEYS[i], ARGV[1])
  if #r > 0 then
    table.insert(r, 1, i)
    return r
  end
end
return {0}
`)

// pushBackManyScript puts popped messages back where they were (their
// scores are their send times). KEYS: channel keys; ARGV: key TTL (ms),
// then per key n, n × (score, member).
var pushBackManyScript = newScript(`
local a = 2
for k = 1, #KEYS do
  local n = tonumber(ARGV[a])
  redis.call('ZADD', KEYS[k], unpack(ARGV, a + 1, a + 2 * n))
  redis.call('PEXPIRE', KEYS[k], ARGV[1])
  a = a + 1 + 2 * n
end
return #KEYS
`)

// markScript records messages that expired in a process's memory.
// KEYS: marker keys; ARGV: marker TTL (ms), then one score per key.
var markScript = newScript(`
for i = 1, #KEYS do
  local cur = redis.call('GET', KEYS[i])
  if (not cur) or tonumber(cur) < tonumber(ARGV[i + 1]) then
    redis.call('SET', KEYS[i], ARGV[i + 1], 'PX', ARGV[1])
  end
end
return #KEYS
`)

// groupAddScript: KEYS[1] group key; ARGV: score, channel, group TTL (ms).
var groupAddScript = newScript(`
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
`)

// groupMembersScript drops memberships older than the group expiry and,
// when ARGV[2] is '1', members evicted by an expired-message marker; it
// returns the rest as {channel, added score, ...}. KEYS[1] group key; ARGV:
// group cutoff, check markers, marker prefix.
var groupMembersScript = newScript(`
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local m = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
if ARGV[2] ~= '1' then return m end
local out = {}
for i = 1, #m, 2 do
  local e = redis.call('GET', ARGV[3] .. m[i])
  if e and tonumber(e) >= tonumber(m[i + 1]) then
    redis.call('ZREM', KEYS[1], m[i])
  else
    out[#out + 1] = m[i]
    out[#out + 1] = m[i + 1]
  end
end
return out
`)

// groupSendScript sends to a whole group in one call when the group and
// every member channel live on the same host. Members sharing a Redis key
// (process-specific channels of one process) get one message listing them
// in "__asgi_channel__", as channels_redis 4 does.
//
// KEYS[1] group key; ARGV: 1 score, 2 group cutoff, 3 message cutoff,
// 4 key prefix, 5 marker prefix, 6 marker TTL, 7 key TTL, 8 map header,
// 9 map entries, 10 random prefix, 11 default capacity, 12 count key
// prefix, 13 process capacity, then (Lua pattern, capacity) pairs.
// Returns {sent, skipped, evicted, expired}.
var groupSendScript = newScript(luaLib + `
MP, MTTL, KTTL, CKP = ARGV[5], ARGV[6], ARGV[7], ARGV[12]
local score, mcut, kp = ARGV[1], ARGV[3], ARGV[4]
local head = ARGV[10] .. ARGV[8] .. '\176__asgi_channel__'
local entries, defcap, pcap = ARGV[9], tonumber(ARGV[11]), tonumber(ARGV[13])
local function msg_of(list) return head .. enc_array(list) .. entries end
local function capacity(ch)
  for i = 14, #ARGV, 2 do
    if string.find(ch, ARGV[i]) then return tonumber(ARGV[i + 1]) end
  end
  return defcap
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
local members = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local sent, skipped, evicted, expired = 0, 0, 0, 0
local order, buckets, trimmed = {}, {}, {}
for i = 1, #members, 2 do
  local ch, added = members[i], members[i + 1]
  local nl = nonlocal(ch)
  local key = kp .. nl
  if not trimmed[key] then
    trimmed[key] = true
    expired = expired + trim(key, mcut, nl)
  end
  local e = redis.call('GET', mkey(ch))
  if e and tonumber(e) >= tonumber(added) then
    redis.call('ZREM', KEYS[1], ch)
    evicted = evicted + 1
  else
    local b = buckets[key]
    if not b then
      b = {}
      buckets[key] = b
      order[#order + 1] = key
    end
    b[#b + 1] = ch
  end
end
for _, key in ipairs(order) do
  local b = buckets[key]
  local s, k = deliver(key, b, capacity(b[1]), pcap, score, msg_of, nil)
  sent, skipped = sent + s, skipped + k
end
return {sent, skipped, evicted, expired}
`)

// groupDeliverScript is the second half of a group send whose members live
// on several hosts: it runs on each host with the member channels stored
// there, and returns the members to evict from the group (on the group's
// host).
//
// KEYS: channel keys; ARGV: 1 score, 2 message cutoff, 3 marker prefix,
// 4 marker TTL, 5 key TTL, 6 map header, 7 map entries, 8 random prefix,
// 9 count key prefix, 10 process capacity, then per key: capacity, member
// count n, n × (channel, added score).
// Returns {sent, skipped, expired, evicted channel, ...}.
var groupDeliverScript = newScript(luaLib + `
MP, MTTL, KTTL, CKP = ARGV[3], ARGV[4], ARGV[5], ARGV[9]
local score, mcut = ARGV[1], ARGV[2]
local head = ARGV[8] .. ARGV[6] .. '\176__asgi_channel__'
local entries, pcap = ARGV[7], tonumber(ARGV[10])
local function msg_of(list) return head .. enc_array(list) .. entries end
local sent, skipped, expired = 0, 0, 0
local out = {0, 0, 0}
local a = 11
for k = 1, #KEYS do
  local key = KEYS[k]
  local cap, n = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  a = a + 2
  if n > 0 then expired = expired + trim(key, mcut, nonlocal(ARGV[a])) end
  local b = {}
  for i = 1, n do
    local ch, added = ARGV[a], ARGV[a + 1]
    a = a + 2
    local e = redis.call('GET', mkey(ch))
    if e and tonumber(e) >= tonumber(added) then
      out[#out + 1] = ch
    else
      b[#b + 1] = ch
    end
  end
  if #b > 0 then
    local s, k2 = deliver(key, b, cap, pcap, score, msg_of, nil)
    sent, skipped = sent + s, skipped + k2
  end
end
out[1], out[2], out[3] = sent, skipped, expired
return out
`)

// globToLua converts a capacity glob ('*', '?', '[...]') into an anchored
// Lua pattern. It reports false for a glob it cannot convert exactly; the
// group send then resolves capacities in Go instead.
func globToLua(glob string) (string, bool) {
	var b strings.Builder
	b.WriteByte('^')
	for i := 0; i < len(glob); i++ {
		c := glob[i]
		switch {
		case c == '*':
			b.WriteString(".*")
		case c == '?':
			b.WriteByte('.')
		case c == '[':
			end := strings.IndexByte(glob[i+1:], ']')
			if end <= 0 { // "[]...]" and unclosed classes: leave to Go
				return "", false
			}
			class := glob[i+1 : i+1+end]
			b.WriteByte('[')
			if class[0] == '!' || class[0] == '^' {
				b.WriteByte('^')
				class = class[1:]
			}
			for j := 0; j < len(class); j++ {
				cc := class[j]
				switch {
				case isAlnum(cc):
					b.WriteByte(cc)
				case cc == '-' && j > 0 && j < len(class)-1:
					b.WriteByte('-') // a range
				default:
					b.WriteByte('%')
					b.WriteByte(cc)
				}
			}
			b.WriteByte(']')
			i += end + 1
		case isAlnum(c):
			b.WriteByte(c)
		case c < 0x20 || c >= 0x7f:
			return "", false
		default:
			b.WriteByte('%')
			b.WriteByte(c)
		}
	}
	b.WriteByte('$')
	return b.String(), true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// script is a Lua script run with EVALSHA, and EVAL when Redis does not
// know it yet. Unlike rueidis.Lua it runs on any connection, dedicated
// ones included.
type script struct {
	src, sha string
}

func newScript(src string) *script {
	sum := sha1.Sum([]byte(src))
	return &script{src: src, sha: hex.EncodeToString(sum[:])}
}

func (s *script) exec(ctx context.Context, c rueidis.CommandClient, keys, args []string) rueidis.RedisResult {
	r := c.Do(ctx, c.B().Evalsha().Sha1(s.sha).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build())
	if err, ok := rueidis.IsRedisErr(r.Error()); ok && err.IsNoScript() {
		r = c.Do(ctx, c.B().Eval().Script(s.src).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build())
	}
	return r
}
