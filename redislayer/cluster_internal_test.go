package redislayer

import "testing"

// keySlot computes Redis Cluster's hash slots, hash tags included.
func TestKeySlot(t *testing.T) {
	if got := crc16("123456789"); got != 0x31C3 {
		t.Fatalf("crc16(123456789) = %#x; want 0x31c3 (CRC-16/XMODEM)", got)
	}
	for _, tc := range []struct {
		key  string
		want uint16
	}{
		{"foo", 12182},      // CLUSTER KEYSLOT foo
		{"{foo}bar", 12182}, // the tag alone counts
		{"asgi{websocket.send.x!}", crc16("websocket.send.x!") % 16384},
		{"foo{}{bar}", crc16("foo{}{bar}") % 16384}, // an empty tag is no tag
		{"foo{{bar}}zap", crc16("{bar") % 16384},
		{"foo{bar", crc16("foo{bar") % 16384},
	} {
		if got := keySlot(tc.key); got != tc.want {
			t.Errorf("keySlot(%q) = %d; want %d", tc.key, got, tc.want)
		}
	}
}
