package box_test

import (
	"reflect"
	"runtime"
	"testing"

	"github.com/gochannels/channels/internal/box"
)

// A boxed value is the value: type switches, assertions, equality and
// reflection see what an ordinary interface would, and the slab stays
// alive while an interface points into it.
func TestBoxedValues(t *testing.T) {
	strs := []string{"alpha", "beta"}
	bins := [][]byte{[]byte("gamma")}
	lists := [][]any{{int64(1), "x"}}
	ints := []int64{-7, 1 << 40}
	vs := []any{box.String(&strs[0]), box.String(&strs[1]), box.Bytes(&bins[0]), box.List(&lists[0]), box.Int64(&ints[0]), box.Int64(&ints[1])}
	want := []any{"alpha", "beta", []byte("gamma"), []any{int64(1), "x"}, int64(-7), int64(1 << 40)}
	strs, bins, lists, ints = nil, nil, nil, nil
	runtime.GC()
	runtime.GC()
	if !reflect.DeepEqual(vs, want) {
		t.Fatalf("boxed %#v; want %#v", vs, want)
	}
	if s, ok := vs[0].(string); !ok || s != "alpha" || vs[1] != any("beta") {
		t.Errorf("string boxes: %#v %#v", vs[0], vs[1])
	}
	switch v := vs[2].(type) {
	case []byte:
		if string(v) != "gamma" {
			t.Errorf("bytes box: %q", v)
		}
	default:
		t.Errorf("bytes box of type %T", v)
	}
	if vs[4] != any(int64(-7)) || vs[5].(int64) != 1<<40 {
		t.Errorf("int64 boxes: %#v %#v", vs[4], vs[5])
	}
	m := map[any]bool{vs[0]: true}
	if !m["alpha"] {
		t.Error("a boxed string is not the same map key as the string")
	}
}

func TestNoAllocation(t *testing.T) {
	slab := make([]string, 64)
	var sink any
	n := testing.AllocsPerRun(100, func() {
		for i := range slab {
			sink = box.String(&slab[i])
		}
	})
	_ = sink
	if n != 0 {
		t.Errorf("%v allocations to box 64 strings; want 0", n)
	}
}
