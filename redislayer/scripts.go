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
// the process prefix, as in channels_redis, and that key is bounded as a
// whole, like an ordinary channel (see Layer.capacity): sends check it with
// the same ZCARD, and nothing is counted per channel.
//
// The channels of a process-specific message are read from its
// "__asgi_channel__" entry: Go senders write it first in the msgpack map,
// where it is found without decoding the message; messages from other
// senders are decoded with cmsgpack.

// luaLib is prepended to every script that needs it. Scripts set MP (marker
// prefix), MTTL (marker lifetime, ms) and KTTL (key lifetime, ms) before
// calling its functions.
const luaLib = `
local MP, MTTL, KTTL = '', '0', '0'

local function nonlocal(ch)
  local i = string.find(ch, '!', 1, true)
  if i then return string.sub(ch, 1, i) end
  return ch
end

-- mkey is the marker key of a channel. In Cluster mode MP ends in '{':
-- the channel's name, or its process prefix, is the hash tag.
local function mkey(ch)
  if string.sub(MP, -1) == '{' then
    local nl = nonlocal(ch)
    return MP .. nl .. '}' .. string.sub(ch, #nl + 1)
  end
  return MP .. ch
end

-- mark records that a message of ch sent at score expired unread: in
-- its marker key and, outside Cluster mode, in the marker index (MP
-- itself, a sorted set of channels scored like their markers), which
-- lets a group send find the few members to evict without looking at
-- every member's marker.
local function mark(ch, score)
  local k = mkey(ch)
  local cur = redis.call('GET', k)
  if (not cur) or tonumber(cur) < tonumber(score) then
    redis.call('SET', k, score, 'PX', MTTL)
    if string.sub(MP, -1) ~= '{' then
      redis.call('ZADD', MP, score, ch)
      redis.call('PEXPIRE', MP, MTTL)
    end
  end
end

-- evictions returns the members of group key gk to evict, as a set of
-- channel names: those whose marker in the index is at or after their
-- membership's score. The index first loses the markers older than gcut
-- (no membership that old is left). n is the group's size: the index is
-- searched from the oldest membership on, or, when that finds more
-- markers than the group has members, every member's score is looked up
-- in the index instead. Returns the set and how many it holds.
local function evictions(gk, gcut, n)
  local gone, count = {}, 0
  if n == 0 or redis.call('EXISTS', MP) == 0 then return gone, 0 end
  redis.call('ZREMRANGEBYSCORE', MP, '-inf', gcut)
  local oldest = redis.call('ZRANGE', gk, 0, 0, 'WITHSCORES')[2]
  if not oldest then return gone, 0 end
  if redis.call('ZCOUNT', MP, oldest, '+inf') <= n then
    local c = redis.call('ZRANGEBYSCORE', MP, oldest, '+inf', 'WITHSCORES')
    for i = 1, #c, 2 do
      local added = redis.call('ZSCORE', gk, c[i])
      if added and tonumber(c[i + 1]) >= tonumber(added) then
        gone[c[i]] = true
        count = count + 1
      end
    end
  else
    local m = redis.call('ZRANGE', gk, 0, -1, 'WITHSCORES')
    for i = 1, #m, 2 do
      local e = redis.call('ZSCORE', MP, m[i])
      if e and tonumber(e) >= tonumber(m[i + 1]) then
        gone[m[i]] = true
        count = count + 1
      end
    end
  end
  return gone, count
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

-- trim removes the messages of key sent at or before cutoff, leaving an
-- expiry marker for each of their channels, and returns how many it
-- removed. name is the channel of an ordinary key, or the process prefix
-- of a process key (then the channels are read from the messages).
local function trim(key, cutoff, name)
  local old = redis.call('ZRANGEBYSCORE', key, '-inf', cutoff, 'WITHSCORES')
  local n = #old / 2
  if n == 0 then return 0 end
  if string.sub(name, -1) ~= '!' then
    mark(name, old[#old])
  else
    for i = 1, #old, 2 do
      for _, c in ipairs(chans_of(old[i])) do
        mark(c, old[i + 1])
      end
    end
  end
  redis.call('ZREMRANGEBYSCORE', key, '-inf', cutoff)
  return n
end

-- deliver adds one message for the channels of list, all stored on key
-- (one ordinary channel, or channels of one process prefix), unless key
-- holds cap messages or more; it returns how many channels got it and
-- how many were skipped.
local function deliver(key, list, cap, score, msg_of)
  if redis.call('ZCARD', key) >= cap then return 0, #list end
  redis.call('ZADD', key, score, msg_of(list))
  redis.call('PEXPIRE', key, KTTL)
  return #list, 0
end
`

// trimScript removes messages of a send batch that took channel keys over
// their capacity (see execAdd), newest first, while the key holds more
// live messages than its capacity. KEYS: channel keys; ARGV:
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
// KEYS: marker keys, then, outside Cluster mode, the marker index (the
// marker prefix); ARGV: marker TTL (ms), '1' when the last key is the
// index, then one score per marker key.
var markScript = newScript(`
local n, idx = #KEYS, nil
if ARGV[2] == '1' then
  idx = KEYS[n]
  n = n - 1
end
for i = 1, n do
  local cur = redis.call('GET', KEYS[i])
  if (not cur) or tonumber(cur) < tonumber(ARGV[i + 2]) then
    redis.call('SET', KEYS[i], ARGV[i + 2], 'PX', ARGV[1])
    if idx then
      redis.call('ZADD', idx, ARGV[i + 2], string.sub(KEYS[i], #idx + 1))
      redis.call('PEXPIRE', idx, ARGV[1])
    end
  end
end
return n
`)

// groupAddScript: KEYS[1] group key; ARGV: score, channel, group TTL (ms).
var groupAddScript = newScript(`
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
`)

// groupMembersScript drops memberships older than the group expiry and,
// when ARGV[2] is '1', members evicted by an expired-message marker (found
// in the marker index, KEYS[2]); it returns the rest as {channel, added
// score, ...}. KEYS: group key, marker index; ARGV: group cutoff, check
// markers.
var groupMembersScript = newScript(`
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local m = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
if ARGV[2] ~= '1' or redis.call('EXISTS', KEYS[2]) == 0 then return m end
local out = {}
for i = 1, #m, 2 do
  local e = redis.call('ZSCORE', KEYS[2], m[i])
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
// every member channel live on the same host (not in Cluster mode).
// Members sharing a Redis key (process-specific channels of one process)
// get one message listing them in "__asgi_channel__", as channels_redis 4
// does, with one capacity check for the key.
//
// Redis does a constant amount of work per Redis key reached and almost
// none per member. Evictions are found in the marker index (see
// evictions), which is empty, or holds a few channels, unless many
// messages expire unread. On Redis 7 the member lists, bucketed by Redis
// key and encoded, are kept between sends in the group's snapshot: a
// sorted set holding the members they were built from (KEYS[2]) and a
// hash of Redis key → msgpack array of its member channels (KEYS[3]). A
// send uses them when the group still has exactly those members
// (ZINTERCARD, in C: a change by any process, channels_redis's included,
// is seen), and otherwise reads the members, rebuilds the lists with
// cmsgpack and stores them again.
//
// KEYS: group key, snapshot members, snapshot lists; ARGV: 1 score, 2
// group cutoff, 3 message cutoff, 4 key prefix, 5 marker prefix, 6 marker
// TTL, 7 key TTL, 8 map header, 9 map entries, 10 random prefix, 11
// default capacity, 12 process capacity, 13 group TTL, then (Lua pattern,
// capacity) pairs, matched against the channel name of an ordinary key
// and the process prefix of a process key. Returns {sent, skipped,
// evicted, expired}.
var groupSendScript = newScript(luaLib + `
MP, MTTL, KTTL = ARGV[5], ARGV[6], ARGV[7]
local score, mcut, kp = ARGV[1], ARGV[3], ARGV[4]
local gk, snap, lists = KEYS[1], KEYS[2], KEYS[3]
local head = ARGV[10] .. ARGV[8] .. '\176__asgi_channel__'
local entries, defcap, pcap = ARGV[9], tonumber(ARGV[11]), tonumber(ARGV[12])
local function capacity(name, def)
  for i = 14, #ARGV, 2 do
    if string.find(name, ARGV[i]) then return tonumber(ARGV[i + 1]) end
  end
  return def
end
-- count reads the length of a msgpack array header.
local function count(enc)
  local t = string.byte(enc, 1)
  if t < 0xdc then return t - 0x90 end
  local n, w = 0, 2
  if t == 0xdd then w = 4 end
  for i = 2, 1 + w do n = n * 256 + string.byte(enc, i) end
  return n
end
-- Only groups stored as skip lists (large ones) keep lists: ZINTERCARD
-- looks members up in a hash table there, and in a list otherwise (a
-- cost that grows with the square of the group's size).
local function skiplist(k) return redis.call('OBJECT', 'ENCODING', k) == 'skiplist' end
redis.call('ZREMRANGEBYSCORE', gk, '-inf', ARGV[2])
local n = redis.call('ZCARD', gk)
local snapOK = (redis.REDIS_VERSION_NUM or 0) >= 0x070000 and n > 0 and skiplist(gk)
local sent, skipped, evicted, expired = 0, 0, 0, 0
local order, encs, trimmed = {}, {}, {}
local function trimOnce(key, nl)
  if not trimmed[key] then
    trimmed[key] = true
    expired = expired + trim(key, mcut, nl)
  end
end
local cached = false
if snapOK and redis.call('ZCARD', snap) == n and skiplist(snap) and
    redis.call('ZINTERCARD', 2, gk, snap) == n then
  local h = redis.call('HGETALL', lists)
  if #h > 0 then
    cached = true
    for i = 1, #h, 2 do
      order[#order + 1] = h[i]
      encs[h[i]] = h[i + 1]
      trimOnce(h[i], string.sub(h[i], #kp + 1))
    end
    local gone, e = evictions(gk, ARGV[2], n)
    if e > 0 then
      for ch in pairs(gone) do redis.call('ZREM', gk, ch) end
      evicted = e
      cached = false
    end
  end
end
if not cached then
  order, encs = {}, {}
  local members = redis.call('ZRANGE', gk, 0, -1)
  local buckets = {}
  for i = 1, #members do
    local ch = members[i]
    local key = kp .. nonlocal(ch)
    local b = buckets[key]
    if not b then
      b = {}
      buckets[key] = b
      order[#order + 1] = key
      trimOnce(key, string.sub(key, #kp + 1))
    end
    b[#b + 1] = ch
  end
  local gone, e = evictions(gk, ARGV[2], #members)
  if e > 0 then
    for ch in pairs(gone) do redis.call('ZREM', gk, ch) end
    evicted = evicted + e
  end
  local kept = {}
  for _, key in ipairs(order) do
    local b = buckets[key]
    if e > 0 then
      local k = {}
      for _, ch in ipairs(b) do
        if not gone[ch] then k[#k + 1] = ch end
      end
      b = k
    end
    if #b > 0 then
      kept[#kept + 1] = key
      encs[key] = cmsgpack.pack(b)
    end
  end
  order = kept
  redis.call('DEL', snap, lists)
  if snapOK then
    if #order > 0 then
      redis.call('ZRANGESTORE', snap, gk, 0, -1)
      for _, key in ipairs(order) do redis.call('HSET', lists, key, encs[key]) end
      redis.call('PEXPIRE', snap, ARGV[13])
      redis.call('PEXPIRE', lists, ARGV[13])
    end
  end
end
for _, key in ipairs(order) do
  local nl = string.sub(key, #kp + 1)
  local enc = encs[key]
  local cap
  if string.sub(nl, -1) == '!' then cap = capacity(nl, pcap) else cap = capacity(nl, defcap) end
  if redis.call('ZCARD', key) >= cap then
    skipped = skipped + count(enc)
  else
    redis.call('ZADD', key, score, head .. enc .. entries)
    redis.call('PEXPIRE', key, KTTL)
    sent = sent + count(enc)
  end
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
// then per key: its capacity, member count n, n × (channel, added score).
// Returns {sent, skipped, expired, evicted channel, ...}.
var groupDeliverScript = newScript(luaLib + `
MP, MTTL, KTTL = ARGV[3], ARGV[4], ARGV[5]
local score, mcut = ARGV[1], ARGV[2]
local head = ARGV[8] .. ARGV[6] .. '\176__asgi_channel__'
local entries = ARGV[7]
local function msg_of(list) return head .. cmsgpack.pack(list) .. entries end
local useIdx = string.sub(MP, -1) ~= '{'
local anyIdx = false
local sent, skipped, expired = 0, 0, 0
local out = {0, 0, 0}
local a = 9
for k = 1, #KEYS do
  local key = KEYS[k]
  local cap, n = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  a = a + 2
  if n > 0 then expired = expired + trim(key, mcut, nonlocal(ARGV[a])) end
  if useIdx and not anyIdx then anyIdx = redis.call('EXISTS', MP) == 1 end
  local b = {}
  for i = 1, n do
    local ch, added = ARGV[a], ARGV[a + 1]
    a = a + 2
    local e
    if anyIdx then
      e = redis.call('ZSCORE', MP, ch)
    elseif not useIdx then
      e = redis.call('GET', mkey(ch))
    end
    if e and tonumber(e) >= tonumber(added) then
      out[#out + 1] = ch
    else
      b[#b + 1] = ch
    end
  end
  if #b > 0 then
    local s, k2 = deliver(key, b, cap, score, msg_of)
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
