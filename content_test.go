package channels_test

import (
	"testing"

	"github.com/gochannels/channels"
)

func TestContentAccessors(t *testing.T) {
	c := channels.Content{"s": "x", "b": []byte("y"), "i": int64(3), "f": 4.0, "t": true, "n": nil}
	if c.String("s") != "x" || c.String("b") != "" || string(c.Bytes("b")) != "y" || c.Bytes("s") != nil {
		t.Error("String/Bytes keep text and bytes apart")
	}
	if i, ok := c.Int("i"); !ok || i != 3 {
		t.Error("Int(i)")
	}
	if i, ok := c.Int("f"); !ok || i != 4 {
		t.Error("Int of a whole float")
	}
	if _, ok := c.Int("s"); ok {
		t.Error("Int of text")
	}
	if !c.Bool("t") || c.Bool("s") || c.Has("n") || !c.Has("s") || c.Has("missing") {
		t.Error("Bool/Has")
	}
	clone := c.Clone()
	clone.Bytes("b")[0] = 'z'
	if string(c.Bytes("b")) != "y" {
		t.Error("Clone shares bytes")
	}
}
