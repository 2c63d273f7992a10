package cli

import (
	"slices"

	"github.com/gochannels/channels"
)

// wantsHTTPDisconnect returns the gateway's WantsHTTPDisconnect for workers
// that run router (with channels.WithDefaults' routes after it): an
// http.disconnect follows a completed response only when router routes
// "http.disconnect" for that request, since the default route ignores it.
// Requests that end without a complete response always get one. A nil
// router gives nil: the message follows every request, as in Channels 1.0,
// for workers whose routes this process does not know.
func wantsHTTPDisconnect(router *channels.Router) func(replyChannel, path string) bool {
	if router == nil {
		return nil
	}
	if !slices.Contains(router.Channels(), "http.disconnect") {
		return func(string, string) bool { return false }
	}
	return func(replyChannel, path string) bool {
		m := channels.NewMessage(nil, "http.disconnect", channels.Content{"reply_channel": replyChannel, "path": path})
		_, _, ok := router.Match(m)
		return ok
	}
}
