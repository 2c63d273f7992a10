package redislayer

import (
	"encoding/json"
	"errors"
	"math"
	"testing"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/internal/normal"
	"github.com/gochannels/channels/internal/wire"
	"github.com/google/go-cmp/cmp"
)

type (
	namedString string
	namedInt    int16
	namedBytes  []byte
	namedMap    map[string]int
	namedBool   bool
)

// The one-pass encoder accepts, converts, measures and refuses exactly
// what normal.Normalize does.
func TestEncoderAgreesWithNormalize(t *testing.T) {
	var nilSlice []int
	var nilMap map[string]any
	var nilContent channels.Content
	cases := []channels.Content{
		nil,
		{},
		{"text": "hello", "bytes": []byte{0, 1, 0xff}, "empty": "", "emptyb": []byte{}},
		{"int": 1, "int64": int64(math.MinInt64), "int32": int32(-5), "i8": int8(-8), "u8": uint8(200), "u64": uint64(math.MaxInt64), "uptr": uintptr(7)},
		{"f": 3.25, "f32": float32(1.5), "nan": math.NaN(), "inf": math.Inf(-1), "big": 1e300, "small": 1e-300},
		{"nil": nil, "t": true, "f": false, "nb": namedBool(true)},
		{"list": []any{int64(1), "two", []byte("three"), []any{}, map[string]any{}, nil}},
		{"strings": []string{"a", "b\"c", ""}, "bytess": [][]byte{{1}, {}}, "ints": []int{1, 2, 3}, "nilslice": nilSlice},
		{"nested": map[string]any{"a": map[string]any{"b": []any{[]byte{0xc2, 0xa3}, "£", nil}}}, "content": channels.Content{"x": 1}},
		{"named": namedString("n"), "nint": namedInt(-3), "nbytes": namedBytes("xy"), "nmap": namedMap{"k": 2}},
		{"array": [3]byte{1, 2, 3}, "arr2": [2]string{"a", "b"}},
		{"nilmap": nilMap, "nilcontent": nilContent},
		{"escape": "a\n\t\r\\\"\x01\x1f<>&", "utf8": "Ünïcödé ✓ 漢字 🙂"},
		{"strmap": map[string]string{"a": "b"}, "anymapnested": map[string][]int{"l": {1, 2}}},
		// The worst cases for the JSON size bound: one-byte values that
		// take many JSON bytes.
		{"\x01": []any{"\x01", nil, "", []any{}, map[string]any{"": nil}, false, int64(-32), int64(100)}},
		{"": nil},
	}
	for i, c := range cases {
		want, wantSize, wantErr := normal.Normalize(c)
		b, size, err := appendMap(nil, c, true)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("case %d: encoder error %v, Normalize error %v", i, err, wantErr)
		}
		if err != nil {
			continue
		}
		if size != wantSize {
			t.Errorf("case %d: encoder size %d, Normalize size %d", i, size, wantSize)
		}
		if size > jsonBound(len(b)) {
			t.Errorf("case %d: JSON size %d over the bound %d of a %d-byte encoding", i, size, jsonBound(len(b)), len(b))
		}
		got, err := wire.Unmarshal(b)
		if err != nil {
			t.Fatalf("case %d: decode: %v", i, err)
		}
		if diff := cmp.Diff(channels.Content(want), got, cmp.Comparer(func(a, b float64) bool {
			return a == b || (math.IsNaN(a) && math.IsNaN(b))
		})); diff != "" {
			t.Errorf("case %d: encoder and Normalize disagree (-Normalize +encoder):\n%s", i, diff)
		}
	}
	// Sizes are the JSON encoding's, for content JSON can encode.
	c := channels.Content{"a": "x<y", "b": []any{int64(1), 2.5, nil, true}, "m": map[string]any{"k": "\n"}}
	_, size, _ := appendMap(nil, c, true)
	var sb []byte
	sb, _ = json.Marshal(map[string]any(c))
	// encoding/json escapes '<' as \u003c (5 more bytes); the limit is
	// measured without HTML escaping.
	if size != len(sb)-5 {
		t.Errorf("size %d; JSON is %d bytes (%s)", size, len(sb)-5, sb)
	}
}

func TestEncoderRefusesLikeNormalize(t *testing.T) {
	for _, v := range []any{
		struct{}{}, make(chan int), func() {}, map[int]string{1: "a"}, uint64(math.MaxUint64),
		[]any{1, struct{}{}}, map[string]any{"deep": []any{map[string]any{"x": complex(1, 2)}}},
		new(int),
	} {
		c := channels.Content{"v": v}
		_, _, wantErr := normal.Normalize(c)
		_, _, err := appendMap(nil, c, true)
		if !errors.Is(err, channels.ErrInvalidContent) || wantErr == nil || err.Error() != wantErr.Error() {
			t.Errorf("value %T: encoder error %v; Normalize error %v", v, err, wantErr)
		}
	}
}

func FuzzEncoderAgreesWithNormalize(f *testing.F) {
	f.Add("key", "value", int64(3), 1.5, []byte{1, 2}, true)
	f.Fuzz(func(t *testing.T, k, s string, i int64, fl float64, b []byte, flag bool) {
		c := channels.Content{k: s, k + "i": i, k + "f": fl, k + "b": b, k + "l": []any{s, flag, []string{k}}}
		want, wantSize, wantErr := normal.Normalize(c)
		enc, size, err := appendMap(nil, c, true)
		if (err == nil) != (wantErr == nil) || size != wantSize && err == nil {
			t.Fatalf("encoder %d, %v; Normalize %d, %v", size, err, wantSize, wantErr)
		}
		if size > jsonBound(len(enc)) {
			t.Fatalf("JSON size %d over the bound %d of a %d-byte encoding", size, jsonBound(len(enc)), len(enc))
		}
		got, err := wire.Unmarshal(enc)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(channels.Content(want), got, cmp.Comparer(func(a, b float64) bool {
			return a == b || (math.IsNaN(a) && math.IsNaN(b))
		})); diff != "" {
			t.Fatalf("(-Normalize +encoder):\n%s", diff)
		}
	})
}

// Text that is not valid UTF-8 is refused (channels_redis could not decode
// it), wherever it is: a value, a map key, a list element, a []string.
func TestEncoderRefusesInvalidUTF8(t *testing.T) {
	for i, c := range []channels.Content{
		{"bad": "a\xffb"},
		{"k\xc2": 1},
		{"l": []any{"ok", "\xc2"}},
		{"s": []string{"ok", "\xff"}},
		{"m": map[string]any{"n": map[string]any{"x": namedString("\xff")}}},
	} {
		if _, _, err := appendMap(nil, c, false); !errors.Is(err, channels.ErrInvalidContent) {
			t.Errorf("case %d: encoder error %v; want ErrInvalidContent", i, err)
		}
	}
}
