package redislayer

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"sync"
	"unicode/utf8"
	"unsafe"

	"github.com/gochannels/channels"
	"github.com/tinylib/msgp/msgp"
)

// Sends encode content straight from the caller's values into msgpack, in
// one pass that also validates them and measures their JSON size, with
// the rules of channels.Normalize: the same accepted types, the same
// conversions (every integer becomes int64, float32 float64, typed slices
// and maps lists and maps), the same errors and the same size. Encoding is
// what copies the message, so no normalised copy is built first.
// encode_test.go checks the agreement with channels.Normalize.

// appendEntries appends the msgpack encoding of c's entries (without a map
// header) to b and, when measure is set, returns the JSON size of c as a
// whole map (otherwise 0).
func appendEntries(b []byte, c map[string]any, measure bool) ([]byte, int, error) {
	size := 2
	first := true
	for k, v := range c {
		b = msgp.AppendString(b, k)
		var n int
		var err error
		if b, n, err = appendValue(b, v, measure); err != nil {
			return b, 0, fmt.Errorf("%w: key %s", err, strconv.Quote(k))
		}
		if measure {
			size += jsonStringSize(k) + 1 + n
			if !first {
				size++
			}
			first = false
		}
	}
	if !measure {
		size = 0
	}
	return b, size, nil
}

func appendMap(b []byte, m map[string]any, measure bool) ([]byte, int, error) {
	b = msgp.AppendMapHeader(b, uint32(len(m)))
	return appendEntries(b, m, measure)
}

// jsonBound is a bound on the JSON size of a message whose msgpack
// encoding (map header included) is n bytes long: every msgpack value
// takes at least one byte for at most six of JSON (a control character in
// a string, \u0001), and a separator (',' or ':') is at most one more per
// value, so JSON + 1 <= 7 × msgpack holds for every value and, by
// induction, for lists and maps. Messages under the limit by this bound
// are never measured.
func jsonBound(n int) int { return 7 * n }

// appendValue appends one value and returns its JSON size.
func appendValue(b []byte, v any, measure bool) ([]byte, int, error) {
	switch v := v.(type) {
	case nil:
		return msgp.AppendNil(b), 4, nil
	case bool:
		if v {
			return msgp.AppendBool(b, true), 4, nil
		}
		return msgp.AppendBool(b, false), 5, nil
	case string:
		if !measure {
			return msgp.AppendString(b, v), 0, nil
		}
		return msgp.AppendString(b, v), jsonStringSize(v), nil
	case []byte:
		return msgp.AppendBytes(b, v), base64Size(len(v)), nil
	case int64:
		return msgp.AppendInt64(b, v), sizeIf(measure, intSize, v), nil
	case int:
		return msgp.AppendInt64(b, int64(v)), sizeIf(measure, intSize, int64(v)), nil
	case int32:
		return msgp.AppendInt64(b, int64(v)), sizeIf(measure, intSize, int64(v)), nil
	case float64:
		return msgp.AppendFloat64(b, v), sizeIf(measure, floatSize, v), nil
	case []any:
		b = msgp.AppendArrayHeader(b, uint32(len(v)))
		size := 2
		for i, e := range v {
			var n int
			var err error
			if b, n, err = appendValue(b, e, measure); err != nil {
				return b, 0, fmt.Errorf("%w: index %d", err, i)
			}
			size += n
			if i > 0 {
				size++
			}
		}
		return b, size, nil
	case []string:
		b = msgp.AppendArrayHeader(b, uint32(len(v)))
		size := 2
		for i, e := range v {
			b = msgp.AppendString(b, e)
			if measure {
				size += jsonStringSize(e)
			}
			if i > 0 {
				size++
			}
		}
		return b, size, nil
	case map[string]any:
		return appendMap(b, v, measure)
	case channels.Content:
		return appendMap(b, v, measure)
	}
	return appendReflect(b, reflect.ValueOf(v), measure)
}

// appendReflect handles the values channels.Normalize converts by
// reflection: named types, other integer and float widths, typed slices,
// arrays and maps with string keys.
func appendReflect(b []byte, rv reflect.Value, measure bool) ([]byte, int, error) {
	switch rv.Kind() {
	case reflect.Bool:
		return appendValue(b, rv.Bool(), measure)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return appendValue(b, rv.Int(), measure)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		u := rv.Uint()
		if u > math.MaxInt64 {
			return b, 0, fmt.Errorf("%w: integer %d does not fit in int64", channels.ErrInvalidContent, u)
		}
		return appendValue(b, int64(u), measure)
	case reflect.Float32, reflect.Float64:
		return appendValue(b, rv.Float(), measure)
	case reflect.String:
		return appendValue(b, rv.String(), measure)
	case reflect.Slice, reflect.Array:
		if rv.Kind() == reflect.Slice && rv.Type().Elem().Kind() == reflect.Uint8 {
			return appendValue(b, rv.Bytes(), measure)
		}
		if rv.Kind() == reflect.Slice && rv.IsNil() {
			return msgp.AppendArrayHeader(b, 0), 2, nil
		}
		n := rv.Len()
		b = msgp.AppendArrayHeader(b, uint32(n))
		size := 2
		for i := range n {
			var s int
			var err error
			if b, s, err = appendValue(b, rv.Index(i).Interface(), measure); err != nil {
				return b, 0, fmt.Errorf("%w: index %d", err, i)
			}
			size += s
			if i > 0 {
				size++
			}
		}
		return b, size, nil
	case reflect.Map:
		if rv.Type().Key().Kind() != reflect.String {
			return b, 0, fmt.Errorf("%w: map with %s keys (keys must be text)", channels.ErrInvalidContent, rv.Type().Key())
		}
		m := make(map[string]any, rv.Len())
		for it := rv.MapRange(); it.Next(); {
			m[it.Key().String()] = it.Value().Interface()
		}
		return appendMap(b, m, measure)
	case reflect.Invalid:
		return msgp.AppendNil(b), 4, nil
	}
	return b, 0, fmt.Errorf("%w: unsupported type %s", channels.ErrInvalidContent, rv.Type())
}

func sizeIf[T any](measure bool, size func(T) int, v T) int {
	if !measure {
		return 0
	}
	return size(v)
}

func intSize(v int64) int {
	var buf [24]byte
	return len(strconv.AppendInt(buf[:0], v, 10))
}

func floatSize(f float64) int {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 4
	}
	var buf [32]byte
	return len(strconv.AppendFloat(buf[:0], f, 'g', -1, 64))
}

func base64Size(n int) int { return (n+2)/3*4 + 2 }

// jsonStringSize is the length of s as a JSON string without HTML escaping.
func jsonStringSize(s string) int {
	n := 2
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			switch {
			case b == '"' || b == '\\' || b == '\n' || b == '\r' || b == '\t':
				n += 2
			case b < 0x20:
				n += 6
			default:
				n++
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			n += 6
		} else {
			n += size
		}
		i += size
	}
	return n
}

// bufPool recycles the buffers messages are encoded into. A buffer goes
// back only once Redis has answered the call that carried it.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// maxPooledBuf is the largest buffer kept for reuse.
const maxPooledBuf = 64 << 10

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) > maxPooledBuf {
		return
	}
	*b = (*b)[:0]
	bufPool.Put(b)
}

// unsafeBytes views a string's bytes without copying; they must not be
// written. The decoder copies everything it keeps.
func unsafeBytes(s string) []byte {
	if s == "" {
		return nil
	}
	return unsafe.Slice(unsafe.StringData(s), len(s))
}
