package gateway

// QueueDepths returns how many messages wait for room on each interface
// channel that was full when the gateway sent to it ("websocket.receive",
// "websocket.disconnect", "http.disconnect"; see the full-channel queues
// in the package documentation). It never blocks for long.
func (s *Server) QueueDepths() map[string]int {
	out := make(map[string]int, 3)
	for name, q := range map[string]*fullQueue{
		"websocket.receive":    &s.receiveQ,
		"websocket.disconnect": &s.wsDisconnectQ,
		"http.disconnect":      &s.httpDisconnectQ,
	} {
		q.mu.Lock()
		out[name] = len(q.waiting)
		q.mu.Unlock()
	}
	return out
}
