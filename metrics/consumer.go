package metrics

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gochannels/channels"
)

// ConsumerBuckets are the upper bounds, in seconds, of
// channels_worker_consumer_duration_seconds.
var ConsumerBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// Consumer wraps a worker's consumer to count the messages of each channel
// and time their consumers: channels_worker_messages_total{channel} and
// channels_worker_consumer_duration_seconds{channel}. The channel label takes
// the channels the consumer is routed on, which a router lists, so it stays
// bounded. Register the Consumer itself: it is a prometheus.Collector.
type Consumer struct {
	next     channels.Consumer
	messages *prometheus.CounterVec
	duration *prometheus.HistogramVec
	byChan   sync.Map // channel name → *channelMetrics
}

// channelMetrics are one channel's children of the vectors, looked up once.
type channelMetrics struct {
	messages prometheus.Counter
	duration prometheus.Observer
}

func (c *Consumer) of(channel string) *channelMetrics {
	if v, ok := c.byChan.Load(channel); ok {
		return v.(*channelMetrics)
	}
	v, _ := c.byChan.LoadOrStore(channel, &channelMetrics{
		messages: c.messages.WithLabelValues(channel),
		duration: c.duration.WithLabelValues(channel),
	})
	return v.(*channelMetrics)
}

// NewConsumer wraps next.
func NewConsumer(next channels.Consumer) *Consumer {
	return &Consumer{
		next: next,
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "worker", Name: "messages_total",
			Help: "Messages consumed, by channel.",
		}, []string{"channel"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Subsystem: "worker", Name: "consumer_duration_seconds",
			Help:    "Time consumers took to run, by channel (without the flush of what they sent).",
			Buckets: ConsumerBuckets,
		}, []string{"channel"}),
	}
}

// Consume implements channels.Consumer.
func (c *Consumer) Consume(ctx context.Context, m *channels.Message) error {
	start := time.Since(epoch)
	defer func() {
		cm := c.of(m.Channel)
		cm.messages.Inc()
		cm.duration.Observe((time.Since(epoch) - start).Seconds())
	}()
	return c.next.Consume(ctx, m)
}

// epoch is what consumer durations are measured from: time.Since reads
// only the monotonic clock, where time.Now also reads the wall clock.
var epoch = time.Now()

// Channels implements channels.ChannelConsumer when the wrapped consumer
// lists its channels, and returns nil otherwise.
func (c *Consumer) Channels() []string {
	if cc, ok := c.next.(channels.ChannelConsumer); ok {
		return cc.Channels()
	}
	return nil
}

// Name implements channels.Namer with the wrapped consumer's name.
func (c *Consumer) Name() string { return channels.ConsumerName(c.next) }

// Describe implements prometheus.Collector.
func (c *Consumer) Describe(ch chan<- *prometheus.Desc) {
	c.messages.Describe(ch)
	c.duration.Describe(ch)
}

// Collect implements prometheus.Collector.
func (c *Consumer) Collect(ch chan<- prometheus.Metric) {
	c.messages.Collect(ch)
	c.duration.Collect(ch)
}
