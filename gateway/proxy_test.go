package gateway_test

import (
	"net"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/gateway"
	"github.com/gochannels/channels/inmemory"
)

// Checklist D.45: X-Forwarded-For / -Port / -Proto give the client address
// and scheme only when the TCP peer is a trusted proxy (interface-server.md
// §5), for HTTP and WebSockets alike.
func TestD45_ProxyHeaders(t *testing.T) {
	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	elsewhere := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	for _, tc := range []struct {
		name    string
		trusted []netip.Prefix
		headers string
		client  []any // nil: the socket peer
		scheme  string
	}{
		{"untrusted peer ignores the headers", elsewhere, "X-Forwarded-For: 10.1.2.3\r\nX-Forwarded-Port: 80\r\nX-Forwarded-Proto: https\r\n", nil, "http"},
		{"no proxies configured", nil, "X-Forwarded-For: 10.1.2.3\r\n", nil, "http"},
		{"trusted without X-Forwarded-For keeps the socket", loopback, "X-Forwarded-Port: 80\r\n", nil, "http"},
		{"plain address", loopback, "X-Forwarded-For: 10.1.2.3\r\n", []any{"10.1.2.3", int64(0)}, "http"},
		{"last element of a list", loopback, "X-Forwarded-For: 10.1.2.3, 10.1.2.4\r\n", []any{"10.1.2.4", int64(0)}, "http"},
		{"host and port", loopback, "X-Forwarded-For: 10.1.2.3:5123\r\n", []any{"10.1.2.3", int64(5123)}, "http"},
		{"port that is not a number", loopback, "X-Forwarded-For: 10.1.2.3:abc\r\n", []any{"10.1.2.3", int64(0)}, "http"},
		{"X-Forwarded-Port replaces the port", loopback, "X-Forwarded-For: 10.1.2.3\r\nX-Forwarded-Port: 80\r\n", []any{"10.1.2.3", int64(80)}, "http"},
		{"bad X-Forwarded-Port is ignored", loopback, "X-Forwarded-For: 10.1.2.3:7\r\nX-Forwarded-Port: x\r\n", []any{"10.1.2.3", int64(7)}, "http"},
		{"IPv6 address is not split", loopback, "X-Forwarded-For: 2001:db8::1\r\n", []any{"2001:db8::1", int64(0)}, "http"},
		{"bracketed IPv6 with port", loopback, "X-Forwarded-For: [2001:db8::1]:443\r\n", []any{"2001:db8::1", int64(443)}, "http"},
		{"first header only", loopback, "X-Forwarded-For: 10.0.0.1\r\nX-Forwarded-For: 10.0.0.2\r\n", []any{"10.0.0.1", int64(0)}, "http"},
		{"X-Forwarded-Proto", loopback, "X-Forwarded-For: 10.1.2.3\r\nX-Forwarded-Proto: https\r\n", []any{"10.1.2.3", int64(0)}, "https"},
	} {
		for _, ws := range []bool{false, true} {
			name := tc.name + "/http"
			if ws {
				name = tc.name + "/websocket"
			}
			t.Run(name, func(t *testing.T) {
				l := newLayer(t, inmemory.Config{})
				srv := appless(t, l, func(g *gateway.Server) { g.TrustedProxies = tc.trusted })
				raw := dialRaw(t, srv.URL)
				var msg channels.Content
				wantScheme := tc.scheme
				if ws {
					raw.write(upgradeRequest("/", tc.headers, "Origin: "+tc.scheme+"://example.com\r\n"))
					msg = layerMessage(t, l, "websocket.connect")
					send(t, l, msg.String("reply_channel"), channels.Content{"close": true})
					wantScheme = map[string]string{"http": "ws", "https": "wss"}[tc.scheme]
				} else {
					raw.write("GET / HTTP/1.1\r\nHost: x\r\n" + tc.headers + "\r\n")
					msg = layerMessage(t, l, "http.request")
					send(t, l, msg.String("reply_channel"), channels.Content{"status": 204})
				}
				raw.response(nil)
				want := tc.client
				if want == nil {
					a := raw.c.LocalAddr().(*net.TCPAddr)
					want = []any{"127.0.0.1", int64(a.Port)}
				}
				if diff := cmp.Diff(want, msg["client"]); diff != "" {
					t.Errorf("client (-want +got):\n%s", diff)
				}
				if got := msg.String("scheme"); got != wantScheme {
					t.Errorf("scheme %q, want %q", got, wantScheme)
				}
			})
		}
	}
}
