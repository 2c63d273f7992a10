// Package redislayer is a channel layer on Redis: the layer that lets
// interface servers, workers and the delay server run as separate
// processes on separate machines.
//
//	l, err := redislayer.New(ctx, redislayer.Config{Hosts: []string{"redis://127.0.0.1:6379/0"}})
//	// or: redislayer.Open(ctx, "redis://127.0.0.1:6379/0?prefix=chat&capacity=200")
//	defer l.Close()
//
// A *Layer implements channels.GroupLayer, channels.Flusher,
// channels.Poller, channels.PrefixReceiver, channels.StatsReporter and
// io.Closer. It is safe for concurrent use; every call that talks to Redis
// takes a context and is bounded in time (see Faults).
//
// # Storage: shared with channels_redis
//
// The keys and values are those of Python's channels_redis 4 (except in
// Cluster mode, see Redis Cluster), so a Go service and a Django Channels
// deployment configured with the same hosts, prefix and expiry exchange
// messages on one Redis:
//
//   - a channel is a sorted set <prefix><channel name> whose members are 12
//     random bytes followed by the msgpack message (text as str, bytes as
//     bin), scored by the Unix time of the send; with several hosts, the
//     messages of an ordinary channel go to the hosts in turn, as
//     channels_redis 4 sends them (see Sharding);
//   - the process-specific channels of one process ("name!suffix") share
//     one sorted set keyed by their process prefix (<prefix>name!); each
//     message names its channel in "__asgi_channel__" (a list of names when
//     one group send reaches several channels of the process);
//   - a group is a sorted set <prefix>:group:<name> of channel names scored
//     by the time of their last GroupAdd;
//   - the default prefix is "asgi", channels_redis's, which gives keys like
//     "asgihttp.request" and "asgi:group:chat".
//
// The layer adds small keys that channels_redis ignores:
// <prefix>:expired:<channel>, the time of the newest message that expired
// unread on a channel, and <prefix>:expired:, a sorted set indexing those
// channels by that time; <prefix>:gsnap:<group> and
// <prefix>:glists:<group>, a group's member lists as its last group send
// built them (see Groups); <prefix>:epoch, which tells the layer
// that Redis lost its data (see Faults); and <prefix>:held:<channel>, the
// messages taken by ReceiveHeld and not yet acknowledged. Every key the
// layer writes has an expiry: channel keys the message expiry after their
// last message, as channels_redis sets it (twice that, plus a second, with
// Config.GoReceiversOnly and in Cluster mode), groups the group expiry
// after their last add, markers likewise, the epoch the group expiry (at
// least a minute) after a layer last read it. Flush deletes every key
// under the prefix but the epoch.
//
// Keys are the prefix followed by a name, so a prefix that starts another
// one ("chat" and "chat2") shares its keyspace: give layers that must not
// see each other prefixes where neither starts the other ("chat:" and
// "chat2:").
//
// # Capacity
//
// An ordinary or single-reader channel holds at most its capacity
// (Config.Capacity, or the first Config.ChannelCapacity rule matching its
// name). The process-specific channels of one process share one Redis key
// and are bounded as a whole, as channels_redis 4 bounds them: the key's
// capacity is the first rule matching the process prefix
// ("http.response!*" matches "http.response!"), else
// Config.ProcessCapacity (10 000). While the prefix holds that many
// messages, Sends to any of its channels fail with ErrChannelFull and
// group sends skip them.
//
// The reader of a process prefix is one process's receive loop (an
// interface server's), which moves each message at once into bounded
// per-connection queues with their own slow-client policy (the gateway
// closes a connection whose queue overflows). A per-prefix bound is the
// right backpressure signal there: it fills only when that whole process
// falls behind, and it costs nothing per message, where per-channel counts
// cost a counter update on every send and every receive. A group send to
// many connections of one process is one message listing them all
// (Groups) with one capacity check.
//
// Concurrent sends racing for the last places of a key may leave it over
// capacity for one round trip, until the batch that went over removes its
// extra messages (those received meanwhile count as sent).
//
// # Differences from channels_redis
//
// channels_redis bounds a process prefix by the rule matching the full
// channel name sent to, else by the default capacity (100). This layer
// matches the rules against the prefix (a rule written "name!*" matches
// both) and falls back to Config.ProcessCapacity: 100 messages waiting for
// a whole interface server would refuse replies under ordinary load.
//
// Messages are delivered at most once and never after their expiry. Only
// live messages count against capacity. Expired messages are removed by
// the pops and group sends that meet them (channels_redis removes them
// before each send); a pop that takes one discards it.
//
// Group members are evicted when a message expires unread on their
// channel after they joined (spec L17; channels_redis never does this),
// as far as the layer sees the message: an expired message is seen by the
// pop or the group send that meets it, which records it in a marker, and
// is gone unseen when its channel key expires with it. Channel keys
// expire one message expiry after their last message, as channels_redis
// sets them, so a message is seen only while a later one keeps its key
// alive: the member of a group that sends to it more often than once per
// expiry (a chat room whose interface server died) is evicted at the
// group send after its first message expired; the member whose only
// message expired is usually not, and leaves at the group expiry. With
// Config.GoReceiversOnly (and in Cluster mode) keys live twice the expiry
// and every member whose message expired unread is evicted by the next
// group send within that time.
//
// Group members added by Python processes are treated as those added by
// Go: a group send of this layer delivers to every member, whoever added
// it; drops the memberships older than the group expiry, as
// channels_redis drops them; and removes from the group, for good, the
// members whose channel had a message expire unread (as seen above)
// since they last joined, wherever that message came from. A Python
// consumer is not told: it stops getting the group's messages until it
// joins again (Django Channels' consumers join when they connect). Group
// sends of channels_redis remove expired messages without a marker, so
// they evict nobody. GroupChannels lists Python's members too, and
// GroupDiscard removes them.
//
// Values: text that is not valid UTF-8 is refused at Send and GroupSend
// with channels.ErrInvalidContent (channels_redis cannot decode it, and
// would drop the whole message); integers above 2^63-1, which Python
// sends, are received as uint64 (not in normal form: convert before
// sending them on).
//
// # Sharding
//
// Over several hosts, channels and groups are placed as channels_redis 4
// places them, by default:
//
//   - the messages of an ordinary channel go to the hosts in turn, because
//     a channels_redis receiver reads one host per receive call, the next
//     in turn, and waits there until a message comes: were all of a
//     channel's messages stored on the host of its hash, that receiver
//     would wait forever on another host at every other call. Each Layer
//     counts the turn per channel, starting with the first host, as a new
//     channels_redis process starts receiving (channels_redis counts one
//     turn for all channels, so sends to several channels that interleave
//     can leave one channel's messages on one host). Nothing can promise
//     a channels_redis receiver every message, though: a receiver that
//     waits on one host while the next message goes to another (two
//     senders, or a receive given up) waits until one arrives there;
//   - a process-specific channel goes to the host of its process prefix's
//     consistent hash, and so does a group send to it;
//   - a group lives on the host of its name's hash, and a group send
//     reaches an ordinary member on the host of the member's hash (as
//     channels_redis's group send does).
//
// Receivers of this layer read every host (all of them at once while they
// wait), so they get every message wherever it is, including those sent
// by Python. The cost of sending in turn: a channel's messages are not
// received in the order they were sent once they are on different hosts,
// and each host holds up to the channel's capacity, so one sender can
// store the capacity times the number of hosts before Send fails with
// ErrChannelFull (channels_redis behaves the same). Single-reader ('?')
// channels, which channels_redis cannot name, stay on the host of their
// hash and keep their order.
//
// Sharding also fixes a channels_redis bug. channels_redis 4.0 places a
// process-specific channel by the consistent hash of its full name when
// it sends, but of its process prefix when it receives and when it sends
// to a group, so with more than one host most direct replies land on a
// host nobody reads. This layer uses the process prefix on every path,
// and its receive loops read every host, so they still get the
// process-specific messages that Python misplaced.
//
// Config.GoReceiversOnly (go_receivers_only=true) is for deployments where
// only processes of this layer receive: the messages of an ordinary
// channel then go to the host of its hash, which keeps one sender's
// messages in order and the capacity exact across hosts, and channel keys
// live twice the expiry (see Differences from channels_redis). It is
// wrong when a channels_redis process receives from the same channels: it
// could wait forever for messages on another host, and, since it does not
// look at a message's age, get a message up to one expiry after it
// expired. Receivers of this layer never deliver an expired message,
// whatever the setting.
//
// # Receiving
//
// Ordinary and single-reader channels are popped by fetchers: one
// goroutine for each set of channel names that Receive calls wait on
// together (a worker receives on the same set over and over). While calls
// wait, their fetcher pops as many messages as there are calls, plus some
// ahead of demand, in one round trip, and hands them over: with a blocking
// pop (BZMPOP ... COUNT n), which answers at once when messages wait and
// otherwise waits for all the calls at once, on a connection of its own
// (Config.ReceiveConns bounds those connections per host; in Cluster mode,
// over channels of several slots, it first pops each without waiting). A
// Receive that finds its fetcher idle (no call waiting, no pop under way),
// as one goroutine receiving message after message does (a worker's
// receive loop), pops for itself instead, with the same blocking pop on a
// pop connection, sparing the hand-offs between goroutines (a Receive
// over process-specific channels too pops without waiting, then waits as
// usual). The order of
// the channels is rotated on every pop, so that a busy channel does not
// starve the others; a Receive over ordinary and process-specific channels
// alternates which kind it serves first.
//
// Messages popped beyond the calls waiting for them go to a small buffer
// in the process, which every Receive and Poll serves from first, oldest
// first. How far ahead a fetcher pops adapts to demand: it doubles while
// pops come back full (a backlog in Redis, consumed as fast as it is
// popped) and halves when they do not, so a process that receives slowly
// holds little; the whole buffer is bounded by Config.ReceiveBuffer (256
// messages; a negative value never pops ahead). Buffered messages expire
// at their time like the others. Messages of ordinary channels that no
// Receive takes within a quarter of a second are put back in Redis where
// they were (their scores are their send times), for other processes;
// so is everything buffered when the layer is closed. What a process holds
// when it dies is lost, like any message received and not yet processed.
//
// When no call waits any more, a blocking pop in progress is interrupted
// with CLIENT UNBLOCK: Redis then answers with nothing, or with the
// messages it had already popped, which go to the buffer. No message is
// ever popped and then dropped. (The Redis user therefore needs the
// CLIENT UNBLOCK and CLIENT ID commands.) A Receive whose context ends
// returns its error, unless a message had already been handed to it: that
// message is returned, with a nil error.
//
// ReceiveHeld is a receive that loses nothing when the receiver dies: the
// messages it takes move, in one script, to a held set beside their
// channel ("<prefix>:held:<channel>") until the receiver acknowledges
// them; those not acknowledged in time go back to the channel with their
// send time, and are received again with the same IDs. The delay server
// receives "asgi.delay" this way and acknowledges after its commit.
//
// Process-specific channels are read by one receive loop per host for the
// whole process: a single blocking pop (BZMPOP, taking up to 256 messages
// at once) over the process prefixes that have a waiting Receive or
// ReceivePrefix (and for a few seconds after; in Cluster mode one pop per
// hash slot, at once), whose messages are sorted by "__asgi_channel__"
// into per-prefix buffers in memory. Receive on '!' names, ReceivePrefix
// and Poll read from those buffers. A buffer holds at
// most Config.ProcessBuffer messages; while it is full the loop stops
// taking that prefix's messages, which then wait in Redis, count against
// capacity and expire there: nothing is dropped. Buffered messages still
// expire after Config.Expiry. They are this process's own channels, so
// nothing is put back when the layer closes.
//
// # Groups
//
// GroupSend is one Lua call when the group and its members are on one
// host: it drops memberships older than the group expiry, evicts members
// whose channel had a message expire unread since they joined, and adds
// one message per Redis key that has room (for the process-specific
// members of one process, one message listing them), counting the members
// of full keys as skipped. Redis spends a fixed amount per Redis key
// reached and very little per member. Evictions are found in the index of
// expired-message markers (<prefix>:expired:), from the group's oldest
// membership on, so a group send looks at the few channels whose messages
// expired unread lately, not at every member's marker (markers written
// only as keys, without the index, by versions of this layer before it,
// evict nobody). On Redis 7 the member lists of a large group (one Redis
// stores as a skip list: more than 128 members by default), grouped by
// Redis key and encoded, are kept in Redis between sends (<prefix>:glists:<group>, with
// the members they were built from in <prefix>:gsnap:<group>, both
// expiring with the group): a send uses them while the group has exactly
// those members, which Redis checks in C (ZINTERCARD) whoever changed the
// group, Python processes included, and rebuilds them otherwise. The lists
// are kept in Redis rather than in each process because only Redis sees
// every change: channels_redis adds and discards members with plain
// commands that no process is told of, and a list cached in a process
// could be stale without it knowing. With several
// hosts it is one call to the group's host and one per host holding
// members, in parallel (in Cluster mode, one per hash slot holding
// members).
//
// # Redis Cluster
//
// With Config.Cluster (or a redis+cluster:// URL) the layer uses a Redis
// Cluster through the rueidis cluster client, which follows the cluster's
// redirections and fail-overs. Every key then carries a hash tag, so that
// whatever one call touches lives in one hash slot: a channel's key and
// its expiry markers share the tag of the channel's name, the keys of
// process-specific channels and their markers the tag of the process
// prefix, and a group has the tag of its name:
//
//	<prefix>{http.request}                    <prefix>:expired:{http.request}
//	<prefix>{websocket.send.ID!}              <prefix>:expired:{websocket.send.ID!}abc
//	<prefix>:group:{chat}
//
// Channels and groups thus spread over the nodes by name. Calls over
// several keys are split by slot: a send batch is one MULTI per slot; a
// Receive over channels of several slots pops each slot on its own (and
// waits on all of them at once, on connections to their nodes, so that
// CLIENT UNBLOCK reaches the right server); a group send reads the members
// on the group's slot, delivers with one call per slot holding members, in
// parallel, and evicts on the group's slot. Flush and Stats scan every
// node.
//
// The hash tags change the key names, so in Cluster mode the storage is
// not channels_redis's (which has no Cluster support): Python processes
// cannot share a layer with Go processes there. Hosts are some of the
// cluster's nodes, with the credentials and TLS setting of the first; the
// database must be 0. A group's membership is checked against expiry
// markers (spec L17) when a message is sent to the group, not by
// GroupChannels, since the markers live in the members' slots.
//
// # Faults
//
// When Redis cannot be reached, calls fail with an error wrapping
// ErrUnavailable, and Counters().Unavailable counts them: at once when
// Redis refuses connections, within about Config.Timeout plus one second
// when it stops answering (see Config.Timeout).
// Nothing blocks forever and nothing panics. The layer reconnects by
// itself on the next call; the receive loops retry with a backoff of at
// most 500 ms, and at once when the layer's watch of each host (below)
// sees it answer again, so receiving resumes within about 300 ms of Redis
// coming back, without restarting anything. A call written to a
// connection that Redis closed while it sat idle (EOF, or a reset, before
// any reply: Redis ran none of it) is run again on another connection
// before it fails (Counters().Retried), so the first send of a process
// that was idle through a restart is not lost.
//
// What is lost when Redis restarts: Redis keeps nothing on disk in this
// setup, so every message waiting in Redis and every group membership is
// gone. Messages already in a process's buffers survive. The layer notices:
// each host holds an epoch key ("<prefix>:epoch", left by Flush) that
// every layer reads four times a second; when it has gone or
// changed, the host lost its data, and the layer logs it, counts it
// (Counters().DataLosses) and calls the functions registered with
// OnDataLoss. Interface servers then re-add their connections to groups
// or close them so clients reconnect, as the ASGI specification
// recommends after layer data loss; the gateway closes them with code
// 1012 (gateway.CloseLayerDataLost). In Cluster mode the epoch lives on
// the node serving its slot only. A send that fails with ErrUnavailable
// may or may not have been stored.
// A pop abandoned because Redis did not answer within Config.Timeout (a
// frozen or overloaded server, not a stopped one) may have taken a message
// that is then lost.
//
// # Throughput
//
// Sends are batched: concurrent Sends to one host share one round trip.
// A Send that finds no batch under way runs one at once, after yielding
// the processor while other Sends ready to run (the frames of one network
// poll, the messages of one pop) keep joining it, so an idle layer adds no
// delay; Sends that arrive while one is under way go out together in the
// next, run by one of their goroutines.
// A batch is one MULTI holding, per Redis key (a channel, or a process
// prefix), one ZADD of all its messages, which share a score, and a ZCARD
// that checks capacity; only a key found over capacity costs a second
// call, which removes the batch's messages that do not fit (their Sends
// fail with ErrChannelFull). Receives pop in batches too (see
// Receiving). Batches and fetchers use
// connections of their own, on which the calling goroutine writes and
// reads without the client's pipelining goroutines in between; the other
// calls share pipelined connections (Config.FlushDelay,
// Config.PipelineConns).
//
// Under load (256 senders and 256 receivers on 4 channels) this costs
// Redis about 1.1 µs of command time per message sent and received (0.5
// for its place in a ZADD, 0.6 for its place in a ZMPOP), against about
// 0.8 µs for one ZADD of redis-benchmark's pipelined test, and the client
// about 3 to 3.5 µs of CPU per message: a third in the client library's
// reading and writing, a third in waking the goroutines that wait in Send
// and Receive, the rest in building and reading the messages' maps and in
// garbage collection. Throughput therefore grows with the number of
// concurrent senders and receivers; with few of them it is bounded by
// round trips (32 senders each waiting for its Send make at most 32
// messages per round trip). cmd/channels-layerbench measures it against
// redis-benchmark on the same server and reports where the CPU goes.
//
// A WebSocket echo over this layer is four Redis operations, the fewest
// the protocol allows, each shared with other connections' traffic: the
// interface server's Send of websocket.receive (a place in a batched ZADD),
// the worker's pop (a place in a BZMPOP ... COUNT n), the consumer's Send
// of the reply to the server's process prefix (a batched ZADD), and the
// server's pop under its prefix. channels_redis spends the same four per
// echo, each its own round trip, plus a ZREMRANGEBYSCORE and an EXPIRE per
// send. A group send to members on several interface servers is one
// message per server (see Groups), not one per member.
//
// # Redis servers and users
//
// Redis 6.0 or later is needed (fractional blocking timeouts, SCAN TYPE);
// with Redis 7 pops over several channels need no Lua call and pop many
// messages while waiting (ZMPOP, BZMPOP; before Redis 7 a blocking pop
// takes one). Hosts may use TLS (rediss://, Config.TLSConfig) and ACL
// users. A user needs the keys ~<prefix>* and the commands EVALSHA, EVAL,
// MULTI, EXEC, ZADD, ZCARD, PEXPIRE, SET, GET, DEL, ZSCORE, ZREMRANGEBYSCORE,
// ZINTERCARD, ZRANGESTORE, OBJECT, HSET, HGETALL, ZPOPMIN, ZMPOP, BZMPOP,
// BZPOPMIN, ZRANGE, ZRANGEBYSCORE, ZCOUNT, ZREM, EXISTS, SCAN, UNLINK,
// INFO, PING, CLIENT ID and CLIENT UNBLOCK. A wrong password or an untrusted
// certificate is a plain error, not ErrUnavailable: retrying will not
// help.
//
// # Time
//
// Expiry compares the sender's clock (the score) with the receiver's, as
// channels_redis does: hosts sharing a layer need synchronised clocks.
package redislayer
