package gateway

import (
	"testing"

	"github.com/gochannels/channels"
)

// The chunks of a streamed response waiting for a slow client are bounded
// in bytes (OutboundBytes) as well as in number (OutboundQueue): once the
// next chunk would take the queue over either, the response is over (it
// is aborted as a slow client) and nothing more is held. A chunk always
// goes into an empty queue, however large.
func TestHTTPMailboxBounds(t *testing.T) {
	chunk := func(n int) channels.Content {
		return channels.Content{"content": make([]byte, n), "more_content": true}
	}
	h := httpReq{cfg: &config{outbound: 1000, outboundBytes: 1 << 20}, notify: make(chan struct{}, 1)}
	h.deliver(chunk(4 << 20)) // larger than the bound, into an empty queue
	q, over := h.take(nil)
	if len(q) != 1 || over {
		t.Fatalf("a 4 MiB chunk into an empty queue: %d queued, over %v; want 1, false", len(q), over)
	}
	for range 4 {
		h.deliver(chunk(256 << 10))
	}
	if h.over || len(h.queue) != 4 || h.queued != 1<<20 {
		t.Fatalf("four 256 KiB chunks: %d queued (%d bytes), over %v; want 4 (1 MiB), false", len(h.queue), h.queued, h.over)
	}
	h.deliver(chunk(1))
	h.deliver(chunk(256 << 10))
	q, over = h.take(q)
	if len(q) != 4 || !over {
		t.Fatalf("chunks past 1 MiB: %d queued, over %v; want 4, true", len(q), over)
	}

	// The number of messages is bounded too.
	h = httpReq{cfg: &config{outbound: 3, outboundBytes: 1 << 20}, notify: make(chan struct{}, 1)}
	for range 4 {
		h.deliver(chunk(10))
	}
	if q, over := h.take(nil); len(q) != 3 || !over {
		t.Fatalf("4 small chunks with OutboundQueue 3: %d queued, over %v; want 3, true", len(q), over)
	}
}
