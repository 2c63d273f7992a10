package binding

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/internal/sqldb"
	"github.com/jackc/pgx/v5"
)

// Defaults of a Relay's settings.
const (
	DefaultBatchSize = 500
	DefaultRetention = 24 * time.Hour
)

// leaseTime is how long a SQLite relay's lease lasts without renewal; the
// lease is renewed when less than two thirds remain.
const leaseTime = 15 * time.Second

// Relay turns the committed changes the triggers record in the outbox into
// group messages, and deletes what it has sent. Fill in the fields and call
// Run. Changes of one row are sent in commit order.
//
// On PostgreSQL, several relays (in several processes) may share one
// database: each round claims, with FOR UPDATE SKIP LOCKED, the oldest
// pending change of rows no other relay holds (and that row's later
// changes), sends them and deletes them in the same transaction, so a
// change is sent by one relay. A relay is woken by the triggers' NOTIFY
// (LISTEN on "<prefix>binding") and polls every PollInterval as a safety
// net. On SQLite one relay at a time is active (a lease renewed while it
// runs; another takes over within 15 s of its death); it is woken by
// DB.Notify, which the inbound consumers call after their writes, and by
// the poll.
//
// A relay reads only the changes of its bindings' tables; relays sharing a
// database and a table prefix should serve the same tables (on SQLite, the
// active relay is the only one reading). Delivery is at least once: a change is deleted from the outbox only after
// its messages went to the layer, so a relay that dies between the two
// leaves it to be sent again, with the same change_id. Changes made while
// no relay runs wait in the outbox; those older than Retention are dropped
// unsent (logged and counted in Stats.Expired).
type Relay struct {
	// DB is the database of the bound tables. Required.
	DB *DB
	// Layer is where the messages go. Required.
	Layer channels.GroupLayer
	// Bindings are the bindings whose changes the relay sends; a table may
	// have several. Required.
	Bindings []Registration

	// PollInterval is how often the outbox is read when nothing wakes the
	// relay. Zero means 250 ms on SQLite and 1 s on PostgreSQL.
	PollInterval time.Duration
	// BatchSize is the most changes read per round. Zero means
	// DefaultBatchSize.
	BatchSize int
	// Retention is how long a change may wait in the outbox; older ones
	// are dropped unsent. Zero means DefaultRetention; a negative value
	// keeps changes forever (logs a warning: the outbox can then grow
	// without bound while no relay runs).
	Retention time.Duration
	// Logger receives the relay's logs. Nil means the DB's logger.
	Logger *slog.Logger

	changes, sent, skipped, errs, expired atomic.Uint64
	lag                                   atomic.Int64
	running                               atomic.Bool
	entries                               []*entry
}

// Stats are a relay's counters since it was created.
type Stats struct {
	Changes uint64        // changes (outbox rows) handled: their messages sent (or dropped), each counted once
	Sent    uint64        // group messages sent
	Skipped uint64        // messages Serialize suppressed, or with no group
	Errors  uint64        // changes that could not be decoded, invalid group names, failed rounds
	Expired uint64        // changes dropped unsent after Retention
	Lag     time.Duration // from the write of the last change sent (its trigger's clock) to its sending
	// Inbound sums the inbound counters of the relay's bindings.
	Inbound InboundStats
}

// Stats returns the relay's counters.
func (r *Relay) Stats() Stats {
	s := Stats{
		Changes: r.changes.Load(), Sent: r.sent.Load(), Skipped: r.skipped.Load(),
		Errors: r.errs.Load(), Expired: r.expired.Load(), Lag: time.Duration(r.lag.Load()),
	}
	for _, b := range r.Bindings {
		if e := entryOf(b); e != nil {
			s.Inbound = s.Inbound.add(e.inbound.snapshot())
		}
	}
	return s
}

func (r *Relay) logger() *slog.Logger {
	if r.Logger != nil {
		return r.Logger
	}
	if r.DB != nil {
		return r.DB.log
	}
	return slog.Default()
}

// Run installs the bindings' triggers (see Install) and relays changes
// until ctx is done, then returns nil. It returns an error at once for a
// relay without DB, Layer or Bindings, and when Install fails; database and
// layer errors after that are logged, counted and retried.
func (r *Relay) Run(ctx context.Context) error {
	if r.DB == nil || r.Layer == nil || len(r.Bindings) == 0 {
		return errors.New("binding: Relay needs DB, Layer and Bindings")
	}
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("binding: Relay.Run called twice")
	}
	defer r.running.Store(false)
	r.entries = r.entries[:0]
	for i, b := range r.Bindings {
		e := entryOf(b)
		if e == nil {
			return fmt.Errorf("%w: binding %d was not created with binding.New", ErrInvalidBinding, i)
		}
		r.entries = append(r.entries, e)
	}
	if err := Install(ctx, r.DB, r.Bindings...); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	if r.Retention < 0 {
		r.logger().Warn("binding: Relay.Retention is negative: changes are kept until sent, and the outbox grows without bound while no relay runs")
	}
	wake := r.DB.addWaker()
	defer r.DB.removeWaker(wake)
	var src source
	if r.DB.pg {
		ps := &pgSource{r: r, wake: wake}
		lctx, stopListening := context.WithCancel(ctx)
		listening := make(chan struct{})
		go func() {
			defer close(listening)
			ps.listen(lctx)
		}()
		defer func() { stopListening(); <-listening }()
		src = ps
	} else {
		src = newSQLiteSource(r)
	}
	defer src.close()
	poll := r.PollInterval
	if poll <= 0 {
		poll = 250 * time.Millisecond
		if r.DB.pg {
			poll = time.Second
		}
	}
	timer := time.NewTimer(poll)
	defer timer.Stop()
	backoff := time.Duration(0)
	nextPrune := time.Time{}
	for ctx.Err() == nil {
		if time.Now().After(nextPrune) {
			r.prune(ctx, src)
			nextPrune = time.Now().Add(time.Minute)
		}
		n, err := src.round(ctx)
		if err != nil && ctx.Err() == nil {
			r.errs.Add(1)
			backoff = min(max(2*backoff, 100*time.Millisecond), 5*time.Second)
			r.logger().Error("binding: relay round failed; retrying", "error", err, "retry_in", backoff)
			if !sleep(ctx, backoff) {
				break
			}
			continue
		}
		backoff = 0
		if n >= r.batchSize() {
			continue
		}
		timer.Reset(poll)
		select {
		case <-ctx.Done():
		case <-wake:
		case <-timer.C:
		}
	}
	return nil
}

// tables returns the relay's bound tables (identifiers checked by New).
func (r *Relay) tables() []string {
	var ts []string
	for _, e := range r.entries {
		if !slices.Contains(ts, e.table) {
			ts = append(ts, e.table)
		}
	}
	return ts
}

func (r *Relay) batchSize() int {
	if r.BatchSize > 0 {
		return r.BatchSize
	}
	return DefaultBatchSize
}

func (r *Relay) prune(ctx context.Context, src source) {
	ret := r.Retention
	if ret == 0 {
		ret = DefaultRetention
	}
	if ret < 0 {
		return
	}
	n, err := src.prune(ctx, time.Now().Add(-ret))
	if err != nil {
		if ctx.Err() == nil {
			r.errs.Add(1)
			r.logger().Error("binding: dropping expired changes failed", "error", err)
		}
		return
	}
	if n > 0 {
		r.expired.Add(uint64(n))
		r.logger().Warn("binding: changes older than the retention were dropped unsent (no relay ran for that long)", "changes", n, "retention", ret)
	}
}

// change is one outbox row.
type change struct {
	id       int64
	table    string
	op       string
	old, new []byte
	created  time.Time
}

// send sends the messages of the changes, in order.
func (r *Relay) send(ctx context.Context, changes []change) error {
	for _, c := range changes {
		for _, e := range r.entries {
			if e.table != c.table {
				continue
			}
			msgs, err := e.safeMessages(c)
			if err != nil {
				r.errs.Add(1)
				r.logger().Error("binding: change dropped: its row cannot be read into the binding's type, or the binding's functions failed on it", "model", e.model, "change_id", c.id, "error", err)
				continue
			}
			if len(msgs) == 0 {
				r.skipped.Add(1)
				continue
			}
			for _, m := range msgs {
				if err := channels.ValidateGroupName(m.group); err != nil {
					r.errs.Add(1)
					r.logger().Error("binding: GroupNames returned an invalid group name; message dropped", "model", e.model, "group", m.group, "error", err)
					continue
				}
				if err := r.Layer.GroupSend(ctx, m.group, channels.Content{"text": m.text}); err != nil {
					if errors.Is(err, channels.ErrMessageTooLarge) || errors.Is(err, channels.ErrInvalidContent) || errors.Is(err, channels.ErrInvalidName) {
						// Sending it again would fail again: the message is
						// dropped, not the changes after it.
						r.errs.Add(1)
						r.logger().Error("binding: the layer refused a message; dropped", "model", e.model, "change_id", c.id, "group", m.group, "bytes", len(m.text), "error", err)
						continue
					}
					return fmt.Errorf("binding: send change %d to group %s: %w", c.id, m.group, err)
				}
				r.sent.Add(1)
			}
		}
		// Counted once its messages are sent: a change whose send failed
		// is sent again, and counted then.
		r.changes.Add(1)
		if !c.created.IsZero() {
			r.lag.Store(int64(time.Since(c.created)))
		}
	}
	return nil
}

// safeMessages returns the messages of change c, turning a panic of the
// application's GroupNames, Members or Serialize into an error.
func (e *entry) safeMessages(c change) (msgs []groupMessage, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("binding: %s: panic in GroupNames, Members or Serialize: %v", e.model, p)
		}
	}()
	return e.messages(c.op, c.old, c.new, c.id)
}

// source reads the outbox of one kind of database.
type source interface {
	// round sends one batch and returns how many changes it held.
	round(ctx context.Context) (int, error)
	prune(ctx context.Context, before time.Time) (int64, error)
	close()
}

// sqliteDeleteEvery is how often a SQLite relay deletes what it has sent
// while changes keep coming: every delete is a write, which waits for the
// application's writers and makes them wait.
const sqliteDeleteEvery = 100 * time.Millisecond

// sqliteSource reads a SQLite outbox. Writers are serialized and the
// outbox's ids are AUTOINCREMENT, so id order is commit order, and a
// reader's snapshot holds every change up to the highest id it sees: the
// relay reads past the highest id it has sent, and a goroutine of its own
// deletes up to it, at most every sqliteDeleteEvery, so that sending never
// waits for SQLite's write lock (a crash resends what was sent since the
// last delete).
type sqliteSource struct {
	r       *Relay
	owner   string
	leaseTo time.Time
	held    bool
	sent    int64 // highest id sent

	sentCh  chan int64 // to the deleter: the new highest id sent
	stop    chan struct{}
	stopped chan struct{}
}

func newSQLiteSource(r *Relay) *sqliteSource {
	s := &sqliteSource{r: r, owner: randomID(), sentCh: make(chan int64, 1), stop: make(chan struct{}), stopped: make(chan struct{})}
	go s.deleter()
	return s
}

// deleter deletes the changes sent, in batches, until close.
func (s *sqliteSource) deleter() {
	defer close(s.stopped)
	var sent, deleted int64
	ticker := time.NewTicker(sqliteDeleteEvery)
	defer ticker.Stop()
	flush := func(ctx context.Context) {
		if sent <= deleted {
			return
		}
		if _, err := s.r.DB.Exec(ctx, "DELETE FROM "+s.r.DB.prefix+"binding_outbox WHERE id <= ? AND tbl IN "+s.tableList(), sent); err != nil {
			s.r.errs.Add(1)
			s.r.logger().Warn("binding: deleting sent changes failed; retrying", "error", err)
			return
		}
		deleted = sent
	}
	for {
		select {
		case id := <-s.sentCh:
			sent = max(sent, id)
		case <-ticker.C:
			flush(context.Background())
		case <-s.stop:
			select {
			case id := <-s.sentCh:
				sent = max(sent, id)
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			flush(ctx)
			cancel()
			return
		}
	}
}

func (s *sqliteSource) lease(ctx context.Context) (bool, error) {
	now := time.Now()
	if s.held && s.leaseTo.Sub(now) > leaseTime/3*2 {
		return true, nil
	}
	until := now.Add(leaseTime)
	p := s.r.DB.prefix
	n, err := s.r.DB.Exec(ctx, "INSERT INTO "+p+"binding_lease (name, owner, until_ms) VALUES ('relay', ?, ?) "+
		"ON CONFLICT(name) DO UPDATE SET owner = excluded.owner, until_ms = excluded.until_ms "+
		"WHERE "+p+"binding_lease.until_ms < ? OR "+p+"binding_lease.owner = excluded.owner",
		s.owner, until.UnixMilli(), now.UnixMilli())
	if err != nil {
		return false, fmt.Errorf("binding: relay lease: %w", err)
	}
	was := s.held
	s.held = n > 0
	switch {
	case s.held && !was:
		s.leaseTo = until
		s.sent = 0 // another relay may have sent and deleted meanwhile
		s.r.logger().Info("binding: this relay is now the active one on the SQLite database", "db", s.r.DB.String())
	case s.held:
		s.leaseTo = until
	case was:
		s.r.logger().Warn("binding: this relay lost its lease on the SQLite database to another relay", "db", s.r.DB.String())
	}
	return s.held, nil
}

func (s *sqliteSource) tableList() string {
	return "('" + strings.Join(s.r.tables(), "', '") + "')"
}

func (s *sqliteSource) round(ctx context.Context) (int, error) {
	ok, err := s.lease(ctx)
	if err != nil || !ok {
		return 0, err
	}
	p := s.r.DB.prefix
	rows, err := s.r.DB.sqlDB.QueryContext(ctx, "SELECT id, tbl, op, old_row, new_row, created_ms FROM "+p+"binding_outbox WHERE id > ? AND tbl IN "+
		s.tableList()+" ORDER BY id LIMIT ?", s.sent, s.r.batchSize())
	if err != nil {
		return 0, fmt.Errorf("binding: read outbox: %w", err)
	}
	var batch []change
	for rows.Next() {
		var (
			c        change
			old, new *string
			ms       int64
		)
		if err := rows.Scan(&c.id, &c.table, &c.op, &old, &new, &ms); err != nil {
			_ = rows.Close()
			return 0, fmt.Errorf("binding: read outbox: %w", err)
		}
		if old != nil {
			c.old = []byte(*old)
		}
		if new != nil {
			c.new = []byte(*new)
		}
		c.created = time.UnixMilli(ms)
		batch = append(batch, c)
	}
	if err := rows.Err(); err != nil {
		_ = rows.Close()
		return 0, fmt.Errorf("binding: read outbox: %w", err)
	}
	_ = rows.Close()
	if len(batch) > 0 {
		if err := s.r.send(ctx, batch); err != nil {
			return 0, err
		}
		s.sent = batch[len(batch)-1].id
		select {
		case <-s.sentCh:
		default:
		}
		s.sentCh <- s.sent
	}
	return len(batch), nil
}

func (s *sqliteSource) prune(ctx context.Context, before time.Time) (int64, error) {
	return s.r.DB.Exec(ctx, "DELETE FROM "+s.r.DB.prefix+"binding_outbox WHERE created_ms < ?", before.UnixMilli())
}

func (s *sqliteSource) close() {
	close(s.stop)
	<-s.stopped
	if s.held {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = s.r.DB.Exec(ctx, "DELETE FROM "+s.r.DB.prefix+"binding_lease WHERE name = 'relay' AND owner = ?", s.owner)
	}
}

// pgSource reads a PostgreSQL outbox on a connection of its own, and
// listens for the triggers' notifications on another.
type pgSource struct {
	r    *Relay
	wake chan struct{}
	conn *pgx.Conn
}

func (s *pgSource) listen(ctx context.Context) {
	backoff := time.Duration(0)
	for ctx.Err() == nil {
		c, err := s.r.DB.connectRelay(ctx)
		if err == nil {
			_, err = c.Exec(ctx, "LISTEN "+pgx.Identifier{s.r.DB.notifyCh}.Sanitize())
			if err == nil {
				backoff = 0
				s.poke() // notifications may have been missed while not listening
				for {
					if _, err = c.WaitForNotification(ctx); err != nil {
						break
					}
					s.poke()
				}
			}
			sqldb.CloseConn(c)
		}
		if ctx.Err() != nil {
			return
		}
		backoff = min(max(2*backoff, 200*time.Millisecond), 5*time.Second)
		s.r.logger().Warn("binding: LISTEN connection lost; polling meanwhile", "error", err, "retry_in", backoff)
		if !sleep(ctx, backoff) {
			return
		}
	}
}

func (s *pgSource) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// claim selects, and locks, the oldest pending change of each row that no
// other relay holds (skipping locked ones), then every pending change of
// those rows in id order. Changes to one row are written under that row's
// lock, so their ids follow their commit order; taking only rows whose
// oldest change is free keeps one row's changes with one relay at a time.
const pgClaim = `WITH heads AS (
	SELECT o.tbl, o.row_key FROM %[1]s o
	WHERE o.tbl = ANY($3)
	AND NOT EXISTS (SELECT 1 FROM %[1]s p WHERE p.tbl = o.tbl AND p.row_key = o.row_key AND p.id < o.id)
	ORDER BY o.id LIMIT $1 FOR UPDATE SKIP LOCKED
)
SELECT o.id, o.tbl, o.op, o.old_row::text, o.new_row::text, o.created_at
FROM %[1]s o JOIN heads h ON h.tbl = o.tbl AND h.row_key = o.row_key
ORDER BY o.id LIMIT $2 FOR UPDATE OF o`

func (s *pgSource) round(ctx context.Context) (int, error) {
	if s.conn == nil || s.conn.IsClosed() {
		c, err := s.r.DB.connectRelay(ctx)
		if err != nil {
			return 0, fmt.Errorf("binding: connect: %w", err)
		}
		s.conn = c
	}
	n, err := s.claimAndSend(ctx)
	if err != nil && s.conn.PgConn().TxStatus() != 'I' {
		sqldb.CloseConn(s.conn)
		s.conn = nil
	}
	return n, err
}

func (s *pgSource) claimAndSend(ctx context.Context) (int, error) {
	outbox := s.r.DB.prefix + "binding_outbox"
	tx, err := s.conn.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("binding: begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	size := s.r.batchSize()
	rows, err := tx.Query(ctx, fmt.Sprintf(pgClaim, outbox), size, size, s.r.tables())
	if err != nil {
		return 0, fmt.Errorf("binding: claim changes: %w", err)
	}
	var (
		batch []change
		ids   []int64
	)
	for rows.Next() {
		var (
			c        change
			old, new *string
		)
		if err := rows.Scan(&c.id, &c.table, &c.op, &old, &new, &c.created); err != nil {
			rows.Close()
			return 0, fmt.Errorf("binding: read outbox: %w", err)
		}
		if old != nil {
			c.old = []byte(*old)
		}
		if new != nil {
			c.new = []byte(*new)
		}
		batch = append(batch, c)
		ids = append(ids, c.id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("binding: claim changes: %w", err)
	}
	if len(batch) == 0 {
		return 0, nil
	}
	if err := s.r.send(ctx, batch); err != nil {
		return 0, err
	}
	wctx := context.WithoutCancel(ctx)
	if _, err := tx.Exec(wctx, "DELETE FROM "+outbox+" WHERE id = ANY($1)", ids); err != nil {
		return 0, fmt.Errorf("binding: delete sent changes: %w", err)
	}
	if err := tx.Commit(wctx); err != nil {
		return 0, fmt.Errorf("binding: delete sent changes: %w", err)
	}
	return len(batch), nil
}

func (s *pgSource) prune(ctx context.Context, before time.Time) (int64, error) {
	outbox := s.r.DB.prefix + "binding_outbox"
	return s.r.DB.Exec(ctx, "DELETE FROM "+outbox+" WHERE id IN (SELECT id FROM "+outbox+" WHERE created_at < ? ORDER BY id LIMIT 100000 FOR UPDATE SKIP LOCKED)", before)
}

func (s *pgSource) close() {
	if s.conn != nil {
		sqldb.CloseConn(s.conn)
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func randomID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
