package gateway_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/gateway"
	"github.com/gochannels/channels/inmemory"
)

// Origin rules (package documentation): same host by default, dot-anchored
// wildcard patterns with optional scheme and port, "*" and "null" by name.
func TestOriginRules(t *testing.T) {
	for _, tc := range []struct {
		name    string
		allowed []string
		host    string
		origin  string // "" sends none
		ok      bool
	}{
		{"no Origin header (not a browser)", nil, "example.com", "", true},
		{"same host", nil, "example.com", "http://example.com", true},
		{"same host, other case and scheme", nil, "example.com", "https://EXAMPLE.com", true},
		{"same host and port", nil, "example.com:8000", "http://example.com:8000", true},
		{"same host, other port", nil, "example.com:8000", "http://example.com", false},
		{"other host", nil, "example.com", "http://evil.com", false},
		{"suffix of the host is not the host", nil, "example.com", "http://badexample.com", false},
		{"null refused by default", nil, "example.com", "null", false},
		{"not a URL", nil, "example.com", "example.com", false},
		{"wildcard matches a subdomain", []string{"*.example.com"}, "example.com", "https://a.example.com", true},
		{"wildcard matches deeper subdomains", []string{"*.example.com"}, "example.com", "https://a.b.example.com", true},
		{"wildcard does not match the domain itself", []string{"*.example.com"}, "x.org", "https://example.com", false},
		{"wildcard is dot-anchored", []string{"*.example.com"}, "x.org", "https://badexample.com", false},
		{"patterns replace the same-host default", []string{"*.example.com"}, "x.org", "http://x.org", false},
		{"exact host with any scheme and port", []string{"Example.com"}, "x.org", "http://example.com:9000", true},
		{"scheme must match", []string{"https://app.example.com"}, "x.org", "http://app.example.com", false},
		{"scheme matches", []string{"https://app.example.com"}, "x.org", "https://app.example.com", true},
		{"port must match", []string{"app.example.com:8443"}, "x.org", "https://app.example.com", false},
		{"port matches", []string{"app.example.com:8443"}, "x.org", "https://app.example.com:8443", true},
		{"default port counts", []string{"https://app.example.com:443"}, "x.org", "https://app.example.com", true},
		{"star allows everything", []string{"*"}, "x.org", "http://evil.com", true},
		{"star allows null", []string{"*"}, "x.org", "null", true},
		{"null listed", []string{"null"}, "x.org", "null", true},
		{"null listed does not allow others", []string{"null"}, "x.org", "http://evil.com", false},
		{"IPv6 pattern", []string{"[::1]:8000"}, "x.org", "http://[::1]:8000", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLayer(t, inmemory.Config{})
			srv := appless(t, l, func(g *gateway.Server) { g.AllowedOrigins = tc.allowed })
			raw := dialRaw(t, srv.URL)
			req := "GET /ws/ HTTP/1.1\r\nHost: " + tc.host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
				"Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\nSec-WebSocket-Version: 13\r\n"
			if tc.origin != "" {
				req += "Origin: " + tc.origin + "\r\n"
			}
			raw.write(req + "\r\n")
			if tc.ok {
				c := layerMessage(t, l, "websocket.connect")
				send(t, l, c.String("reply_channel"), channels.Content{"accept": true})
			}
			resp := raw.response(nil)
			want := http.StatusForbidden
			if tc.ok {
				want = http.StatusSwitchingProtocols
			}
			if resp.StatusCode != want {
				t.Fatalf("status %d, want %d", resp.StatusCode, want)
			}
			if !tc.ok {
				if ch, c, _ := channels.Poll(context.Background(), l, "websocket.connect"); c != nil {
					t.Fatalf("a refused origin reached the application on %s", ch)
				}
				if got := srv.Gateway.Stats().OriginRejected; got != 1 {
					t.Fatalf("OriginRejected = %d", got)
				}
			}
		})
	}
}

// A pattern that cannot be understood makes every request fail (500)
// rather than silently allowing or refusing origins.
func TestInvalidOriginPattern(t *testing.T) {
	for _, p := range []string{"*.*.example.com", "http://", "example.com/path", "example.com:99999"} {
		l := newLayer(t, inmemory.Config{})
		srv := appless(t, l, func(g *gateway.Server) { g.AllowedOrigins = []string{p} })
		if resp, _ := get(t, srv, "/"); resp.StatusCode != http.StatusInternalServerError {
			t.Fatalf("pattern %q: status %d, want 500", p, resp.StatusCode)
		}
	}
}
