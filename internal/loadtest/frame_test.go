package loadtest_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/gochannels/channels/internal/loadtest"
)

func TestAppendFrameSizeAndRoundTrip(t *testing.T) {
	const now = 1_763_000_000_123_456_789
	for _, size := range []int{1, loadtest.MinFrameSize, 64, 65, 100, 1000, 70_000} {
		for _, seq := range []int64{0, 7, 123456, -3} {
			b := loadtest.AppendFrame([]byte("prefix"), seq, now, 42, size)
			if string(b[:6]) != "prefix" {
				t.Fatalf("AppendFrame overwrote the slice's prefix: %.20q", b)
			}
			f := b[6:]
			if !json.Valid(f) {
				t.Fatalf("size %d: invalid JSON %.80q", size, f)
			}
			unpadded := len(loadtest.AppendFrame(nil, seq, now, 42, 0))
			if want := max(size, unpadded); len(f) != want {
				t.Errorf("size %d seq %d: frame is %d bytes, want %d", size, seq, len(f), want)
			}
			got, err := loadtest.ParseFrame(f)
			if err != nil {
				t.Fatalf("ParseFrame(%.60q): %v", f, err)
			}
			if want := (loadtest.Frame{Seq: seq, T: now, Src: 42}); got != want {
				t.Errorf("ParseFrame = %+v, want %+v", got, want)
			}
		}
	}
}

func TestAppendFrameDoesNotAllocate(t *testing.T) {
	buf := make([]byte, 0, 256)
	allocs := testing.AllocsPerRun(100, func() {
		buf = loadtest.AppendFrame(buf[:0], 123, 1_763_000_000_000_000_000, 9, 200)
	})
	if allocs != 0 {
		t.Errorf("AppendFrame allocates %v times per frame with room in the slice, want 0", allocs)
	}
	f := loadtest.AppendFrame(nil, 123, 1_763_000_000_000_000_000, 9, 200)
	allocs = testing.AllocsPerRun(100, func() { loadtest.ParseFrame(f) })
	if allocs != 0 {
		t.Errorf("ParseFrame allocates %v times on a frame AppendFrame wrote, want 0", allocs)
	}
}

func TestParseFrameAcceptsReformattedJSON(t *testing.T) {
	want := loadtest.Frame{Seq: 5, T: 1763000000000000000, Src: 3}
	for _, in := range []string{
		`{"seq": 5, "t": 1763000000000000000, "src": 3, "pad": "xx"}`,
		`{"pad":"x\"y","src":3,"t":1763000000000000000,"seq":5}`,
		"{\n  \"src\": 3,\n  \"seq\": 5,\n  \"t\": 1763000000000000000\n}\n",
		`{"seq":5,"t":1763000000000000000,"src":3,"extra":{"nested":[1,2]}}`,
		`{"seq":5,"t":1763000000000000000,"src":3,"ok":true,"none":null,"f":1.5e3}`,
	} {
		got, err := loadtest.ParseFrame([]byte(in))
		if err != nil || got != want {
			t.Errorf("ParseFrame(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
}

func TestParseFrameRejectsOtherInput(t *testing.T) {
	for _, in := range []string{
		``, `null`, `[]`, `"seq"`, `{}`, `{"seq":1,"t":2}`, `{"seq":1,"src":2}`,
		`{"seq":1.5,"t":2,"src":3}`, `{"seq":"1","t":2,"src":3}`, `{"seq":1,"t":2,"src":3`,
		`{"seq":99999999999999999999,"t":2,"src":3}`, `hello`,
	} {
		if f, err := loadtest.ParseFrame([]byte(in)); err == nil {
			t.Errorf("ParseFrame(%q) = %+v, want an error", in, f)
		} else if !strings.Contains(err.Error(), "not a load-test frame") {
			t.Errorf("ParseFrame(%q) error %q does not say what is wrong", in, err)
		}
	}
}
