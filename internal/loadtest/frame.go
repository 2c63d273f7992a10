package loadtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
)

// Frame is the part of a load-test frame the generators read back.
type Frame struct {
	Seq int64 // sequence number within the sender; negative for probes
	T   int64 // sender's wall clock when sent, Unix nanoseconds
	Src int64 // sender's client ID
}

// MinFrameSize is the size of the smallest frame AppendFrame writes for
// one-digit numbers and no padding; -size below it yields unpadded frames.
var MinFrameSize = len(AppendFrame(nil, 0, 0, 0, 0))

// padding is the source of "pad" characters.
var padding = func() []byte {
	b := make([]byte, 1<<16)
	for i := range b {
		b[i] = 'x'
	}
	return b
}()

// AppendFrame appends the JSON frame {"seq":seq,"t":t,"src":src,"pad":"…"}
// to b and returns the extended slice. The padding makes the frame exactly
// size bytes long when size allows it; otherwise the frame is as short as
// its numbers permit. It does not allocate when b has room.
func AppendFrame(b []byte, seq, t, src int64, size int) []byte {
	start := len(b)
	b = append(b, `{"seq":`...)
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, `,"t":`...)
	b = strconv.AppendInt(b, t, 10)
	b = append(b, `,"src":`...)
	b = strconv.AppendInt(b, src, 10)
	b = append(b, `,"pad":"`...)
	for n := size - (len(b) - start) - len(`"}`); n > 0; {
		k := min(n, len(padding))
		b = append(b, padding[:k]...)
		n -= k
	}
	return append(b, `"}`...)
}

// errBadFrame is wrapped by every ParseFrame error.
var errBadFrame = errors.New("not a load-test frame")

// ParseFrame reads seq, t and src from a frame. Frames come back the way
// AppendFrame wrote them, so a fast scanner handles them without allocating;
// anything else it does not expect (escapes, values other than integers
// and plain strings, keys differing only in case; whitespace and key order
// are fine) goes through encoding/json instead.
func ParseFrame(b []byte) (Frame, error) {
	if f, ok := scanFrame(b); ok {
		return f, nil
	}
	var v struct {
		Seq *int64 `json:"seq"`
		T   *int64 `json:"t"`
		Src *int64 `json:"src"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return Frame{}, fmt.Errorf("%w: %w (%.40q)", errBadFrame, err, b)
	}
	if v.Seq == nil || v.T == nil || v.Src == nil {
		return Frame{}, fmt.Errorf("%w: seq, t or src missing (%.40q)", errBadFrame, b)
	}
	return Frame{Seq: *v.Seq, T: *v.T, Src: *v.Src}, nil
}

// scanFrame is ParseFrame's fast path. It reports false whenever it is
// unsure, never a wrong value.
func scanFrame(b []byte) (Frame, bool) {
	var f Frame
	var have int
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return f, false
	}
	i = skipSpace(b, i+1)
	for i < len(b) && b[i] != '}' {
		// Key: a plain string without escapes.
		if b[i] != '"' {
			return f, false
		}
		j := i + 1
		for j < len(b) && b[j] != '"' {
			if b[j] == '\\' || b[j] < 0x20 {
				return f, false
			}
			j++
		}
		if j >= len(b) {
			return f, false
		}
		key := b[i+1 : j]
		i = skipSpace(b, j+1)
		if i >= len(b) || b[i] != ':' {
			return f, false
		}
		i = skipSpace(b, i+1)
		var dst *int64
		switch string(key) {
		case "seq":
			dst, have = &f.Seq, have|1
		case "t":
			dst, have = &f.T, have|2
		case "src":
			dst, have = &f.Src, have|4
		default:
			// encoding/json matches keys without regard to case (and
			// with escapes); leave such frames to it.
			if (len(key) == 1 || len(key) == 3) &&
				(bytes.EqualFold(key, []byte("seq")) || bytes.EqualFold(key, []byte("t")) || bytes.EqualFold(key, []byte("src"))) {
				return f, false
			}
		}
		if dst != nil {
			n, k, ok := scanInt(b, i)
			if !ok {
				return f, false
			}
			*dst, i = n, k
		} else {
			k, ok := skipString(b, i)
			if !ok {
				return f, false
			}
			i = k
		}
		i = skipSpace(b, i)
		if i < len(b) && b[i] == ',' {
			i = skipSpace(b, i+1)
		} else if i >= len(b) || b[i] != '}' {
			return f, false
		}
	}
	if i >= len(b) || have != 7 || skipSpace(b, i+1) != len(b) {
		return f, false
	}
	return f, true
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// scanInt reads a JSON integer at b[i:]; a fraction, an exponent or a
// value outside int64 is refused.
func scanInt(b []byte, i int) (int64, int, bool) {
	neg := false
	if i < len(b) && b[i] == '-' {
		neg = true
		i++
	}
	start := i
	var n uint64
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		if i-start >= 19 { // 19 digits always fit in a uint64; 20 may not
			return 0, 0, false
		}
		n = n*10 + uint64(b[i]-'0')
		i++
	}
	if i == start || (b[start] == '0' && i-start > 1) ||
		(i < len(b) && (b[i] == '.' || b[i] == 'e' || b[i] == 'E')) || n > math.MaxInt64 {
		return 0, 0, false
	}
	if neg {
		return -int64(n), i, true
	}
	return int64(n), i, true
}

// skipString skips a string without escapes or control characters, the
// only other value a load-test frame has ("pad").
func skipString(b []byte, i int) (int, bool) {
	if i >= len(b) || b[i] != '"' {
		return 0, false
	}
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return j + 1, true
		case c == '\\' || c < 0x20:
			return 0, false
		}
	}
	return 0, false
}
