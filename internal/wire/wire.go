// Package wire encodes message content as msgpack, with text as msgpack str
// and bytes as msgpack bin, the encoding Python's channels_redis uses, so
// that Go and Python processes can exchange messages.
package wire

import (
	"errors"
	"fmt"
	"math"
	"unsafe"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/internal/box"
	"github.com/tinylib/msgp/msgp"
)

// maxDepth bounds nesting when decoding untrusted input.
const maxDepth = 64

// ErrDecode wraps every decoding error.
var ErrDecode = errors.New("wire: cannot decode message")

// Append appends the msgpack encoding of c to b. c must be in normal form
// (see normal.Normalize); values of other types are an error.
func Append(b []byte, c channels.Content) ([]byte, error) {
	b = msgp.AppendMapHeader(b, uint32(len(c)))
	for k, v := range c {
		b = msgp.AppendString(b, k)
		var err error
		if b, err = appendValue(b, v); err != nil {
			return b, fmt.Errorf("key %q: %w", k, err)
		}
	}
	return b, nil
}

// Marshal returns the msgpack encoding of c.
func Marshal(c channels.Content) ([]byte, error) { return Append(nil, c) }

func appendValue(b []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case nil:
		return msgp.AppendNil(b), nil
	case bool:
		return msgp.AppendBool(b, v), nil
	case int64:
		return msgp.AppendInt64(b, v), nil
	case float64:
		return msgp.AppendFloat64(b, v), nil
	case string:
		return msgp.AppendString(b, v), nil
	case []byte:
		return msgp.AppendBytes(b, v), nil
	case []any:
		b = msgp.AppendArrayHeader(b, uint32(len(v)))
		for i, e := range v {
			var err error
			if b, err = appendValue(b, e); err != nil {
				return b, fmt.Errorf("index %d: %w", i, err)
			}
		}
		return b, nil
	case map[string]any:
		return Append(b, v)
	case channels.Content:
		return Append(b, v)
	}
	return b, fmt.Errorf("%w: %T is not in normal form", channels.ErrInvalidContent, v)
}

// Unmarshal decodes a msgpack map into content in normal form: str becomes
// text, bin becomes bytes, every integer int64 and every float float64,
// except an integer above math.MaxInt64 (Python sends up to 2^64-1), which
// becomes a uint64, exact, rather than failing the whole message; it is
// not in normal form, so sending it on unconverted fails with
// channels.ErrInvalidContent. Map keys may be str or bin. Anything else
// (extensions, timestamps, a top level that is not a map, trailing bytes)
// is an error wrapping ErrDecode.
func Unmarshal(b []byte) (channels.Content, error) {
	d := decoder{b: b, copy: true}
	return d.top()
}

// ZeroCopyMax is the largest body whose text values UnmarshalString lets
// share the body's memory.
const ZeroCopyMax = 4 << 10

// UnmarshalString is Unmarshal for a body held in a string (a message as a
// Redis client returns it). Up to ZeroCopyMax bytes, text values and map
// keys are substrings of body instead of copies, so one allocation (body,
// which nothing else should reference) holds them all; above it every
// string is copied, so that keeping one small value does not keep a large
// message alive. Bytes values are always copied, since their receiver may
// change them; up to ZeroCopyMax, into one allocation for all of them.
func UnmarshalString(body string) (channels.Content, error) {
	d := decoder{src: body, b: unsafeBytes(body), copy: len(body) > ZeroCopyMax}
	return d.top()
}

// unsafeBytes views a string's bytes without copying; the decoder only
// reads them, and copies every bytes value it keeps.
func unsafeBytes(s string) []byte {
	if s == "" {
		return nil
	}
	return unsafe.Slice(unsafe.StringData(s), len(s))
}

type decoder struct {
	src  string // the body, when strings may share its memory
	b    []byte // the body's bytes, read only
	copy bool   // copy strings instead of sharing src

	// arena, when strings share src, holds the copies of the bytes values
	// still to come: one allocation for all of them (a request's headers
	// are a dozen small ones). Each value is capped at its length, so an
	// append to one never writes into the next.
	arena []byte

	// Boxes. An interface holding a string, a slice or a large integer
	// points to a copy of it, which the runtime allocates on its own: a
	// request's headers, eight pairs of two bytes values each, took about
	// forty allocations to decode. The decoder counts what a message
	// needs first (see size), then puts these copies in slabs of exactly
	// that size, one allocation per kind (see push and package box), and
	// carves small lists out of one array (see list).
	strs  []string
	bins  [][]byte
	lists [][]any
	ints  []int64
	elems []any
}

// smallList is the longest list carved from the elements slab.
const smallList = 8

// counts is how many boxes of each kind a message needs (see size).
type counts struct{ strs, bins, lists, ints, elems int }

// size counts the boxes the value at the head of b needs, and returns the
// rest of b; it stops at anything malformed, which value then reports.
func size(b []byte, c *counts, depth int) ([]byte, bool) {
	if depth > maxDepth || len(b) == 0 {
		return b, false
	}
	var err error
	switch msgp.NextType(b) {
	case msgp.StrType:
		var p []byte
		p, b, err = msgp.ReadStringZC(b)
		if len(p) > 0 {
			c.strs++
		}
	case msgp.BinType:
		_, b, err = msgp.ReadBytesZC(b)
		c.bins++
	case msgp.IntType:
		var i int64
		if i, b, err = msgp.ReadInt64Bytes(b); i < 0 || i > 255 {
			c.ints++
		}
	case msgp.UintType:
		var u uint64
		if u, b, err = msgp.ReadUint64Bytes(b); u > 255 && u <= math.MaxInt64 {
			c.ints++
		}
	case msgp.ArrayType:
		var n uint32
		if n, b, err = msgp.ReadArrayHeaderBytes(b); err != nil {
			return b, false
		}
		c.lists++
		if n <= smallList {
			c.elems += int(n)
		}
		for range n {
			var ok bool
			if b, ok = size(b, c, depth+1); !ok {
				return b, false
			}
		}
	case msgp.MapType:
		var n uint32
		if n, b, err = msgp.ReadMapHeaderBytes(b); err != nil {
			return b, false
		}
		for range n {
			if _, b, err = msgp.ReadMapKeyZC(b); err != nil {
				return b, false
			}
			var ok bool
			if b, ok = size(b, c, depth+1); !ok {
				return b, false
			}
		}
	default:
		b, err = msgp.Skip(b)
	}
	return b, err == nil
}

// slabs makes the slabs for counts c, one allocation of each kind needed.
func (d *decoder) slabs(c counts) {
	if c.strs > 0 {
		d.strs = make([]string, 0, c.strs)
	}
	if c.bins > 0 {
		d.bins = make([][]byte, 0, c.bins)
	}
	if c.lists > 0 {
		d.lists = make([][]any, 0, c.lists)
	}
	if c.ints > 0 {
		d.ints = make([]int64, 0, c.ints)
	}
	if c.elems > 0 {
		d.elems = make([]any, 0, c.elems)
	}
}

// push appends v to the slab *slab (counted ahead by size; a slab of its
// own for a value that was not) and returns a pointer to it there, to box.
func push[T any](slab *[]T, v T) *T {
	if len(*slab) == cap(*slab) {
		*slab = make([]T, 0, 1)
	}
	*slab = append(*slab, v)
	return &(*slab)[len(*slab)-1]
}

// list returns a list of n elements: when n is small, a piece of the
// elements slab, capped at n so that an append to it never writes into
// the next.
func (d *decoder) list(n int) []any {
	if n > smallList || n > cap(d.elems)-len(d.elems) {
		return make([]any, n)
	}
	start := len(d.elems)
	d.elems = d.elems[:start+n]
	return d.elems[start : start+n : start+n]
}

// bin copies p, a bytes value of the body followed by rest more bytes of
// it, for the message.
func (d *decoder) bin(p []byte, rest int) []byte {
	if d.copy || len(p) == 0 {
		return append([]byte{}, p...)
	}
	if len(p) > cap(d.arena)-len(d.arena) {
		// Every bytes value still to come lies in p or the rest.
		d.arena = make([]byte, 0, len(p)+rest)
	}
	start := len(d.arena)
	d.arena = append(d.arena, p...)
	return d.arena[start:len(d.arena):len(d.arena)]
}

func (d *decoder) top() (channels.Content, error) {
	if msgp.NextType(d.b) != msgp.MapType {
		return nil, fmt.Errorf("%w: top level is %s, not a map", ErrDecode, msgp.NextType(d.b))
	}
	var c counts
	size(d.b, &c, 0)
	d.slabs(c)
	v, rest, err := d.value(d.b, 0)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrDecode, len(rest))
	}
	return channels.Content(v.(map[string]any)), nil
}

// str returns the string held in bytes p, which lie inside d.b.
func (d *decoder) str(p []byte) string {
	if d.copy || len(p) == 0 {
		return string(p)
	}
	off := uintptr(unsafe.Pointer(unsafe.SliceData(p))) - uintptr(unsafe.Pointer(unsafe.StringData(d.src)))
	return d.src[off : off+uintptr(len(p))]
}

// int returns i in an interface; one from 0 to 255 needs no allocation
// (the runtime keeps those boxed), others go in a slab.
func (d *decoder) int(i int64) any {
	if i >= 0 && i < 256 {
		return i
	}
	return box.Int64(push(&d.ints, i))
}

func (d *decoder) value(b []byte, depth int) (any, []byte, error) {
	if depth > maxDepth {
		return nil, b, fmt.Errorf("%w: nested deeper than %d", ErrDecode, maxDepth)
	}
	if len(b) == 0 {
		return nil, b, fmt.Errorf("%w: truncated", ErrDecode)
	}
	var (
		v   any
		err error
	)
	switch t := msgp.NextType(b); t {
	case msgp.NilType:
		b, err = msgp.ReadNilBytes(b)
	case msgp.BoolType:
		v, b, err = msgp.ReadBoolBytes(b)
	case msgp.IntType:
		var i int64
		i, b, err = msgp.ReadInt64Bytes(b)
		v = d.int(i)
	case msgp.UintType:
		var u uint64
		u, b, err = msgp.ReadUint64Bytes(b)
		if u > math.MaxInt64 {
			v = u // from Python, say: kept exact, as uint64
		} else {
			v = d.int(int64(u))
		}
	case msgp.Float64Type:
		v, b, err = msgp.ReadFloat64Bytes(b)
	case msgp.Float32Type:
		var f float32
		f, b, err = msgp.ReadFloat32Bytes(b)
		v = float64(f)
	case msgp.StrType:
		var p []byte
		p, b, err = msgp.ReadStringZC(b)
		if len(p) == 0 {
			v = "" // needs no allocation
		} else {
			v = box.String(push(&d.strs, d.str(p)))
		}
	case msgp.BinType:
		var p []byte
		if p, b, err = msgp.ReadBytesZC(b); err == nil {
			v = box.Bytes(push(&d.bins, d.bin(p, len(b))))
		}
	case msgp.ArrayType:
		var n uint32
		n, b, err = msgp.ReadArrayHeaderBytes(b)
		if err == nil && uint32(len(b)) < n {
			err = msgp.ErrShortBytes
		}
		if err != nil {
			break
		}
		list := d.list(int(n))
		for i := range list {
			if list[i], b, err = d.value(b, depth+1); err != nil {
				return nil, b, err
			}
		}
		v = box.List(push(&d.lists, list))
	case msgp.MapType:
		var n uint32
		n, b, err = msgp.ReadMapHeaderBytes(b)
		if err == nil && uint64(len(b)) < 2*uint64(n) {
			err = msgp.ErrShortBytes
		}
		if err != nil {
			break
		}
		m := make(map[string]any, n)
		for range n {
			var key []byte
			key, b, err = msgp.ReadMapKeyZC(b)
			if err != nil {
				return nil, b, fmt.Errorf("%w: map key: %v", ErrDecode, err)
			}
			var e any
			if e, b, err = d.value(b, depth+1); err != nil {
				return nil, b, err
			}
			m[d.str(key)] = e
		}
		v = m
	default:
		return nil, b, fmt.Errorf("%w: unsupported msgpack type %s", ErrDecode, t)
	}
	if err != nil {
		if errors.Is(err, ErrDecode) {
			return nil, b, err
		}
		return nil, b, fmt.Errorf("%w: %v", ErrDecode, err)
	}
	return v, b, nil
}
