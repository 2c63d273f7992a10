package redislayer

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/internal/wire"
	"github.com/google/go-cmp/cmp"
	"github.com/tinylib/msgp/msgp"
)

func sameNaN() cmp.Option {
	return cmp.Comparer(func(a, b float64) bool { return a == b || (math.IsNaN(a) && math.IsNaN(b)) })
}

// The decoder returns what wire.Unmarshal returns, and refuses what it
// refuses.
func TestDecoderAgreesWithWire(t *testing.T) {
	big := strings.Repeat("x", zeroCopyMax+10)
	var inputs [][]byte
	for _, c := range []channels.Content{
		{},
		{"text": "£ ✓", "bytes": []byte{0, 0xff}, "emptyb": []byte{}, "empty": ""},
		{"i": int64(math.MinInt64), "u": int64(math.MaxInt64), "f": 2.5, "n": nil, "t": true},
		{"list": []any{int64(1), "two", []byte("three"), []any{}, map[string]any{"k": []any{nil}}}},
		{"big": big, "small": "s"},
	} {
		b, err := wire.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, b)
	}
	// Encodings wire.Marshal does not produce: float32, uint64, bin keys,
	// and invalid ones.
	m := msgp.AppendMapHeader(nil, 3)
	m = msgp.AppendString(m, "f32")
	m = msgp.AppendFloat32(m, 1.5)
	m = msgp.AppendBytes(m, []byte("binkey"))
	m = msgp.AppendUint64(m, 7)
	m = msgp.AppendString(m, "huge")
	m = msgp.AppendUint64(m, math.MaxUint64)
	inputs = append(inputs, m,
		msgp.AppendArrayHeader(nil, 0),             // not a map
		append(msgp.AppendMapHeader(nil, 0), 0xc0), // trailing byte
		msgp.AppendMapHeader(nil, 2),               // truncated
		[]byte{0x81, 0xa1, 'x', 0xd4, 1, 2},        // an extension
		[]byte{},
	)
	deep := []byte{}
	for range 70 {
		deep = append(deep, 0x81, 0xa1, 'k')
	}
	inputs = append(inputs, append(deep, 0xc0))
	for i, in := range inputs {
		want, wantErr := wire.Unmarshal(in)
		got, err := decodeBody(string(in))
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("input %d: decoder error %v, wire error %v", i, err, wantErr)
		}
		if err != nil {
			if !errors.Is(err, wire.ErrDecode) {
				t.Errorf("input %d: error %v does not wrap wire.ErrDecode", i, err)
			}
			continue
		}
		if diff := cmp.Diff(want, got, sameNaN()); diff != "" {
			t.Errorf("input %d (-wire +decoder):\n%s", i, diff)
		}
	}
}

// Bytes values are the receiver's own: changing them changes nothing
// else, and neither does decoding the same member twice.
func TestDecoderCopiesBytes(t *testing.T) {
	b, _ := wire.Marshal(channels.Content{"b": []byte("abc"), "s": "xyz"})
	member := string(b)
	c1, _ := decodeBody(member)
	c1["b"].([]byte)[0] = 'z'
	c2, _ := decodeBody(member)
	if string(c2["b"].([]byte)) != "abc" || c2["s"] != "xyz" {
		t.Fatalf("second decode = %v", c2)
	}
}

func FuzzDecoderAgreesWithWire(f *testing.F) {
	b, _ := wire.Marshal(channels.Content{"a": []any{"x", int64(1), 2.5, []byte{1}, map[string]any{"k": nil}}})
	f.Add(b)
	f.Fuzz(func(t *testing.T, in []byte) {
		want, wantErr := wire.Unmarshal(in)
		got, err := decodeBody(string(in))
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("decoder error %v, wire error %v", err, wantErr)
		}
		if err == nil {
			if diff := cmp.Diff(want, got, sameNaN()); diff != "" {
				t.Fatalf("(-wire +decoder):\n%s", diff)
			}
		}
	})
}
