package redislayer

import (
	"errors"
	"fmt"
	"math"
	"unsafe"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/internal/wire"
	"github.com/tinylib/msgp/msgp"
)

// Received messages are decoded with the rules of wire.Unmarshal (the
// same types, the same refusals; decode_internal_test.go checks the
// agreement), but text values and map keys of small messages are
// substrings of the message as Redis returned it instead of copies: one
// allocation (the member string, which nothing else references) holds
// them all. Bytes values are always copied, since their receiver may
// change them. Above zeroCopyMax bytes every string is copied, so that
// keeping one small value does not keep a large message alive.

// zeroCopyMax is the largest member whose strings share its memory.
const zeroCopyMax = 4 << 10

// maxDecodeDepth bounds nesting, as wire.Unmarshal does.
const maxDecodeDepth = 64

type decoder struct {
	src  string // the msgpack body
	b    []byte // src's bytes, read only
	copy bool   // copy strings instead of sharing src
}

// decodeBody decodes a msgpack map (a message body).
func decodeBody(body string) (channels.Content, error) {
	d := decoder{src: body, b: unsafeBytes(body), copy: len(body) > zeroCopyMax}
	if msgp.NextType(d.b) != msgp.MapType {
		return nil, fmt.Errorf("%w: top level is %s, not a map", wire.ErrDecode, msgp.NextType(d.b))
	}
	v, rest, err := d.value(d.b, 0)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", wire.ErrDecode, len(rest))
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

func (d *decoder) value(b []byte, depth int) (any, []byte, error) {
	if depth > maxDecodeDepth {
		return nil, b, fmt.Errorf("%w: nested deeper than %d", wire.ErrDecode, maxDecodeDepth)
	}
	if len(b) == 0 {
		return nil, b, fmt.Errorf("%w: truncated", wire.ErrDecode)
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
		v, b, err = msgp.ReadInt64Bytes(b)
	case msgp.UintType:
		var u uint64
		u, b, err = msgp.ReadUint64Bytes(b)
		if err == nil && u > math.MaxInt64 {
			err = fmt.Errorf("integer %d does not fit in int64", u)
		}
		v = int64(u)
	case msgp.Float64Type:
		v, b, err = msgp.ReadFloat64Bytes(b)
	case msgp.Float32Type:
		var f float32
		f, b, err = msgp.ReadFloat32Bytes(b)
		v = float64(f)
	case msgp.StrType:
		var p []byte
		p, b, err = msgp.ReadStringZC(b)
		v = d.str(p)
	case msgp.BinType:
		var bs []byte
		bs, b, err = msgp.ReadBytesBytes(b, nil)
		if bs == nil {
			bs = []byte{}
		}
		v = bs
	case msgp.ArrayType:
		var n uint32
		n, b, err = msgp.ReadArrayHeaderBytes(b)
		if err == nil && uint32(len(b)) < n {
			err = msgp.ErrShortBytes
		}
		if err != nil {
			break
		}
		list := make([]any, n)
		for i := range list {
			if list[i], b, err = d.value(b, depth+1); err != nil {
				return nil, b, err
			}
		}
		v = list
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
				return nil, b, fmt.Errorf("%w: map key: %v", wire.ErrDecode, err)
			}
			var e any
			if e, b, err = d.value(b, depth+1); err != nil {
				return nil, b, err
			}
			m[d.str(key)] = e
		}
		v = m
	default:
		return nil, b, fmt.Errorf("%w: unsupported msgpack type %s", wire.ErrDecode, t)
	}
	if err != nil {
		if errors.Is(err, wire.ErrDecode) {
			return nil, b, err
		}
		return nil, b, fmt.Errorf("%w: %v", wire.ErrDecode, err)
	}
	return v, b, nil
}
