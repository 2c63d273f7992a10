package gateway_test

import (
	"context"
	"net/http"
	"net/netip"
	"testing"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/gateway"
	"github.com/gochannels/channels/inmemory"
)

// Origin rules (the table in the package documentation): no Origin refused
// unless allowed, same scheme and host by default (the scheme from a trusted
// proxy only), dot-anchored wildcard patterns with optional scheme and port,
// "*" and "null" by name.
func TestOriginRules(t *testing.T) {
	for _, tc := range []struct {
		name    string
		allowed []string
		host    string
		origin  string // "" sends none
		ok      bool
		extra   string // more request headers
		missing bool   // AllowMissingOrigin
		proxy   bool   // the test client is a trusted proxy
	}{
		{name: "no Origin header refused by default", host: "example.com"},
		{name: "no Origin header with AllowMissingOrigin", host: "example.com", missing: true, ok: true},
		{name: "no Origin header with star", allowed: []string{"*"}, host: "example.com", ok: true},
		{name: "no Origin header with patterns", allowed: []string{"*.example.com"}, host: "example.com"},
		{name: "Sec-WebSocket-Origin is not an origin", host: "example.com", extra: "Sec-WebSocket-Origin: http://example.com\r\n"},
		{name: "Sec-WebSocket-Origin does not override Origin", host: "example.com", origin: "http://evil.com", extra: "Sec-WebSocket-Origin: http://example.com\r\n", missing: true},
		{name: "several Origin headers", host: "example.com", origin: "http://example.com", extra: "Origin: http://example.com\r\n"},
		{"same host", nil, "example.com", "http://example.com", true, "", false, false},
		{"same host, other case", nil, "example.com", "http://EXAMPLE.com", true, "", false, false},
		{"same host, ws scheme", nil, "example.com", "ws://example.com", true, "", false, false},
		{"https origin on a plain request", nil, "example.com", "https://example.com", false, "", false, false},
		{"X-Forwarded-Proto ignored from an untrusted peer", nil, "example.com", "https://example.com", false, "X-Forwarded-Proto: https\r\n", false, false},
		{"X-Forwarded-Proto from a trusted proxy", nil, "example.com", "https://example.com", true, "X-Forwarded-Proto: https\r\n", false, true},
		{"http origin behind a TLS proxy", nil, "example.com", "http://example.com", false, "X-Forwarded-Proto: https\r\n", false, true},
		{"same host and port, https behind a proxy", nil, "example.com:8443", "https://example.com:8443", true, "X-Forwarded-Proto: https\r\n", false, true},
		{"same host and port", nil, "example.com:8000", "http://example.com:8000", true, "", false, false},
		{"same host, other port", nil, "example.com:8000", "http://example.com", false, "", false, false},
		{"other host", nil, "example.com", "http://evil.com", false, "", false, false},
		{"suffix of the host is not the host", nil, "example.com", "http://badexample.com", false, "", false, false},
		{"null refused by default", nil, "example.com", "null", false, "", false, false},
		{"not a URL", nil, "example.com", "example.com", false, "", false, false},
		{"wildcard matches a subdomain", []string{"*.example.com"}, "example.com", "https://a.example.com", true, "", false, false},
		{"wildcard matches deeper subdomains", []string{"*.example.com"}, "example.com", "https://a.b.example.com", true, "", false, false},
		{"wildcard does not match the domain itself", []string{"*.example.com"}, "x.org", "https://example.com", false, "", false, false},
		{"wildcard is dot-anchored", []string{"*.example.com"}, "x.org", "https://badexample.com", false, "", false, false},
		{"patterns replace the same-host default", []string{"*.example.com"}, "x.org", "http://x.org", false, "", false, false},
		{"exact host with any scheme and port", []string{"Example.com"}, "x.org", "http://example.com:9000", true, "", false, false},
		{"scheme must match", []string{"https://app.example.com"}, "x.org", "http://app.example.com", false, "", false, false},
		{"scheme matches", []string{"https://app.example.com"}, "x.org", "https://app.example.com", true, "", false, false},
		{"port must match", []string{"app.example.com:8443"}, "x.org", "https://app.example.com", false, "", false, false},
		{"port matches", []string{"app.example.com:8443"}, "x.org", "https://app.example.com:8443", true, "", false, false},
		{"default port counts", []string{"https://app.example.com:443"}, "x.org", "https://app.example.com", true, "", false, false},
		{"star allows everything", []string{"*"}, "x.org", "http://evil.com", true, "", false, false},
		{"star allows null", []string{"*"}, "x.org", "null", true, "", false, false},
		{"null listed", []string{"null"}, "x.org", "null", true, "", false, false},
		{"null listed does not allow others", []string{"null"}, "x.org", "http://evil.com", false, "", false, false},
		{"IPv6 pattern", []string{"[::1]:8000"}, "x.org", "http://[::1]:8000", true, "", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLayer(t, inmemory.Config{})
			srv := appless(t, l, func(g *gateway.Server) {
				g.AllowedOrigins = tc.allowed
				g.AllowMissingOrigin = tc.missing
				if tc.proxy {
					g.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
				}
			})
			raw := dialRaw(t, srv.URL)
			req := "GET /ws/ HTTP/1.1\r\nHost: " + tc.host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
				"Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\nSec-WebSocket-Version: 13\r\n" + tc.extra
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
