package gateway

import (
	"github.com/coder/websocket"
)

// CloseLayerDataLost is the close code (1012, "Service Restart") sent to
// every open WebSocket when the channel layer reports that it lost its
// data, as a Redis server restarted without its data does: the groups the
// application added the connections to are gone, so the connections would
// stay open and receive nothing more from them. Closing them makes clients
// reconnect (1012 tells them the server restarts), and the application's
// websocket.connect handler adds the new connections to their groups
// again. The application gets the usual websocket.disconnect, with code
// 1012. Stats.LayerDataLosses counts the losses and
// Stats.DataLossCloses the sockets closed.
//
// The gateway closes the sockets rather than re-adding their groups itself
// because the groups are the application's: it adds connections to them in
// its own handlers, and the gateway never sees which.
//
// HTTP requests in flight and handshakes waiting for websocket.connect's
// answer are left alone: their messages may have been lost with the data,
// and they then end by HTTPTimeout (503) or ConnectTimeout (403).
const CloseLayerDataLost = int(websocket.StatusServiceRestart)

// dataLossNotifier is implemented by layers that can lose their data
// while running (redislayer.Layer: see its OnDataLoss).
type dataLossNotifier interface {
	OnDataLoss(fn func()) (unregister func())
}

// watchDataLoss registers the server with its layer's data-loss
// notifications, when the layer has them, until the receive loop stops.
func (s *Server) watchDataLoss() {
	n, ok := s.Layer.(dataLossNotifier)
	if !ok {
		return
	}
	unregister := n.OnDataLoss(s.layerDataLost)
	go func() {
		<-s.loopDone
		unregister()
	}()
}

// layerDataLost closes every open WebSocket with CloseLayerDataLost.
func (s *Server) layerDataLost() {
	s.stats.dataLosses.Add(1)
	closed := 0
	for _, e := range s.reg.all() {
		c, ok := e.(*wsConn)
		if !ok {
			continue
		}
		c.mu.Lock()
		open := c.state == wsOpen && !c.closing
		c.mu.Unlock()
		if open {
			c.serverClose(CloseLayerDataLost, "channel layer lost its data; reconnect")
			closed++
		}
	}
	s.stats.dataLossCloses.Add(uint64(closed))
	s.log.Warn("the channel layer lost its data (group memberships are gone): WebSockets closed so that their clients reconnect", "closed", closed, "code", CloseLayerDataLost)
}
