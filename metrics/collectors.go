package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/delay"
	"github.com/gochannels/channels/gateway"
	"github.com/gochannels/channels/generic"
	"github.com/gochannels/channels/redislayer"
	"github.com/gochannels/channels/session"
	"github.com/gochannels/channels/worker"
)

// statsCollector is a prometheus.Collector made of a fixed set of
// descriptions and a function that reads the figures at scrape time.
type statsCollector struct {
	descs   []*prometheus.Desc
	collect func(ch chan<- prometheus.Metric)
}

func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c *statsCollector) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }

// Gateway returns a collector of an interface server's figures
// (gateway.Server.Stats), under channels_gateway_*.
func Gateway(s *gateway.Server) prometheus.Collector {
	var (
		open        = desc("gateway", "websockets_open", "WebSockets accepted and not yet closed.")
		handshaking = desc("gateway", "websockets_handshaking", "WebSocket handshakes waiting for the application.")
		parked      = desc("gateway", "websockets_parked", "Open WebSockets idle with no goroutine of their own.")
		inFlight    = desc("gateway", "http_in_flight", "HTTP requests being served.")
		requests    = desc("gateway", "http_requests_total", "HTTP requests received.")
		handshakes  = desc("gateway", "websocket_handshakes_total", "WebSocket handshakes finished, by outcome.", "outcome")
		dropped     = desc("gateway", "dropped_total", "Messages, requests and connections the gateway refused or dropped, by reason.", "reason")
		invalid     = desc("gateway", "invalid_replies_total", "Reply messages ignored because they were malformed.")
		layerErrs   = desc("gateway", "layer_errors_total", "Failed layer calls in the gateway's receive loop.")
		queued      = desc("gateway", "full_queue_depth", "Messages waiting for room on a full interface channel, by channel.", "channel")
		frames      = desc("gateway", "websocket_frames_total", "WebSocket data frames, by direction (in from clients, out to them).", "direction")
		dataLosses  = desc("gateway", "layer_data_losses_total", "Times the layer reported that it lost its data.")
	)
	return &statsCollector{
		descs: []*prometheus.Desc{open, handshaking, parked, inFlight, requests, handshakes, dropped, invalid, layerErrs, queued, frames, dataLosses},
		collect: func(ch chan<- prometheus.Metric) {
			st := s.Stats()
			ch <- gauge(open, float64(st.WebSocketsOpen))
			ch <- gauge(handshaking, float64(st.WebSocketsHandshaking))
			ch <- gauge(parked, float64(st.WebSocketsParked))
			ch <- gauge(inFlight, float64(st.HTTPInFlight))
			ch <- counter(requests, st.HTTPRequests)
			ch <- counter(handshakes, st.WebSocketsAccepted, "accepted")
			ch <- counter(handshakes, st.WebSocketsRejected, "rejected")
			ch <- counter(handshakes, st.OriginRejected, "origin_rejected")
			ch <- counter(handshakes, st.ConnectQueueFull, "connect_queue_full")
			for _, r := range []struct {
				reason string
				v      uint64
			}{
				{"origin_rejected", st.OriginRejected},
				{"request_queue_full", st.RequestQueueFull},
				{"connect_queue_full", st.ConnectQueueFull},
				{"receive_queue_full", st.ReceiveQueueFull},
				{"http_timeout", st.HTTPTimeouts},
				{"slow_client", st.SlowClients},
				{"ping_timeout", st.PingTimeouts},
				{"too_large", st.TooLarge},
				{"invalid_reply", st.InvalidReplies},
				{"unknown_connection", st.DroppedReplies},
				{"disconnect_not_sent", st.DroppedDisconnects},
				{"layer_data_lost", st.DataLossCloses},
			} {
				ch <- counter(dropped, r.v, r.reason)
			}
			ch <- counter(invalid, st.InvalidReplies)
			ch <- counter(layerErrs, st.LayerErrors)
			ch <- counter(frames, st.FramesIn, "in")
			ch <- counter(frames, st.FramesOut, "out")
			ch <- counter(dataLosses, st.LayerDataLosses)
			for name, n := range s.QueueDepths() {
				ch <- gauge(queued, float64(n), name)
			}
		},
	}
}

// Worker returns a collector of a worker's figures (worker.Worker.Stats),
// under channels_worker_*. The messages of each channel and the time their
// consumers took are counted by Consumer, which wraps the worker's consumer.
func Worker(w *worker.Worker) prometheus.Collector {
	var (
		received  = desc("worker", "received_total", "Messages received from the layer.")
		inFlight  = desc("worker", "in_flight", "Messages received and not yet finished.")
		recvErrs  = desc("worker", "receive_errors_total", "Failed receives from the layer.")
		consumed  = desc("worker", "consumed_total", "Messages run.")
		failed    = desc("worker", "consumer_errors_total", "Consumers that returned an error (other than a close).")
		panics    = desc("worker", "panics_total", "Consumers that panicked.")
		requeued  = desc("worker", "requeued_total", "Messages put back on their channel by ErrConsumeLater.")
		dropped   = desc("worker", "dropped_total", "Messages the worker dropped, by reason.", "reason")
		unrouted  = "unrouted"
		sendsLost = "send_dropped"
	)
	return &statsCollector{
		descs: []*prometheus.Desc{received, inFlight, recvErrs, consumed, failed, panics, requeued, dropped},
		collect: func(ch chan<- prometheus.Metric) {
			st := w.Stats()
			ch <- counter(received, st.Received)
			ch <- gauge(inFlight, float64(st.InFlight))
			ch <- counter(recvErrs, st.ReceiveErrors)
			ch <- counter(consumed, st.Consumed)
			ch <- counter(failed, st.Failed)
			ch <- counter(panics, st.Panics)
			ch <- counter(requeued, st.Requeued)
			ch <- counter(dropped, st.Unrouted, unrouted)
			ch <- counter(dropped, st.Dropped, sendsLost)
		},
	}
}

// Layer returns a collector of a channel layer's figures, under
// channels_layer_*: channels.Stats when the layer reports them (a scrape of
// the Redis layer scans its keys, bounded by a 2 s timeout; when Redis cannot
// be reached the counters are still reported, the gauges are not), and
// redislayer.Counters for the Redis layer.
func Layer(l channels.Layer) prometheus.Collector {
	var (
		messages   = desc("layer", "messages", "Messages waiting, over all channels.")
		chans      = desc("layer", "channels", "Channels holding at least one message.")
		groups     = desc("layer", "groups", "Groups with at least one member.")
		sent       = desc("layer", "sent_total", "Messages accepted by Send (and per member by GroupSend).")
		received   = desc("layer", "received_total", "Messages returned by Receive.")
		dropped    = desc("layer", "dropped_total", "Messages the layer refused or dropped, by reason.", "reason")
		errs       = desc("layer", "errors_total", "Errors returned by the layer's server other than unavailability.")
		reconnects = desc("layer", "reconnects_total", "Receive-loop recoveries after the layer's server was unreachable.")
		dataLosses = desc("layer", "data_losses_total", "Times a Redis host was found to have lost its data (restarted empty).")
		retried    = desc("layer", "retried_total", "Calls run again because their connection was found closed by Redis.")
		returned   = desc("layer", "returned_total", "Held messages put back in their channel because their hold ended unacknowledged.")
		buffered   = desc("layer", "buffered", "Messages popped ahead of demand and held in this process.")
		up         = desc("layer", "up", "1 when the last scrape could read the layer's figures, else 0.")
	)
	return &statsCollector{
		descs: []*prometheus.Desc{messages, chans, groups, sent, received, dropped, errs, reconnects, dataLosses, retried, returned, buffered, up},
		collect: func(ch chan<- prometheus.Metric) {
			sr, ok := l.(channels.StatsReporter)
			if !ok {
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), statsTimeout)
			st, err := sr.Stats(ctx)
			cancel()
			if err == nil {
				ch <- gauge(messages, float64(st.Messages))
				ch <- gauge(chans, float64(st.Channels))
				ch <- gauge(groups, float64(st.Groups))
				ch <- gauge(up, 1)
			} else {
				ch <- gauge(up, 0)
			}
			ch <- counter(sent, st.Sent)
			ch <- counter(received, st.Received)
			ch <- counter(dropped, st.Full, "full")
			ch <- counter(dropped, st.TooLarge, "too_large")
			ch <- counter(dropped, st.Expired, "expired")
			ch <- counter(dropped, st.GroupSkipped, "group_member_full")
			ch <- counter(dropped, st.Unavailable, "unavailable")
			if rl, ok := l.(*redislayer.Layer); ok {
				c := rl.Counters()
				ch <- counter(dropped, c.Lost, "lost")
				ch <- counter(dropped, c.Undeliverable, "undeliverable")
				ch <- counter(errs, c.Errors)
				ch <- counter(reconnects, c.Reconnects)
				ch <- counter(dataLosses, c.DataLosses)
				ch <- counter(returned, c.Returned)
				ch <- counter(retried, c.Retried)
				ch <- gauge(buffered, float64(c.Buffered))
			}
		},
	}
}

// LatenessBuckets are the upper bounds of channels_delay_lateness_seconds.
var LatenessBuckets = []time.Duration{
	time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
}

// Delay returns a collector of a delay server's figures
// (delay.Server.Stats), under channels_delay_*, with the messages waiting in
// its store (a count query bounded by a 2 s timeout; absent when the
// database cannot answer).
func Delay(s *delay.Server) prometheus.Collector {
	var (
		received    = desc("delay", "received_total", "Messages taken from asgi.delay.")
		stored      = desc("delay", "stored_total", "Messages committed to the store.")
		duplicates  = desc("delay", "duplicates_total", "Messages whose ID was already stored (confirmed, not stored again).")
		rejected    = desc("delay", "rejected_total", "Invalid messages, logged and skipped, by reason.", "reason")
		confirmed   = desc("delay", "confirmed_total", "Confirmations sent to producers.")
		sent        = desc("delay", "sent_total", "Due messages sent to their channel.")
		rescheduled = desc("delay", "rescheduled_total", "Due sends refused by a full channel and rescheduled.")
		sendFails   = desc("delay", "send_failures_total", "Due sends that failed for another reason and were rescheduled.")
		dropped     = desc("delay", "dropped_total", "Messages the delay server lost or dropped, by reason.", "reason")
		storeErrs   = desc("delay", "store_errors_total", "Failed store operations (each retried).")
		recvErrs    = desc("delay", "receive_errors_total", "Failed receives from the layer (each retried).")
		pending     = desc("delay", "pending", "Messages waiting in the store.")
		lateness    = desc("delay", "lateness_seconds", "How long after their due time messages were sent.")
	)
	bounds := make([]float64, len(LatenessBuckets))
	for i, b := range LatenessBuckets {
		bounds[i] = b.Seconds()
	}
	return &statsCollector{
		descs: []*prometheus.Desc{received, stored, duplicates, rejected, confirmed, sent, rescheduled, sendFails, dropped, storeErrs, recvErrs, pending, lateness},
		collect: func(ch chan<- prometheus.Metric) {
			st := s.Stats()
			ch <- counter(received, st.Received)
			ch <- counter(stored, st.Stored)
			ch <- counter(duplicates, st.Duplicates)
			for _, r := range delayReasons {
				ch <- counter(rejected, st.Rejected[r], string(r))
			}
			ch <- counter(confirmed, st.Confirmed)
			ch <- counter(sent, st.Sent)
			ch <- counter(rescheduled, st.Rescheduled)
			ch <- counter(sendFails, st.SendFailures)
			ch <- counter(dropped, st.Lost, "lost")
			ch <- counter(dropped, st.Dropped, "too_large")
			ch <- counter(storeErrs, st.StoreErrors)
			ch <- counter(recvErrs, st.ReceiveErrors)
			if s.Store != nil {
				ctx, cancel := context.WithTimeout(context.Background(), statsTimeout)
				n, err := s.Store.Pending(ctx)
				cancel()
				if err == nil {
					ch <- gauge(pending, float64(n))
				}
			}
			cum, count, sum := s.LatenessHistogram(LatenessBuckets)
			buckets := make(map[float64]uint64, len(bounds))
			for i, b := range bounds {
				buckets[b] = cum[i]
			}
			ch <- prometheus.MustNewConstHistogram(lateness, count, sum.Seconds(), buckets)
		},
	}
}

// delayReasons are the rejection reasons, each reported even at zero.
var delayReasons = []delay.Reason{
	delay.ReasonMissingChannel, delay.ReasonMissingContent, delay.ReasonMissingDelay,
	delay.ReasonBadChannel, delay.ReasonBadContent, delay.ReasonBadDelay,
	delay.ReasonNegativeDelay, delay.ReasonDelayTooLarge, delay.ReasonBadID,
	delay.ReasonBadReplyChannel,
}

// Demultiplexer returns a collector of the frames a demultiplexer dropped
// (generic.Demultiplexer.Stats), as
// channels_demultiplexer_dropped_total{consumer, reason}. An application
// registers it for each of its demultiplexers (with the command line, in
// cli.App.Metrics).
func Demultiplexer(d *generic.Demultiplexer) prometheus.Collector {
	dropped := prometheus.NewDesc(prometheus.BuildFQName(Namespace, "demultiplexer", "dropped_total"),
		"Frames a demultiplexer dropped, by reason.", []string{"reason"}, prometheus.Labels{"consumer": d.Name()})
	return &statsCollector{
		descs: []*prometheus.Desc{dropped},
		collect: func(ch chan<- prometheus.Metric) {
			st := d.Stats()
			ch <- counter(dropped, st.Malformed, "malformed")
			ch <- counter(dropped, st.UnknownStreams, "unknown_stream")
			ch <- counter(dropped, st.BadPayloads, "bad_payload")
		},
	}
}

// Session returns a collector of the messages a session manager's
// EnforceOrdering dropped (session.Manager.OrderingStats), as
// channels_session_dropped_total{reason}. An application registers it for
// its manager (with the command line, in cli.App.Metrics).
func Session(m *session.Manager) prometheus.Collector {
	dropped := desc("session", "dropped_total", "Messages strict ordering dropped, by reason.", "reason")
	return &statsCollector{
		descs: []*prometheus.Desc{dropped},
		collect: func(ch chan<- prometheus.Metric) {
			st := m.OrderingStats()
			ch <- counter(dropped, st.Duplicates, "duplicate")
			ch <- counter(dropped, st.Orphans, "no_original_channel")
		},
	}
}
