package normal_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/internal/normal"
	"github.com/google/go-cmp/cmp"
)

type myString string
type myInt int16

func TestNormalize(t *testing.T) {
	in := channels.Content{
		"int":     7,
		"int8":    int8(-8),
		"uint16":  uint16(16),
		"uint64":  uint64(1 << 40),
		"float32": float32(0.5),
		"named":   myString("text"),
		"namedi":  myInt(3),
		"strings": []string{"a", "b"},
		"headers": [][]byte{[]byte("host"), []byte("x")},
		"content": channels.Content{"nested": int32(1)},
		"typed":   map[string]int{"one": 1},
		"array":   [2]bool{true, false},
		"nilmap":  map[string]any(nil),
		"nilbyte": []byte(nil),
	}
	got, size, err := normal.Normalize(in)
	if err != nil {
		t.Fatal(err)
	}
	want := channels.Content{
		"int":     int64(7),
		"int8":    int64(-8),
		"uint16":  int64(16),
		"uint64":  int64(1 << 40),
		"float32": 0.5,
		"named":   "text",
		"namedi":  int64(3),
		"strings": []any{"a", "b"},
		"headers": []any{[]byte("host"), []byte("x")},
		"content": map[string]any{"nested": int64(1)},
		"typed":   map[string]any{"one": int64(1)},
		"array":   []any{true, false},
		"nilmap":  map[string]any{},
		"nilbyte": []byte{},
	}
	if diff := cmp.Diff(want, channels.Content(got)); diff != "" {
		t.Errorf("Normalize (-want +got):\n%s", diff)
	}
	if size <= 0 {
		t.Errorf("size = %d", size)
	}
}

func TestNormalizeRefusesWithPath(t *testing.T) {
	for _, tc := range []struct {
		c    channels.Content
		path string
	}{
		{channels.Content{"when": time.Now()}, `key "when"`},
		{channels.Content{"a": []any{1, map[string]any{"b": make(chan int)}}}, `key "b": index 1: key "a"`},
		{channels.Content{"m": map[int]int{1: 1}}, `key "m"`},
		{channels.Content{"u": uint64(math.MaxUint64)}, `key "u"`},
		{channels.Content{"p": new(int)}, `key "p"`},
	} {
		_, _, err := normal.Normalize(tc.c)
		if !errors.Is(err, channels.ErrInvalidContent) {
			t.Errorf("Normalize(%v) = %v; want ErrInvalidContent", tc.c, err)
			continue
		}
		if !strings.Contains(err.Error(), tc.path) {
			t.Errorf("Normalize error %q does not name %s", err, tc.path)
		}
	}
}

// The size is the length of the JSON encoding with bytes as base64.
func TestNormalizeSizeIsJSONLength(t *testing.T) {
	c := channels.Content{
		"text":    "plain \"quoted\" back\\slash\nnew line\ttab \x01 ctl é 漢 🙂 <html>&",
		"bytes":   []byte{0, 1, 2, 3, 4},
		"int":     int64(-1234567),
		"float":   3.5,
		"nil":     nil,
		"bool":    false,
		"list":    []any{int64(1), "two", []any{}},
		"map":     map[string]any{"k": "v", "n": map[string]any{}},
		"headers": []any{[]any{[]byte("a"), []byte("bc")}},
	}
	norm, size, err := normal.Normalize(c)
	if err != nil {
		t.Fatal(err)
	}
	jsonable := toJSONable(norm)
	var sb strings.Builder
	enc := json.NewEncoder(&sb)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(jsonable); err != nil {
		t.Fatal(err)
	}
	if want := len(strings.TrimSuffix(sb.String(), "\n")); size != want {
		t.Errorf("size = %d; the JSON encoding is %d bytes: %s", size, want, sb.String())
	}
}

func toJSONable(v any) any {
	switch v := v.(type) {
	case []byte:
		return base64.StdEncoding.EncodeToString(v)
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = toJSONable(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = toJSONable(e)
		}
		return out
	case channels.Content:
		return toJSONable(map[string]any(v))
	}
	return v
}

// Size recognises content already in normal form, reporting the size
// Normalize would, and refuses everything Normalize would change.
func TestSize(t *testing.T) {
	inNormalForm := []channels.Content{
		{},
		{"text": "héllo \"quoted\"\n", "n": int64(-42), "f": 2.5, "b": []byte{0, 1, 2}, "ok": true, "no": false, "nil": nil},
		{"headers": []any{[]any{[]byte("host"), []byte("example.com")}}, "map": map[string]any{"a": []any{}, "b": map[string]any{}}},
	}
	for i, c := range inNormalForm {
		size, ok := normal.Size(c)
		if !ok {
			t.Errorf("case %d: not recognised as normal: %v", i, c)
			continue
		}
		_, want, err := normal.Normalize(c)
		if err != nil {
			t.Fatal(err)
		}
		if size != want {
			t.Errorf("case %d: Size %d, Normalize %d", i, size, want)
		}
	}
	changed := []channels.Content{
		nil,
		{"n": 1},
		{"n": int32(1)},
		{"f": float32(1)},
		{"s": myString("x")},
		{"list": []string{"a"}},
		{"list": [][]byte{{1}}},
		{"list": []any(nil)},
		{"nested": channels.Content{"a": int64(1)}},
		{"map": map[string]string{"a": "b"}},
		{"deep": []any{map[string]any{"n": 1}}},
	}
	for i, c := range changed {
		if _, ok := normal.Size(c); ok {
			t.Errorf("case %d: %v reported as normal", i, c)
		}
	}
}

// ToInt takes every Go integer type that fits, and whole floats.
func TestToInt(t *testing.T) {
	for _, v := range []any{int64(7), 7, int32(7), int16(7), int8(7), uint64(7), uint(7), uint32(7), uint16(7), uint8(7), 7.0} {
		if n, ok := normal.ToInt(v); !ok || n != 7 {
			t.Errorf("ToInt(%T 7) = %d, %v", v, n, ok)
		}
	}
	for _, v := range []any{uint64(math.MaxUint64), 7.5, "7", nil, true} {
		if _, ok := normal.ToInt(v); ok {
			t.Errorf("ToInt(%T %v) reported an integer", v, v)
		}
	}
}

// Fits agrees with Size at every limit around a message's exact size,
// for text that JSON escapes heavily and text it does not escape at all.
func TestFitsAgreesWithSize(t *testing.T) {
	for _, c := range []map[string]any{
		{"text": strings.Repeat("a", 1000), "n": int64(12)},
		{"text": strings.Repeat("\x01\"\\\n", 250), "list": []any{"x", []byte("yy"), map[string]any{"k": "\u2028"}}},
		{"empty": map[string]any{}, "b": true, "f": 1.5, "nil": nil},
	} {
		size, ok := normal.Size(c)
		if !ok {
			t.Fatalf("%v not in normal form", c)
		}
		for _, limit := range []int{0, size - 1, size, size + 1, 6*size + 100} {
			fits, ok := normal.Fits(c, limit)
			if !ok || fits != (size <= limit) {
				t.Errorf("Fits(limit %d) = %v, %v for a message of %d bytes", limit, fits, ok, size)
			}
		}
	}
	if _, ok := normal.Fits(map[string]any{"t": time.Now()}, 1<<20); ok {
		t.Error("Fits took a time.Time for normal form")
	}
}

// Copy gives what Normalize gives, for maps of plain values (its fast
// path) and for others alike, refuses what Normalize refuses, and its
// bytes are copies.
func TestCopyIsNormalizeWithoutSize(t *testing.T) {
	raw := []byte("raw")
	for _, c := range []channels.Content{
		{"text": "hi", "n": int64(1), "f": 0.5, "ok": true, "none": nil, "bytes": raw},
		{"text": "hi", "n": 7, "strings": []string{"a"}, "content": channels.Content{"nested": int32(1)}},
		{"bytes": []byte(nil)},
		{},
		nil,
	} {
		want, _, err := normal.Normalize(c)
		if err != nil {
			t.Fatal(err)
		}
		got, err := normal.Copy(c)
		if err != nil {
			t.Fatalf("Copy(%v): %v", c, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Copy(%v) differs from Normalize (-Normalize +Copy):\n%s", c, diff)
		}
	}
	got, _ := normal.Copy(channels.Content{"bytes": raw})
	raw[0] = 'X'
	if b := got["bytes"].([]byte); string(b) != "raw" {
		t.Errorf("Copy shares bytes with its input: %q", b)
	}
	if _, err := normal.Copy(channels.Content{"text": "a", "when": time.Now()}); !errors.Is(err, channels.ErrInvalidContent) {
		t.Errorf("Copy of a time: %v; want ErrInvalidContent", err)
	}
}

// BenchmarkCopy compares what a consumer's send costs to copy a reply:
// Normalize also measures the text, Copy does not.
func BenchmarkCopy(b *testing.B) {
	reply := channels.Content{"text": strings.Repeat("echo ", 13)}
	b.Run("Normalize", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := normal.Normalize(reply); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Copy", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := normal.Copy(reply); err != nil {
				b.Fatal(err)
			}
		}
	})
}
