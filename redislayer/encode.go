package redislayer

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"sync"
	"unicode/utf8"

	"github.com/gochannels/channels/internal/jsonsize"

	"github.com/gochannels/channels"
	"github.com/tinylib/msgp/msgp"
)

// Sends encode content straight from the caller's values into msgpack, in
// one pass that also validates them and measures their JSON size, with
// the rules of normal.Normalize: the same accepted types, the same
// conversions (every integer becomes int64, float32 float64, typed slices
// and maps lists and maps), the same errors and the same size. Encoding is
// what copies the message, so no normalised copy is built first.
// encode_test.go checks the agreement with normal.Normalize.

// appendEntries appends the msgpack encoding of c's entries (without a map
// header) to b and, when measure is set, returns the JSON size of c as a
// whole map (otherwise 0).
func appendEntries(b []byte, c map[string]any, measure bool) ([]byte, int, error) {
	size := 2
	first := true
	for k, v := range c {
		if !utf8.ValidString(k) {
			return b, 0, fmt.Errorf("%w: key %s is not valid UTF-8", channels.ErrInvalidContent, strconv.Quote(k))
		}
		b = msgp.AppendString(b, k)
		var n int
		var err error
		if b, n, err = appendValue(b, v, measure); err != nil {
			return b, 0, fmt.Errorf("%w: key %s", err, strconv.Quote(k))
		}
		if measure {
			size += jsonsize.String(k) + 1 + n
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

// errNotUTF8 refuses text that is not valid UTF-8: msgpack's str type is
// UTF-8, and channels_redis (Python) fails to decode, and drops, a message
// holding any other.
var errNotUTF8 = fmt.Errorf("%w: text is not valid UTF-8 (send bytes as []byte)", channels.ErrInvalidContent)

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
		if !utf8.ValidString(v) {
			return b, 0, errNotUTF8
		}
		if !measure {
			return msgp.AppendString(b, v), 0, nil
		}
		return msgp.AppendString(b, v), jsonsize.String(v), nil
	case []byte:
		return msgp.AppendBytes(b, v), jsonsize.Base64(len(v)), nil
	case int64:
		return msgp.AppendInt64(b, v), sizeIf(measure, jsonsize.Int, v), nil
	case int:
		return msgp.AppendInt64(b, int64(v)), sizeIf(measure, jsonsize.Int, int64(v)), nil
	case int32:
		return msgp.AppendInt64(b, int64(v)), sizeIf(measure, jsonsize.Int, int64(v)), nil
	case float64:
		return msgp.AppendFloat64(b, v), sizeIf(measure, jsonsize.Float, v), nil
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
			if !utf8.ValidString(e) {
				return b, 0, fmt.Errorf("%w: index %d", errNotUTF8, i)
			}
			b = msgp.AppendString(b, e)
			if measure {
				size += jsonsize.String(e)
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

// appendReflect handles the values normal.Normalize converts by
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
