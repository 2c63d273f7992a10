package loadtest

import (
	"encoding/json"
	"testing"
)

// FuzzParseFrame checks that the fast scanner never disagrees with
// encoding/json: whenever it claims a result, json.Unmarshal must accept
// the input and find the same three numbers.
func FuzzParseFrame(f *testing.F) {
	f.Add([]byte(`{"seq":1,"t":1763000000000000000,"src":2,"pad":"xxxx"}`))
	f.Add([]byte(`{"seq": -1, "t": 5, "src": 0}`))
	f.Add([]byte(`{"pad":"a\"b","seq":1,"t":2,"src":3}`))
	f.Add([]byte(`{"seq":1,"seq":2,"t":2,"src":3}`))
	f.Add([]byte(`{"seq":9223372036854775807,"t":-9223372036854775807,"src":3}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, ok := scanFrame(b)
		parsed, err := ParseFrame(b) // must not panic either way
		if !ok {
			return
		}
		var v struct {
			Seq *int64 `json:"seq"`
			T   *int64 `json:"t"`
			Src *int64 `json:"src"`
		}
		if jerr := json.Unmarshal(b, &v); jerr != nil || v.Seq == nil || v.T == nil || v.Src == nil {
			t.Fatalf("scanFrame(%q) = %+v, but encoding/json says %v (%+v)", b, got, jerr, v)
		}
		if want := (Frame{*v.Seq, *v.T, *v.Src}); got != want || err != nil || parsed != want {
			t.Fatalf("scanFrame(%q) = %+v, ParseFrame = %+v, %v; encoding/json finds %+v", b, got, parsed, err, want)
		}
	})
}
