package gateway_test

import (
	"testing"

	"github.com/gochannels/channels/channelstest"
	"github.com/gochannels/channels/gateway"
)

// BenchmarkHTTPRouted is BenchmarkHTTP with the gateway configured as
// runserver configures it for a router that does not route
// http.disconnect: one http.request and one response per request, no
// http.disconnect.
func BenchmarkHTTPRouted(b *testing.B) {
	srv := channelstest.StartServer(b, channelstest.ServerConfig{
		Consumer: echoRouter(),
		Gateway: func(g *gateway.Server) {
			g.WantsHTTPDisconnect = func(string, string) bool { return false }
		},
	})
	benchGet(b, srv)
}
