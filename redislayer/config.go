package redislayer

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/internal/capacities"
	"github.com/gochannels/channels/internal/naming"
)

// Defaults for Config's zero fields.
const (
	DefaultPrefix          = "asgi"
	DefaultExpiry          = 60 * time.Second
	DefaultGroupExpiry     = 86400 * time.Second
	DefaultCapacity        = 100
	DefaultMaxMessageSize  = 1 << 20
	DefaultTimeout         = 3 * time.Second
	DefaultBlockTimeout    = 5 * time.Second
	DefaultReceiveConns    = 64
	DefaultProcessBuffer   = 1000
	DefaultProcessCapacity = 10000
	DefaultReceiveBuffer   = 256
	DefaultConnBuffer      = 64 << 10
	DefaultURL             = "redis://127.0.0.1:6379/0"
	DefaultFlushDelay      = 20 * time.Microsecond
	DefaultPipelineConns   = 2
)

// Config configures a Layer. The zero value is a working default: one Redis
// at REDIS_URL (or redis://127.0.0.1:6379/0), the key prefix "asgi" and the
// limits of channels_redis.
//
// Every process that shares channels must use the same Hosts (in the same
// order), Prefix, Expiry and capacities.
type Config struct {
	// Hosts are the Redis servers, as redis:// or rediss:// (TLS) URLs with
	// optional user, password and database ("redis://u:p@host:6379/2"), or
	// unix:// URLs ("unix:///run/redis.sock?db=2"). Several hosts shard the
	// channels and groups between them (see the package documentation).
	// Empty means REDIS_URL, or redis://127.0.0.1:6379/0 when it is unset.
	Hosts []string

	// TLSConfig is used for rediss:// hosts (and Sentinels reached with
	// TLS): certificate authorities, client certificates. It is cloned, and
	// its ServerName set from each host when empty. Nil means the system's
	// roots (a URL may add skip_verify=true).
	TLSConfig *tls.Config

	// Prefix starts every key the layer creates. Zero means "asgi", the
	// channels_redis default, so that Python and Go processes configured
	// alike share channels. Layers that must not see each other use
	// different prefixes.
	Prefix string

	// Expiry is how long a message may wait unread. Zero means 60 s.
	Expiry time.Duration
	// GroupExpiry is how long a group membership lasts after its last
	// GroupAdd. Zero means 86 400 s.
	GroupExpiry time.Duration
	// Capacity is the number of messages an ordinary or single-reader
	// channel holds before Send returns ErrChannelFull. Process-specific
	// channels are bounded per process prefix instead (see
	// ProcessCapacity). Zero means 100.
	Capacity int
	// ChannelCapacity gives other capacities to channels whose names match;
	// the first matching rule wins. For process-specific channels the rules
	// are matched against the process prefix ("http.response!*" matches
	// "http.response!", and so bounds every channel under it together).
	ChannelCapacity []channels.CapacityRule
	// MaxMessageSize is the largest message accepted, measured as its JSON
	// encoding. Zero means 1 MiB; a negative value switches the check off
	// (and logs a warning).
	MaxMessageSize int
	// MaxNameLength is the length from which names are refused. Zero means
	// 100.
	MaxNameLength int

	// Sentinels, when set, are the addresses ("host:26379") of Redis
	// Sentinels watching the master named MasterName; the layer then uses
	// that master as its only host, following fail-overs. Hosts may then
	// hold one URL whose credentials, database and TLS setting apply to the
	// master (its host part is ignored).
	Sentinels []string
	// MasterName is the Sentinel master set name. Required with Sentinels.
	MasterName string
	// Cluster uses a Redis Cluster: Hosts are some of its nodes (any
	// number; the others are discovered), with the credentials and TLS
	// setting of the first. Keys carry hash tags so that every call
	// touches one hash slot, which makes them differ from channels_redis's
	// (it has no Cluster support): Python processes cannot share a layer
	// in Cluster mode. See the package documentation, Cluster. Not with
	// Sentinels.
	Cluster bool

	// Timeout bounds every call to Redis other than blocking pops; a call
	// that takes longer fails with ErrUnavailable. Send batches and pops
	// run on connections whose reads and writes have this deadline. Other
	// calls on shared, pipelined connections rely on the connection too:
	// when it gets no reply for a second, it is pinged, and closed (failing
	// every call waiting on it) if the ping gets no reply within Timeout;
	// so they fail within about Timeout plus one second. Zero means 3 s; a
	// negative value switches the bound off (and logs a warning).
	Timeout time.Duration
	// BlockTimeout is the longest a single blocking pop waits in Redis
	// before a new one is issued. When no Receive waits for it any more,
	// the pop is interrupted at once with CLIENT UNBLOCK. Zero means 5 s.
	BlockTimeout time.Duration
	// ReceiveConns bounds the connections per host that pop ordinary and
	// single-reader channels: one for each set of channels that Receive
	// calls wait on at the same time (in Cluster mode, one per hash slot
	// of the set; see the package documentation, Receiving); further sets
	// wait for one to be free. Zero means 64.
	ReceiveConns int
	// ProcessCapacity bounds the messages waiting in Redis for all the
	// process-specific channels of one process prefix together, as
	// channels_redis does (they share one Redis key), unless a
	// ChannelCapacity rule matches the prefix. A Send to any of them
	// returns ErrChannelFull while the prefix holds that many; a group
	// send skips them all. The prefix's reader is one process's receive
	// loop, which moves messages at once into its own bounded queues (see
	// ProcessBuffer), so the bound fills only when that process falls
	// behind. Zero means 10 000.
	ProcessCapacity int
	// ProcessBuffer bounds the messages held in memory per process prefix
	// (process-specific channels) waiting for a Receive or ReceivePrefix.
	// While a prefix's buffer is full the layer stops taking that prefix's
	// messages from Redis, where they wait, count against its capacity and
	// expire as usual: nothing is dropped. Zero means 1000; a negative
	// value switches the bound off (and logs a warning).
	ProcessBuffer int
	// ReceiveBuffer bounds the messages of ordinary and single-reader
	// channels that this process pops ahead of the Receive calls waiting
	// for them, to serve the next calls without a round trip. How far
	// ahead adapts to demand (see the package documentation, Receiving);
	// messages of ordinary channels that wait here unreceived for a
	// quarter of a second, and all of them when the layer is closed, are
	// put back in Redis for other processes. Zero means 256; a negative
	// value pops only for the calls waiting.
	ReceiveBuffer int
	// ConnBuffer is the size of each connection's read and write buffers.
	// Zero means 64 KiB (the Redis client's default of 512 KiB is sized for
	// bulk loads, not for many small messages).
	ConnBuffer int

	// FlushDelay is how long a shared connection may wait to gather more
	// commands before writing them to Redis (send batches and pops use
	// connections of their own, see Throughput). Under load it turns many small writes
	// into few large ones, saving system calls on both sides, at the cost
	// of at most this much latency. Zero means 20 µs; a negative value
	// writes at once.
	FlushDelay time.Duration
	// PipelineConns is the number of connections per host shared by all
	// non-blocking calls (rounded to a power of two, at most 256). Fewer
	// connections gather more commands per write. Zero means 2.
	PipelineConns int

	// GoReceiversOnly stores channels for deployments where every process
	// that receives from the layer's channels is a process of this layer
	// (Python processes may still send to them). It is wrong when a
	// channels_redis process receives from the same channels: with
	// several hosts, a channels_redis receive reads one host, the next in
	// turn, and waits there until a message comes, so it can wait forever
	// for a message this layer stored on another host; and a Python
	// receiver, which does not look at a message's age, can get a message
	// up to one Expiry after it expired.
	//
	// With it, the messages of an ordinary channel go to the host of the
	// channel's hash (not to the hosts in turn), which keeps one
	// sender's messages in order and the channel's capacity exact across
	// hosts; and channel keys outlive their last message by twice Expiry
	// (not once), so that a message that expired unread is still seen and
	// its channel evicted from its groups (spec L17). See the package
	// documentation, Differences from channels_redis. In Cluster mode,
	// where channels_redis cannot share the storage, the layer always
	// stores this way.
	GoReceiversOnly bool

	// Logger receives the layer's logs. Nil means slog.Default().
	Logger *slog.Logger
}

// settings is Config with defaults applied.
type settings struct {
	hosts         []string
	tlsConfig     *tls.Config
	prefix        string
	expiry        time.Duration
	groupExpiry   time.Duration
	caps          *capacities.Table
	rules         []channels.CapacityRule
	maxSize       int
	names         naming.Rules
	sentinels     []string
	masterName    string
	cluster       bool
	timeout       time.Duration
	blockTimeout  time.Duration
	receiveConns  int
	processBuffer int
	processCap    int
	receiveBuffer int
	connBuffer    int
	flushDelay    time.Duration
	pipelineConns int
	goOnly        bool
	log           *slog.Logger
}

func (cfg Config) settings() (settings, error) {
	s := settings{
		hosts:         cfg.Hosts,
		tlsConfig:     cfg.TLSConfig,
		prefix:        cfg.Prefix,
		expiry:        cfg.Expiry,
		groupExpiry:   cfg.GroupExpiry,
		rules:         cfg.ChannelCapacity,
		maxSize:       cfg.MaxMessageSize,
		names:         naming.Rules{MaxLength: cfg.MaxNameLength},
		sentinels:     cfg.Sentinels,
		masterName:    cfg.MasterName,
		timeout:       cfg.Timeout,
		blockTimeout:  cfg.BlockTimeout,
		receiveConns:  cfg.ReceiveConns,
		processBuffer: cfg.ProcessBuffer,
		processCap:    cfg.ProcessCapacity,
		receiveBuffer: cfg.ReceiveBuffer,
		goOnly:        cfg.GoReceiversOnly,
		connBuffer:    cfg.ConnBuffer,
		flushDelay:    cfg.FlushDelay,
		pipelineConns: cfg.PipelineConns,
		log:           cfg.Logger,
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("component", "redislayer")
	s.cluster = cfg.Cluster
	s.goOnly = s.goOnly || s.cluster // channels_redis has no Cluster support
	if s.cluster && len(cfg.Sentinels) > 0 {
		return s, fmt.Errorf("redislayer: Cluster and Sentinels cannot be used together")
	}
	if len(s.hosts) == 0 {
		if u := os.Getenv("REDIS_URL"); u != "" {
			s.hosts = []string{u}
		} else {
			s.hosts = []string{DefaultURL}
		}
	}
	if len(s.sentinels) > 0 {
		if s.masterName == "" {
			return s, fmt.Errorf("redislayer: Sentinels given without MasterName")
		}
		if len(cfg.Hosts) > 1 {
			return s, fmt.Errorf("redislayer: with Sentinels, Hosts may hold at most one URL (for credentials), not %d", len(cfg.Hosts))
		}
	}
	if s.prefix == "" {
		s.prefix = DefaultPrefix
	}
	if s.expiry <= 0 {
		s.expiry = DefaultExpiry
	}
	if s.groupExpiry <= 0 {
		s.groupExpiry = DefaultGroupExpiry
	}
	capacity := cfg.Capacity
	if capacity <= 0 {
		capacity = DefaultCapacity
	}
	caps, err := capacities.New(capacity, cfg.ChannelCapacity)
	if err != nil {
		return s, fmt.Errorf("redislayer: %w", err)
	}
	s.caps = caps
	switch {
	case s.maxSize == 0:
		s.maxSize = DefaultMaxMessageSize
	case s.maxSize < 0:
		s.log.Warn("message size limit switched off (MaxMessageSize < 0); one large message can exhaust Redis memory")
	}
	switch {
	case s.timeout == 0:
		s.timeout = DefaultTimeout
	case s.timeout < 0:
		s.log.Warn("Redis call timeout switched off (Timeout < 0); calls may hang while Redis does not answer")
	}
	if s.blockTimeout <= 0 {
		s.blockTimeout = DefaultBlockTimeout
	}
	if s.blockTimeout < time.Millisecond {
		s.blockTimeout = time.Millisecond
	}
	if s.receiveConns <= 0 {
		s.receiveConns = DefaultReceiveConns
	}
	switch {
	case s.processBuffer == 0:
		s.processBuffer = DefaultProcessBuffer
	case s.processBuffer < 0:
		s.log.Warn("process-specific receive buffer unbounded (ProcessBuffer < 0); a prefix nobody reads can hold up to its messages' expiry in memory")
	}
	if s.processCap <= 0 {
		s.processCap = DefaultProcessCapacity
	}
	switch {
	case s.receiveBuffer == 0:
		s.receiveBuffer = DefaultReceiveBuffer
	case s.receiveBuffer < 0:
		s.receiveBuffer = 0
	}
	if s.connBuffer <= 0 {
		s.connBuffer = DefaultConnBuffer
	}
	switch {
	case s.flushDelay == 0:
		s.flushDelay = DefaultFlushDelay
	case s.flushDelay < 0:
		s.flushDelay = 0
	}
	if s.pipelineConns <= 0 {
		s.pipelineConns = DefaultPipelineConns
	}
	s.pipelineConns = min(s.pipelineConns, 256)
	return s, nil
}

// withTimeout bounds one call to Redis.
func (s *settings) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if s.timeout < 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, s.timeout)
}

// layerParams are the query parameters Open takes for the layer; all others
// are left in the host URLs for the Redis client (dial_timeout,
// write_timeout, client_name, skip_verify, db, protocol).
var layerParams = map[string]bool{
	"prefix": true, "expiry": true, "group_expiry": true, "capacity": true,
	"channel_capacity": true, "max_message_size": true, "max_name_length": true,
	"host": true, "sentinel": true, "master_name": true, "cluster": true,
	"timeout": true, "block_timeout": true, "receive_conns": true,
	"process_buffer": true, "process_capacity": true, "conn_buffer": true,
	"receive_buffer": true,
	"flush_delay":    true, "pipeline_conns": true, "go_receivers_only": true,
}

// ParseURL turns the URL form that Open accepts into a Config.
//
// The URL is a Redis URL (redis://, rediss:// or unix://, with user,
// password and database as usual) whose query parameters also configure
// the layer:
//
//	prefix=asgi                    key prefix
//	expiry=60                      message expiry: seconds, or a Go duration ("1500ms")
//	group_expiry=86400             group membership expiry: seconds or a duration
//	capacity=100                   default channel capacity
//	channel_capacity=PATTERN:N     capacity for channels matching the glob (repeatable, first match wins)
//	max_message_size=1048576       bytes; -1 switches the limit off
//	timeout=3s, block_timeout=5s   call and blocking-pop bounds (seconds or durations)
//	receive_conns=64, process_buffer=1000, process_capacity=10000, receive_buffer=256
//	conn_buffer=65536, max_name_length=100, flush_delay=20us, pipeline_conns=2
//	host=redis://other:6379/0      another host to shard over (repeatable)
//	sentinel=host:26379            a Sentinel address (repeatable); needs master_name
//	master_name=mymaster           the Sentinel master set
//	cluster=true                   Redis Cluster mode (see Config.Cluster)
//	go_receivers_only=true         no channels_redis process receives (Config.GoReceiversOnly)
//
// A Redis Cluster can also be written with the scheme redis+cluster (or
// rediss+cluster for TLS) and some of its nodes, comma-separated:
//
//	redis+cluster://10.0.0.1:7000,10.0.0.2:7000,10.0.0.3:7000?prefix=chat
//
// Several hosts can also be given as a comma-separated list of URLs
// ("redis://a:6379/0,redis://b:6379/0?prefix=chat"); layer parameters may
// appear on any of them. Other query parameters stay on their host URL for
// the Redis client (dial_timeout, write_timeout, client_name, skip_verify,
// db, protocol).
func ParseURL(rawURL string) (Config, error) {
	var cfg Config
	var hosts []string
	params := url.Values{}
	scheme := ""
	for _, part := range strings.Split(rawURL, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if cfg.Cluster && !strings.Contains(part, "://") {
			part = scheme + "://" + part // redis+cluster://a:1,b:2
		}
		u, err := url.Parse(part)
		if err != nil {
			return cfg, fmt.Errorf("redislayer: parse URL: %w", err)
		}
		switch u.Scheme {
		case "redis", "rediss", "unix":
		case "redis+cluster", "rediss+cluster":
			u.Scheme = strings.TrimSuffix(u.Scheme, "+cluster")
			scheme = u.Scheme
			cfg.Cluster = true
		default:
			return cfg, fmt.Errorf("redislayer: URL %q: scheme must be redis, rediss, unix, redis+cluster or rediss+cluster", redact(part))
		}
		q := u.Query()
		rest := url.Values{}
		for k, vs := range q {
			if layerParams[k] {
				params[k] = append(params[k], vs...)
			} else {
				rest[k] = vs
			}
		}
		u.RawQuery = rest.Encode()
		hosts = append(hosts, u.String())
	}
	if len(hosts) == 0 {
		return cfg, fmt.Errorf("redislayer: empty URL")
	}
	hosts = append(hosts, params["host"]...)
	cfg.Hosts = hosts
	cfg.Prefix = params.Get("prefix")
	var err error
	dur := func(key string, dst *time.Duration) {
		if err != nil || !params.Has(key) {
			return
		}
		v := params.Get(key)
		if n, e := strconv.ParseFloat(v, 64); e == nil {
			*dst = time.Duration(n * float64(time.Second))
			return
		}
		d, e := time.ParseDuration(v)
		if e != nil {
			err = fmt.Errorf("redislayer: URL parameter %s=%q: want seconds or a duration like 1500ms", key, v)
			return
		}
		*dst = d
	}
	num := func(key string, dst *int) {
		if err != nil || !params.Has(key) {
			return
		}
		n, e := strconv.Atoi(params.Get(key))
		if e != nil {
			err = fmt.Errorf("redislayer: URL parameter %s=%q: want an integer", key, params.Get(key))
			return
		}
		*dst = n
	}
	dur("expiry", &cfg.Expiry)
	dur("group_expiry", &cfg.GroupExpiry)
	dur("timeout", &cfg.Timeout)
	dur("block_timeout", &cfg.BlockTimeout)
	dur("flush_delay", &cfg.FlushDelay)
	num("capacity", &cfg.Capacity)
	num("max_message_size", &cfg.MaxMessageSize)
	num("max_name_length", &cfg.MaxNameLength)
	num("receive_conns", &cfg.ReceiveConns)
	num("process_buffer", &cfg.ProcessBuffer)
	num("process_capacity", &cfg.ProcessCapacity)
	num("receive_buffer", &cfg.ReceiveBuffer)
	num("conn_buffer", &cfg.ConnBuffer)
	num("pipeline_conns", &cfg.PipelineConns)
	if err != nil {
		return cfg, err
	}
	for _, rule := range params["channel_capacity"] {
		i := strings.LastIndexByte(rule, ':')
		if i <= 0 {
			return cfg, fmt.Errorf("redislayer: URL parameter channel_capacity=%q: want PATTERN:CAPACITY", rule)
		}
		n, e := strconv.Atoi(rule[i+1:])
		if e != nil {
			return cfg, fmt.Errorf("redislayer: URL parameter channel_capacity=%q: want PATTERN:CAPACITY", rule)
		}
		cfg.ChannelCapacity = append(cfg.ChannelCapacity, channels.CapacityRule{Pattern: rule[:i], Capacity: n})
	}
	cfg.Sentinels = params["sentinel"]
	cfg.MasterName = params.Get("master_name")
	if v := params.Get("go_receivers_only"); v != "" {
		b, e := strconv.ParseBool(v)
		if e != nil {
			return cfg, fmt.Errorf("redislayer: URL parameter go_receivers_only=%q: want true or false", v)
		}
		cfg.GoReceiversOnly = b
	}
	if v := params.Get("cluster"); v != "" {
		b, e := strconv.ParseBool(v)
		if e != nil {
			return cfg, fmt.Errorf("redislayer: URL parameter cluster=%q: want true or false", v)
		}
		cfg.Cluster = b
	}
	return cfg, nil
}

// redact hides the password of a URL for error messages and logs.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}
