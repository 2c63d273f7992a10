package redislayer

import (
	"fmt"
	"hash/crc32"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gochannels/channels"
)

// channelKey is the reserved message key of channels_redis: the full channel
// name of a process-specific message, a text or (group sends) a list of
// texts.
const channelKey = "__asgi_channel__"

// randomBytes is the length of the random prefix that makes sorted-set
// members unique, as in channels_redis.
const randomBytes = 12

// ConsistentHash returns the index, among ringSize hosts, of the host that
// holds name: channels_redis's _consistent_hash, the low 12 bits of the
// CRC-32 of the name scaled to the ring. It returns 0 when ringSize is 1 or
// less.
func ConsistentHash(name string, ringSize int) int {
	if ringSize <= 1 {
		return 0
	}
	v := crc32.ChecksumIEEE([]byte(name)) & 0xFFF
	divisor := 4096 / float64(ringSize)
	return int(float64(v) / divisor)
}

// nonLocal returns the part of a channel name that names its Redis key: the
// process prefix (up to and including '!') of a process-specific channel,
// the whole name otherwise.
func nonLocal(name string) string {
	if i := strings.IndexByte(name, '!'); i >= 0 {
		return name[:i+1]
	}
	return name
}

// clock produces sorted-set scores: Unix time in microseconds, strictly
// increasing within one layer so that one sender's messages keep their
// order even when sent within the same microsecond.
type clock struct{ last atomic.Int64 }

func (c *clock) next() int64 {
	now := time.Now().UnixMicro()
	for {
		last := c.last.Load()
		n := now
		if n <= last {
			n = last + 1
		}
		if c.last.CompareAndSwap(last, n) {
			return n
		}
	}
}

// formatMicros writes Unix microseconds as seconds with six decimals, the
// unit of channels_redis's scores, exactly.
func formatMicros(us int64) string {
	var buf [32]byte
	b := buf[:0]
	if us < 0 {
		b = append(b, '-')
		us = -us
	}
	b = strconv.AppendInt(b, us/1e6, 10)
	b = append(b, '.')
	frac := us % 1e6
	for d := int64(1e5); d > 0; d /= 10 {
		b = append(b, byte('0'+frac/d%10))
	}
	return string(b)
}

// scoreTime turns a score (Unix seconds) into a time.
func scoreTime(score float64) time.Time {
	return time.UnixMicro(int64(math.Round(score * 1e6)))
}

// fillRandom fills b with random bytes. They only need to be unique, not
// secret: they keep equal messages distinct in a sorted set.
func fillRandom(b []byte) {
	for i := 0; i < len(b); i += 8 {
		v := rand.Uint64()
		for j := i; j < len(b) && j < i+8; j++ {
			b[j] = byte(v)
			v >>= 8
		}
	}
}

// decoded is a message read from Redis.
type decoded struct {
	c channels.Content
	// The __asgi_channel__ names, if any: ch when it is a text (single
	// set), chans when it is a list.
	ch     string
	single bool
	chans  []string
}

// numChans returns how many __asgi_channel__ names d has.
func (d *decoded) numChans() int {
	if d.single {
		return 1
	}
	return len(d.chans)
}

// chanAt returns the i-th __asgi_channel__ name of d.
func (d *decoded) chanAt(i int) string {
	if d.single {
		return d.ch
	}
	return d.chans[i]
}

// decodeMember parses a sorted-set member and takes the reserved channel
// key out of the content.
func decodeMember(member string) (decoded, error) {
	if len(member) < randomBytes {
		return decoded{}, fmt.Errorf("redislayer: message of %d bytes is shorter than its random prefix", len(member))
	}
	c, err := decodeBody(member[randomBytes:])
	if err != nil {
		return decoded{}, fmt.Errorf("redislayer: %w", err)
	}
	d := decoded{c: c}
	if v, ok := c[channelKey]; ok {
		delete(c, channelKey)
		switch v := v.(type) {
		case string:
			d.ch, d.single = v, true
		case []any:
			for _, e := range v {
				if s, ok := e.(string); ok {
					d.chans = append(d.chans, s)
				}
			}
		}
	}
	return d, nil
}
