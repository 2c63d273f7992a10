// Package delay is the delay server of the ASGI Delay Protocol: producers
// send a message on "asgi.delay" asking for content to be sent to a channel
// some milliseconds later, and the server stores it in a SQL database and
// sends it when it is due.
//
//	// Anywhere (a consumer, a handler, a job):
//	delay.Send(ctx, layer, "reminders", channels.Content{"user": 42}, 10*time.Second)
//
//	// The delay server (cli's rundelay, or in-process under runserver):
//	store, err := delay.Open(ctx, "sqlite:///var/lib/app/delay.db") // or postgres://...
//	srv := &delay.Server{Layer: layer, Store: store}
//	err = srv.Run(ctx)
//
// # Protocol
//
// An "asgi.delay" message has the keys "channel" (text, a valid channel
// name), "content" (a map: the message to deliver) and "delay" (an integer
// number of milliseconds, 0 to Server.MaxDelay, 30 days by default). Two
// optional keys are this package's extension, ignored by other delay
// servers: "id" (text, 1 to 64 name characters) names the message, and a
// server stores an ID only once; "reply_channel" asks the server to answer,
// after the commit, with {"id": id, "stored": true}, or with {"id": id,
// "error": reason, "detail": text} when it rejects the message.
// SendConfirmed uses both.
//
// A message that breaks these rules is logged with the reason, counted in
// Stats.Rejected, and skipped; the server keeps running (Channels 1.0.0
// stopped). The due time is the time the server received the message plus
// the delay. The delivered content is the content given, with the message's
// ID added under IDKey ("__delay_id__"). Content is stored with msgpack, so
// bytes stay bytes and text stays text (the reference stored JSON, which
// cannot hold bytes).
//
// # Timing
//
// Delivery is driven by a timer set to the earliest due message, which is
// moved earlier when a message due sooner is stored (by this server
// directly, by other servers sharing a PostgreSQL table through
// LISTEN/NOTIFY), so a message goes out within milliseconds of its due time
// instead of at the next poll; the database is also polled every
// Server.PollInterval (5 s) as a safety net. A due message whose channel is
// full is rescheduled Server.RetryFull (1 s) later, as often as needed; it
// is never dropped and never stops the server. Messages to one channel are
// sent in due order: those that fall due while earlier ones wait for a
// retry wait behind them, even when the channel has room by then.
//
// # Guarantees
//
// From "asgi.delay" to the database, on the Redis layer: nothing is lost,
// with plain Send too. The server receives with redislayer's ReceiveHeld:
// the messages it takes stay in Redis, held, until it acknowledges them
// after its commit; when it crashes (or its database stays down past
// Server.StepTimeout after it is told to stop) before that, they go back
// to "asgi.delay" after Server.IntakeHold (10 s) and a server receives
// them again. A request without its own ID is stored under the layer's ID
// of the message, which it keeps when it comes back, so a batch committed
// but not acknowledged at a crash is not stored twice while it waits in
// the store; if it was delivered already, it is delivered again, with the
// same ID under IDKey (at most Server.IntakeBatch messages per crash).
// Measured: 20 kills -9 of the server while 10,000 messages went through
// with plain Send lost none (TestCrashKillsPlainSend).
//
// On other layers, whose Receive is at-most-once, a message the server has
// received exists only in its memory until the insert commits. The server
// shortens that window as far as it can: it stores what it received at
// once, in one transaction with whatever else is already waiting (at most
// Server.IntakeBatch messages), and retries a failing database (for
// Server.StepTimeout after it is told to stop, then it counts them in
// Stats.Lost). A crash of the process inside that window (a few
// milliseconds per batch) loses those messages. SendConfirmed closes the
// gap on any layer: it resends the request, with the same ID, until a
// server confirms the commit, and a server stores each ID once, so a crash
// costs a resend, not the message.
//
// In the database: a committed message survives crashes and restarts of the
// delay server and of the layer (SQLite runs in WAL mode with
// synchronous=FULL by default, so commits also survive a power failure;
// PostgreSQL as configured). A server that restarts after a message's due
// time sends it at once.
//
// From the database to its channel: at-least-once. A due message is sent
// and then removed in the same transaction that claimed it; a crash between
// the send and the commit sends it again after the restart, carrying the
// same ID under IDKey, which consumers can use to drop the duplicate.
// Without a crash there are no duplicates, also with several servers.
// Once sent, the message is subject to the layer's own at-most-once delivery
// and expiry, like every other message.
//
// # Storage and several servers
//
// Open takes "sqlite:///path/file.db" (or a plain file path) or
// "postgres://...". The store creates its table ("channels_delay", another
// prefix with StoreConfig.TablePrefix) and a schema-version table, and
// migrates them idempotently under a lock. Several servers may share a
// PostgreSQL table: each due message is claimed by exactly one of them (SELECT
// ... FOR UPDATE SKIP LOCKED), and an insert notifies the others. Servers
// sharing a SQLite file take turns holding its write lock, which also sends
// each message once, but SQLite is meant for one server.
//
// # Layers
//
// A Server works on any layer. Under runserver it runs in-process on the
// in-memory layer (messages scheduled there are still stored, but a
// producer in another process cannot reach it); a standalone delay server
// (rundelay) needs a layer shared with the producers, such as Redis, and
// must refuse an in-memory layer.
package delay
