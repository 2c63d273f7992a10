// Package normal puts message content in the normal form every layer stores
// and sends: values are nil, bool, int64, float64, string, []byte, []any or
// map[string]any, nested to any depth (see channels.Content). It also measures
// content the way the message size limit does: the size of its JSON encoding,
// bytes counted as base64 text.
//
// It works on map[string]any, which channels.Content converts to and from
// freely, so that package channels can use it without an import cycle.
package normal

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"

	"github.com/gochannels/channels/internal/jsonsize"
)

// ErrInvalidContent is channels.ErrInvalidContent: content holds a value of a
// type that cannot travel over a layer.
var ErrInvalidContent = errors.New("channels: invalid content")

// ToInt converts an integer value of any Go integer type, or a float64 that
// is a whole number, to int64; it reports false for anything else.
func ToInt(v any) (int64, bool) {
	switch v := v.(type) {
	case int64:
		return v, true
	case int:
		return int64(v), true
	case int32:
		return int64(v), true
	case int16:
		return int64(v), true
	case int8:
		return int64(v), true
	case uint32:
		return int64(v), true
	case uint16:
		return int64(v), true
	case uint8:
		return int64(v), true
	case uint:
		if uint64(v) <= math.MaxInt64 {
			return int64(v), true
		}
	case uint64:
		if v <= math.MaxInt64 {
			return int64(v), true
		}
	case float64:
		if v == math.Trunc(v) && math.Abs(v) < 1<<63 {
			return int64(v), true
		}
	}
	return 0, false
}

// Clone returns a deep copy of m, which is already in normal form. It does
// not validate; values of other types are copied by reference.
func Clone(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = cloneValue(v)
	}
	return out
}

func cloneValue(v any) any {
	switch v := v.(type) {
	case []byte:
		return copyBytes(v)
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = cloneValue(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = cloneValue(e)
		}
		return out
	default:
		return v
	}
}

// Normalize returns a deep copy of c in normal form, and the size of its JSON
// encoding (bytes values counted as base64 text), which is what the message
// size limit is measured on.
//
// Integers of every Go integer type become int64 (a uint64 above MaxInt64 is
// an error), float32 becomes float64, Content and typed maps with string keys
// become map[string]any, typed slices and arrays become []any ([]byte stays
// bytes), and named types become their underlying type. Any other value is an
// error wrapping [ErrInvalidContent] that names the key where it was found. A
// nil map normalizes to an empty one.
func Normalize(c map[string]any) (map[string]any, int, error) {
	out, size, err := normalizeMap(c)
	if err != nil {
		return nil, 0, err
	}
	return out.(map[string]any), size, nil
}

// Copy is Normalize without the size, for a caller that does not need it
// (the size is measured where the message enters a layer): a map of
// values already normal (text, bytes, int64, float64, bool, nil) is copied
// without scanning its text; any other map goes through Normalize.
func Copy(c map[string]any) (map[string]any, error) {
	if c != nil {
		out := make(map[string]any, len(c))
		for k, v := range c {
			switch x := v.(type) {
			case string, int64, float64, bool, nil:
				out[k] = v
			case []byte:
				out[k] = copyBytes(x)
			default:
				nc, _, err := Normalize(c)
				return nc, err
			}
		}
		return out, nil
	}
	nc, _, err := Normalize(c)
	return nc, err
}

// Size reports whether c is already in the normal form Normalize produces
// (int64, float64, string, []byte, bool, nil, []any and map[string]any of
// such values) and, when it is, the size Normalize would report, without
// copying anything. A nil map is not in normal form.
func Size(c map[string]any) (int, bool) {
	if c == nil {
		return 0, false
	}
	return normalMapSize(c)
}

func normalMapSize(m map[string]any) (int, bool) {
	size := 2
	first := true
	for k, v := range m {
		n, ok := normalValueSize(v)
		if !ok {
			return 0, false
		}
		size += jsonsize.String(k) + 1 + n
		if !first {
			size++
		}
		first = false
	}
	return size, true
}

func normalValueSize(val any) (int, bool) {
	switch v := val.(type) {
	case nil:
		return 4, true
	case bool:
		if v {
			return 4, true
		}
		return 5, true
	case string:
		return jsonsize.String(v), true
	case []byte:
		return jsonsize.Base64(len(v)), true
	case int64:
		return jsonsize.Int(v), true
	case float64:
		return jsonsize.Float(v), true
	case []any:
		if v == nil {
			return 0, false
		}
		size := 2
		for i, e := range v {
			n, ok := normalValueSize(e)
			if !ok {
				return 0, false
			}
			size += n
			if i > 0 {
				size++
			}
		}
		return size, true
	case map[string]any:
		if v == nil {
			return 0, false
		}
		return normalMapSize(v)
	}
	return 0, false
}

func normalizeValue(val any) (any, int, error) {
	// Values already in normal form are returned as the interface value
	// they came in: boxing them again would allocate.
	switch v := val.(type) {
	case nil:
		return nil, 4, nil
	case bool:
		if v {
			return true, 4, nil
		}
		return false, 5, nil
	case string:
		return val, jsonsize.String(v), nil
	case []byte:
		return copyBytes(v), jsonsize.Base64(len(v)), nil
	case int64:
		return val, jsonsize.Int(v), nil
	case int:
		return int64(v), jsonsize.Int(int64(v)), nil
	case int32:
		return int64(v), jsonsize.Int(int64(v)), nil
	case float64:
		return val, jsonsize.Float(v), nil
	case []any:
		return normalizeList(len(v), func(i int) any { return v[i] })
	case []string:
		return normalizeList(len(v), func(i int) any { return v[i] })
	case [][]byte:
		return normalizeList(len(v), func(i int) any { return v[i] })
	case map[string]any:
		return normalizeMap(v)
	}
	return normalizeReflect(reflect.ValueOf(val))
}

func normalizeList(n int, at func(int) any) (any, int, error) {
	out := make([]any, n)
	size := 2
	for i := range n {
		nv, s, err := normalizeValue(at(i))
		if err != nil {
			return nil, 0, fmt.Errorf("%w: index %d", err, i)
		}
		out[i] = nv
		size += s
		if i > 0 {
			size++
		}
	}
	return out, size, nil
}

func normalizeMap(m map[string]any) (any, int, error) {
	out := make(map[string]any, len(m))
	size := 2
	first := true
	for k, v := range m {
		nv, n, err := normalizeValue(v)
		if err != nil {
			return nil, 0, fmt.Errorf("%w: key %s", err, strconv.Quote(k))
		}
		out[k] = nv
		size += jsonsize.String(k) + 1 + n
		if !first {
			size++
		}
		first = false
	}
	return out, size, nil
}

var mapType = reflect.TypeFor[map[string]any]()

func normalizeReflect(rv reflect.Value) (any, int, error) {
	switch rv.Kind() {
	case reflect.Bool:
		return normalizeValue(rv.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return normalizeValue(rv.Int())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		u := rv.Uint()
		if u > math.MaxInt64 {
			return nil, 0, fmt.Errorf("%w: integer %d does not fit in int64", ErrInvalidContent, u)
		}
		return normalizeValue(int64(u))
	case reflect.Float32, reflect.Float64:
		return normalizeValue(rv.Float())
	case reflect.String:
		return normalizeValue(rv.String())
	case reflect.Slice, reflect.Array:
		if rv.Kind() == reflect.Slice && rv.Type().Elem().Kind() == reflect.Uint8 {
			return normalizeValue(rv.Bytes())
		}
		if rv.Kind() == reflect.Slice && rv.IsNil() {
			return []any{}, 2, nil
		}
		return normalizeList(rv.Len(), func(i int) any { return rv.Index(i).Interface() })
	case reflect.Map:
		if rv.Type().Key().Kind() != reflect.String {
			return nil, 0, fmt.Errorf("%w: map with %s keys (keys must be text)", ErrInvalidContent, rv.Type().Key())
		}
		if rv.Type().ConvertibleTo(mapType) {
			// channels.Content and other named map[string]any types.
			return normalizeMap(rv.Convert(mapType).Interface().(map[string]any))
		}
		m := make(map[string]any, rv.Len())
		for it := rv.MapRange(); it.Next(); {
			m[it.Key().String()] = it.Value().Interface()
		}
		return normalizeMap(m)
	case reflect.Invalid:
		return nil, 4, nil
	}
	return nil, 0, fmt.Errorf("%w: unsupported type %s", ErrInvalidContent, rv.Type())
}

// copyBytes copies b; the copy is never nil, so that empty bytes stay bytes.
func copyBytes(b []byte) []byte {
	out := make([]byte, len(b))
	copy(out, b)
	return out
}

// Fits is Size for a caller that only compares the size with limit: it
// reports whether c is in normal form and, when it is, whether its size is
// at most limit. It does not scan text for the characters JSON escapes
// unless a bound that assumes the worst (six bytes per byte of text) is
// over limit: a message far below the limit is checked at the cost of
// walking its values.
func Fits(c map[string]any, limit int) (fits, normal bool) {
	if c == nil {
		return false, false
	}
	bound, ok := mapBound(c)
	if !ok {
		return false, false
	}
	if bound <= limit {
		return true, true
	}
	size, _ := normalMapSize(c)
	return size <= limit, true
}

// mapBound is normalMapSize with each text's size bounded by the worst
// case instead of measured.
func mapBound(m map[string]any) (int, bool) {
	size := 2
	for k, v := range m {
		n, ok := valueBound(v)
		if !ok {
			return 0, false
		}
		size += stringBound(k) + 2 + n
	}
	return size, true
}

// stringBound is at least jsonsize.String(s): quotes, and at most six
// bytes (\u00XX) for each byte.
func stringBound(s string) int { return 6*len(s) + 2 }

func valueBound(val any) (int, bool) {
	switch v := val.(type) {
	case string:
		return stringBound(v), true
	case []any:
		if v == nil {
			return 0, false
		}
		size := 2
		for _, e := range v {
			n, ok := valueBound(e)
			if !ok {
				return 0, false
			}
			size += n + 1
		}
		return size, true
	case map[string]any:
		if v == nil {
			return 0, false
		}
		return mapBound(v)
	}
	return normalValueSize(val)
}
