package metrics_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/channelstest"
	"github.com/gochannels/channels/generic"
	"github.com/gochannels/channels/inmemory"
	"github.com/gochannels/channels/metrics"
	"github.com/gochannels/channels/session"
)

// The frames a demultiplexer drops are counted by reason, under the
// demultiplexer's name.
func TestDemultiplexerDrops(t *testing.T) {
	l, err := inmemory.New(inmemory.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	d := &generic.Demultiplexer{
		Options:   generic.Options{Name: "streams", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
		Consumers: map[string]channels.Consumer{"echo": channels.ConsumerFunc(func(context.Context, *channels.Message) error { return nil })},
	}
	frames := []channels.Content{
		{"bytes": []byte("x")},                        // malformed
		{"text": "not json"},                          // malformed
		{"text": `{"stream": "nope", "payload": {}}`}, // unknown stream
		{"text": `{"stream": "nah", "payload": {}}`},  // unknown stream
		{"text": `{"stream": "echo", "payload": 3}`},  // bad payload
		{"text": `{"stream": "echo", "payload": {}}`}, // delivered
	}
	for _, c := range frames {
		c["reply_channel"] = "websocket.send.x!y"
		c["path"] = "/"
		if err := d.Consume(context.Background(), channels.NewMessage(l, "websocket.receive", c)); err != nil {
			t.Fatal(err)
		}
	}
	want := `
# HELP channels_demultiplexer_dropped_total Frames a demultiplexer dropped, by reason.
# TYPE channels_demultiplexer_dropped_total counter
channels_demultiplexer_dropped_total{consumer="streams",reason="bad_payload"} 1
channels_demultiplexer_dropped_total{consumer="streams",reason="malformed"} 2
channels_demultiplexer_dropped_total{consumer="streams",reason="unknown_stream"} 2
`
	if err := testutil.CollectAndCompare(metrics.Demultiplexer(d), strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}

// A message whose order was already consumed is dropped by strict
// ordering and counted.
func TestSessionOrderingDrops(t *testing.T) {
	mgr := &session.Manager{Store: session.NewMemoryStore(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	mw, err := mgr.EnforceOrdering(session.StrictOrdering)
	if err != nil {
		t.Fatal(err)
	}
	r := channels.NewRouter()
	r.Route("websocket.receive", mw(channels.ConsumerFunc(func(context.Context, *channels.Message) error { return nil })))
	c := channelstest.NewClient(t, r)
	for range 3 {
		if err := c.SendAndConsume("websocket.receive", channels.Content{"order": 0}); err != nil {
			t.Fatal(err)
		}
	}
	want := `
# HELP channels_session_dropped_total Messages strict ordering dropped, by reason.
# TYPE channels_session_dropped_total counter
channels_session_dropped_total{reason="duplicate"} 2
channels_session_dropped_total{reason="no_original_channel"} 0
`
	if err := testutil.CollectAndCompare(metrics.Session(mgr), strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}
