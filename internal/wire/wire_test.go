package wire_test

import (
	"encoding/hex"
	"errors"
	"math"
	"testing"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/internal/normal"
	"github.com/gochannels/channels/internal/wire"
	"github.com/google/go-cmp/cmp"
	"github.com/tinylib/msgp/msgp"
)

func TestRoundTrip(t *testing.T) {
	in := channels.Content{
		"bytes": []byte{0xC2, 0xA3}, "text": "£", "empty": "", "emptyb": []byte{},
		"int": int64(-5), "big": int64(math.MaxInt64), "small": int64(math.MinInt64), "pos": int64(200),
		"float": 2.5, "nil": nil, "t": true, "f": false,
		"list":   []any{int64(1), "a", []byte("b"), []any{}, map[string]any{}},
		"nested": map[string]any{"headers": []any{[]any{[]byte("host"), []byte("x")}}},
	}
	b, err := wire.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	for name, unmarshal := range map[string]func([]byte) (channels.Content, error){
		"Unmarshal":       wire.Unmarshal,
		"UnmarshalString": func(b []byte) (channels.Content, error) { return wire.UnmarshalString(string(b)) },
	} {
		out, err := unmarshal(b)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(in, out); diff != "" {
			t.Fatalf("%s round trip (-in +out):\n%s", name, diff)
		}
	}
}

// Bytes values decoded from a small body share one allocation; each is
// capped at its own length, so that appending to one, or changing it,
// leaves the others alone.
func TestUnmarshalStringBytesAreSeparate(t *testing.T) {
	in := channels.Content{"headers": []any{[]any{[]byte("host"), []byte("example.com")}, []any{[]byte("accept"), []byte("*/*")}}}
	b, err := wire.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := wire.UnmarshalString(string(b))
	if err != nil {
		t.Fatal(err)
	}
	hs := out["headers"].([]any)
	first := hs[0].([]any)
	name := first[0].([]byte)
	_ = append(name, "XXXXXXXXXXXXXXXX"...)
	name[0] = 'H'
	if diff := cmp.Diff(channels.Content{"headers": []any{[]any{[]byte("Host"), []byte("example.com")}, []any{[]byte("accept"), []byte("*/*")}}}, out); diff != "" {
		t.Fatalf("changing one bytes value changed others (-want +got):\n%s", diff)
	}
	body := string(b)
	// The map (2), the lists and their boxes (6), the bytes values' boxes
	// (4), and one allocation for the four values' bytes.
	if n := testing.AllocsPerRun(100, func() { _, _ = wire.UnmarshalString(body) }); n > 13 {
		t.Errorf("%v allocations to decode a message with 4 bytes values; want at most 13 (one for all the bytes)", n)
	}
}

// Bytes that Python's msgpack.packb({...}, use_bin_type=True) produces.
func TestDecodesPythonEncoding(t *testing.T) {
	// {"text": "£", "bytes": b"\xc2\xa3", "n": 1, "big": 4294967296, "f": 1.5, "l": [None, True]}
	raw, _ := hex.DecodeString("86a474657874a2c2a3a56279746573c402c2a3a16e01a3626967cf0000000100000000a166cb3ff8000000000000a16c92c0c3")
	got, err := wire.Unmarshal(raw)
	if err != nil {
		t.Fatal(err)
	}
	want := channels.Content{"text": "£", "bytes": []byte{0xC2, 0xA3}, "n": int64(1), "big": int64(1 << 32), "f": 1.5, "l": []any{nil, true}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
}

func TestRejects(t *testing.T) {
	for name, h := range map[string]string{
		"not a map":   "92c0c0",
		"truncated":   "82a161",
		"extension":   "81a161d40100",
		"trailing":    "80c0",
		"empty input": "",
		"short array": "81a161dd0000ffff",
	} {
		raw, _ := hex.DecodeString(h)
		if _, err := wire.Unmarshal(raw); !errors.Is(err, wire.ErrDecode) {
			t.Errorf("%s: Unmarshal = %v; want ErrDecode", name, err)
		}
	}
	if _, err := wire.Marshal(channels.Content{"x": 3}); !errors.Is(err, channels.ErrInvalidContent) {
		t.Errorf("Marshal of a non-normal int = %v", err)
	}
}

func FuzzUnmarshal(f *testing.F) {
	b, _ := wire.Marshal(channels.Content{"a": []any{int64(1), "x", []byte("y"), map[string]any{"z": nil}}})
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := wire.Unmarshal(data)
		if err != nil {
			return
		}
		// Whatever decodes must be in normal form and encode again, but
		// for an integer above MaxInt64, kept exact as a uint64 (see
		// Unmarshal), which sending refuses.
		if hasBigUint(c) {
			return
		}
		if _, _, err := normal.Normalize(c); err != nil {
			t.Fatalf("decoded content is not normal: %v", err)
		}
		if _, err := wire.Marshal(c); err != nil {
			t.Fatalf("decoded content does not encode: %v", err)
		}
	})
}

// hasBigUint reports whether v holds a uint64 anywhere.
func hasBigUint(v any) bool {
	switch v := v.(type) {
	case uint64:
		return true
	case []any:
		for _, e := range v {
			if hasBigUint(e) {
				return true
			}
		}
	case map[string]any:
		for _, e := range v {
			if hasBigUint(e) {
				return true
			}
		}
	case channels.Content:
		return hasBigUint(map[string]any(v))
	}
	return false
}

// An integer above MaxInt64, which Python's msgpack sends as uint64, is
// received exact, as a uint64, not refused with the whole message.
func TestUnmarshalBigUint(t *testing.T) {
	b := msgp.AppendMapHeader(nil, 2)
	b = msgp.AppendString(b, "big")
	b = msgp.AppendUint64(b, math.MaxUint64)
	b = msgp.AppendString(b, "edge")
	b = msgp.AppendUint64(b, math.MaxInt64)
	c, err := wire.Unmarshal(b)
	if err != nil {
		t.Fatalf("Unmarshal: %v", err)
	}
	if v, ok := c["big"].(uint64); !ok || v != math.MaxUint64 {
		t.Errorf("big = %T %v; want uint64 %d", c["big"], c["big"], uint64(math.MaxUint64))
	}
	if v, ok := c["edge"].(int64); !ok || v != math.MaxInt64 {
		t.Errorf("edge = %T %v; want int64 %d", c["edge"], c["edge"], int64(math.MaxInt64))
	}
}

// requestLike is an http.request message as the gateway makes it: a dozen
// keys, eight header pairs of bytes values, the client and server
// addresses.
func requestLike() channels.Content {
	hs := []any{}
	for _, h := range [][2]string{{"host", "example.com"}, {"user-agent", "load/1.0"}, {"accept", "*/*"}, {"accept-encoding", "gzip"},
		{"cookie", "sessionid=abc"}, {"x-forwarded-for", "10.0.0.1"}, {"connection", "keep-alive"}, {"x-request-id", "12345"}} {
		hs = append(hs, []any{[]byte(h[0]), []byte(h[1])})
	}
	return channels.Content{
		"reply_channel": "http.response.abc!def", "http_version": "1.1", "method": "GET", "scheme": "http",
		"path": "/http/", "query_string": []byte("a=1"), "root_path": "", "headers": hs, "body": []byte{},
		"body_channel": nil, "client": []any{"127.0.0.1", int64(51234)}, "server": []any{"127.0.0.1", int64(8000)},
	}
}

// Decoding boxes strings, bytes, lists and integers in slabs: a request
// message takes a handful of allocations, not one per value (about forty).
func TestUnmarshalStringAllocations(t *testing.T) {
	b, err := wire.Marshal(requestLike())
	if err != nil {
		t.Fatal(err)
	}
	body := string(b)
	var out channels.Content
	n := testing.AllocsPerRun(200, func() {
		if out, err = wire.UnmarshalString(body); err != nil {
			t.Fatal(err)
		}
	})
	if diff := cmp.Diff(requestLike(), out); diff != "" {
		t.Fatalf("round trip (-in +out):\n%s", diff)
	}
	t.Logf("%.0f allocations to decode a request message", n)
	if n > 14 {
		t.Errorf("%.0f allocations to decode a request message; want at most 14", n)
	}
}

// Values boxed in one slab are separate: changing a decoded list, or
// appending to it, leaves the other values as they were.
func TestUnmarshalSlabValuesAreSeparate(t *testing.T) {
	b, err := wire.Marshal(requestLike())
	if err != nil {
		t.Fatal(err)
	}
	out, err := wire.UnmarshalString(string(b))
	if err != nil {
		t.Fatal(err)
	}
	hs := out["headers"].([]any)
	first := hs[0].([]any)
	_ = append(first, "extra", "more")
	first[1] = []byte("changed")
	client := out["client"].([]any)
	_ = append(client, int64(1))
	want := requestLike()
	want["headers"].([]any)[0].([]any)[1] = []byte("changed")
	if diff := cmp.Diff(want, out); diff != "" {
		t.Fatalf("after changing the first header (-want +got):\n%s", diff)
	}
}

func BenchmarkUnmarshalString(b *testing.B) {
	m, err := wire.Marshal(requestLike())
	if err != nil {
		b.Fatal(err)
	}
	body := string(m)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := wire.UnmarshalString(body); err != nil {
			b.Fatal(err)
		}
	}
}
