// Package jsonsize measures values as their JSON encoding would be, without
// encoding them: the message size limit is defined on the JSON size, and
// both the content normalizer and the Redis layer's one-pass encoder
// measure with it.
package jsonsize

import (
	"math"
	"strconv"
	"unicode/utf8"
)

// Int is the length of v as a JSON number.
func Int(v int64) int {
	var buf [24]byte
	return len(strconv.AppendInt(buf[:0], v, 10))
}

// Float is the length of f as a JSON number (4, as null, for NaN and the
// infinities, which JSON encoders that accept them write so).
func Float(f float64) int {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 4
	}
	var buf [32]byte
	return len(strconv.AppendFloat(buf[:0], f, 'g', -1, 64))
}

// Base64 is the length of n bytes as a quoted base64 JSON string.
func Base64(n int) int { return (n+2)/3*4 + 2 }

// String is the length of s as a JSON string without HTML escaping
// (invalid UTF-8 counted as \ufffd).
func String(s string) int {
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
			n += 6 // replaced by \ufffd
		} else {
			n += size
		}
		i += size
	}
	return n
}
