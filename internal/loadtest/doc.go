// Package loadtest is the engine of the channels-load command: load
// generators that measure a running server end to end over loopback, and the
// reference server they are compared against.
//
// A target server implements a three-endpoint application protocol:
//
//   - GET /http/ answers 200 with a small body;
//   - WebSocket /echo/ sends every text frame back to the same connection;
//   - WebSocket /fanout/<room>/ broadcasts every text frame a connection sends
//     to every connection in <room>, the sender included.
//
// Frames are JSON objects written by the load generators,
// {"seq":n,"t":<unix ns when sent>,"src":<client id>,"pad":"xxx…"}, padded to
// the requested size (see AppendFrame and ParseFrame).
//
// Each generator (RunEcho, RunFanout, RunIdle, RunHTTP, RunConnect) is bounded in count and
// in time, writes progress lines to a writer while it runs, and returns a
// report whose numbers are consistent with each other: what was expected, what
// arrived, what failed and how. Reference is a plain net/http +
// coder/websocket implementation of the protocol with an in-process hub: the
// same work a Channels deployment does, without the channel layer, and so the
// practical ceiling on the machine it runs on.
package loadtest
