package binding

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync/atomic"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/generic"
	"github.com/gochannels/channels/internal/sqldb"
	"github.com/gochannels/channels/session"
)

// The reasons an inbound request is refused, sent as "error" when
// Binding.ReplyErrors is set.
const (
	ReasonDenied    = "denied"     // HasPermission said no (or is nil)
	ReasonBadAction = "bad_action" // not create, update or delete
	ReasonMalformed = "malformed"  // not a JSON object, data not an object, missing or bad pk, bad field value
	ReasonNotFound  = "not_found"  // update of a row that does not exist
	ReasonFailed    = "failed"     // the database refused the write
)

// InboundStats counts what a binding's inbound consumer did.
type InboundStats struct {
	Created, Updated, Deleted uint64 // requests applied
	Denied                    uint64 // refused by HasPermission
	BadAction                 uint64 // unknown action
	Malformed                 uint64 // malformed payload or value
	NotFound                  uint64 // update of a missing row
	Failed                    uint64 // database errors
}

func (a InboundStats) add(b InboundStats) InboundStats {
	return InboundStats{
		Created: a.Created + b.Created, Updated: a.Updated + b.Updated, Deleted: a.Deleted + b.Deleted,
		Denied: a.Denied + b.Denied, BadAction: a.BadAction + b.BadAction, Malformed: a.Malformed + b.Malformed,
		NotFound: a.NotFound + b.NotFound, Failed: a.Failed + b.Failed,
	}
}

type inboundStats struct {
	created, updated, deleted                      atomic.Uint64
	denied, badAction, malformed, notFound, failed atomic.Uint64
}

func (s *inboundStats) snapshot() InboundStats {
	return InboundStats{
		Created: s.created.Load(), Updated: s.updated.Load(), Deleted: s.deleted.Load(),
		Denied: s.denied.Load(), BadAction: s.badAction.Load(), Malformed: s.malformed.Load(),
		NotFound: s.notFound.Load(), Failed: s.failed.Load(),
	}
}

func (s *inboundStats) counter(reason string) *atomic.Uint64 {
	switch reason {
	case ReasonDenied:
		return &s.denied
	case ReasonBadAction:
		return &s.badAction
	case ReasonMalformed:
		return &s.malformed
	case ReasonNotFound:
		return &s.notFound
	}
	return &s.failed
}

// Stats returns the counters of the binding's inbound consumers.
func (b *Binding[T]) Stats() InboundStats {
	if b.c == nil {
		return InboundStats{}
	}
	return b.c.e.inbound.snapshot()
}

// Consumer returns the consumer of the binding's stream for a
// generic.Demultiplexer (Consumers: {b.Stream: b.Consumer(db)}). It handles
// "websocket.receive" messages whose text is a request
//
//	{"action": "create"|"update"|"delete", "pk": pk, "data": {...}}
//
// and ignores the others (connect and disconnect). The user is
// session.UserFrom(ctx): give the demultiplexer ChannelSessionUser or
// HTTPUser. When HasPermission allows it:
//
//   - create inserts a row with the allowed fields (Fields, or all but
//     Exclude) that data holds; the primary key comes from NewPK or the
//     database, never from the request;
//   - update sets the allowed fields data holds on the row with key pk; a
//     missing row is refused with "not_found";
//   - delete deletes the row with key pk (a missing row is not an error).
//
// Keys of data that are not allowed (excluded or unknown fields, the
// primary key) are never written. The writes go to the table, so the
// triggers report them to the relay like any other write, and the relays
// of this process on db are woken at once. A refused request leaves the
// data untouched, is logged and counted (Stats), and is answered on the
// stream when ReplyErrors is set. The consumer returns an error only when
// the database fails.
func (b *Binding[T]) Consumer(db *DB) channels.Consumer {
	return channels.ConsumerFunc(func(ctx context.Context, m *channels.Message) error {
		if m.Channel != "websocket.receive" {
			return nil
		}
		if b.c == nil {
			return fmt.Errorf("%w: not created with binding.New", ErrInvalidBinding)
		}
		return b.inbound(ctx, db, m)
	})
}

type request struct {
	Action string                     `json:"action"`
	PK     json.RawMessage            `json:"pk"`
	Data   map[string]json.RawMessage `json:"data"`
}

// refusal is a refused request.
type refusal struct {
	reason, detail string
}

func (r *refusal) Error() string { return r.reason + ": " + r.detail }

func refuse(reason, format string, args ...any) *refusal {
	return &refusal{reason, fmt.Sprintf(format, args...)}
}

func (b *Binding[T]) inbound(ctx context.Context, db *DB, m *channels.Message) error {
	var req request
	var pk any
	err := func() error {
		text, ok := m.Content["text"].(string)
		if !ok {
			return refuse(ReasonMalformed, "the request is not JSON text")
		}
		d := json.NewDecoder(strings.NewReader(text))
		if err := d.Decode(&req); err != nil {
			return refuse(ReasonMalformed, "the request is not a JSON object with an object \"data\": %v", err)
		}
		switch req.Action {
		case ActionCreate, ActionUpdate, ActionDelete:
		default:
			return refuse(ReasonBadAction, "unknown action %q", req.Action)
		}
		if req.Action != ActionCreate {
			raw := bytes.TrimSpace(req.PK)
			if len(raw) == 0 || string(raw) == "null" {
				return refuse(ReasonMalformed, "%s needs a pk", req.Action)
			}
			v := reflect.New(b.c.pk.typ).Elem()
			if err := setField(v, raw); err != nil {
				return refuse(ReasonMalformed, "pk %s: %v", raw, err)
			}
			pk = v.Interface()
		}
		user := session.UserFrom(ctx)
		if b.HasPermission == nil || !b.HasPermission(ctx, user, req.Action, pk) {
			return refuse(ReasonDenied, "permission denied to user %q", user.ID())
		}
		switch req.Action {
		case ActionCreate:
			return b.create(ctx, db, req.Data)
		case ActionUpdate:
			return b.update(ctx, db, pk, req.Data)
		default:
			return b.remove(ctx, db, pk)
		}
	}()
	if err == nil {
		db.Notify()
		return nil
	}
	var r *refusal
	if !errors.As(err, &r) {
		r = &refusal{ReasonFailed, err.Error()}
	}
	b.c.e.inbound.counter(r.reason).Add(1)
	b.c.e.log.Warn("binding: inbound request refused", "model", b.Model, "stream", b.Stream,
		"action", req.Action, "reason", r.reason, "detail", r.detail, "reply_channel", m.ReplyChannel)
	if b.ReplyErrors {
		if mx := generic.MultiplexerFrom(ctx); mx != nil {
			reply := map[string]any{"action": req.Action, "pk": pk, "error": r.reason, "detail": r.detail}
			if serr := mx.Send(ctx, reply); serr != nil {
				return errors.Join(serr, failure(r))
			}
		}
	}
	return failure(r)
}

// failure is what the consumer returns: database failures are errors of
// the consumer; refusals of a client's request are not.
func failure(r *refusal) error {
	if r.reason == ReasonFailed {
		return fmt.Errorf("binding: %s", r.detail)
	}
	return nil
}

// values converts the allowed keys of data to the fields' Go types and
// returns their columns and values, in field order. Other keys are
// ignored.
func (b *Binding[T]) values(data map[string]json.RawMessage) ([]string, []any, error) {
	var v T
	rv := reflect.ValueOf(&v).Elem()
	var cols []string
	var vals []any
	for _, f := range b.c.sent {
		raw, ok := data[f.name]
		if !ok {
			continue
		}
		if _, allowed := b.c.allowed[f.name]; !allowed {
			continue
		}
		fv := rv.FieldByIndex(f.index)
		if err := setField(fv, raw); err != nil {
			return nil, nil, refuse(ReasonMalformed, "field %s: %v", f.name, err)
		}
		cols = append(cols, quote(f.column))
		vals = append(vals, fv.Interface())
	}
	return cols, vals, nil
}

func (b *Binding[T]) create(ctx context.Context, db *DB, data map[string]json.RawMessage) error {
	cols, vals, err := b.values(data)
	if err != nil {
		return err
	}
	if b.NewPK != nil {
		cols = append([]string{quote(b.c.pk.column)}, cols...)
		vals = append([]any{b.NewPK()}, vals...)
	}
	q := "INSERT INTO " + quote(b.Table) + " DEFAULT VALUES"
	if len(cols) > 0 {
		q = "INSERT INTO " + quote(b.Table) + " (" + strings.Join(cols, ", ") + ") VALUES (" + strings.TrimSuffix(strings.Repeat("?, ", len(cols)), ", ") + ")"
	}
	if _, err := db.Exec(ctx, q, vals...); err != nil {
		return fmt.Errorf("create in %s: %w", b.Table, err)
	}
	b.c.e.inbound.created.Add(1)
	return nil
}

func (b *Binding[T]) update(ctx context.Context, db *DB, pk any, data map[string]json.RawMessage) error {
	cols, vals, err := b.values(data)
	if err != nil {
		return err
	}
	where := " WHERE " + quote(b.c.pk.column) + " = ?"
	if len(cols) == 0 {
		// Nothing this binding may write: the row is left as it is.
		var one int
		err := db.queryRow(ctx, "SELECT 1 FROM "+quote(b.Table)+where, pk).Scan(&one)
		if sqldb.IsNoRows(err) {
			return refuse(ReasonNotFound, "no row with pk %v", pk)
		}
		if err != nil {
			return fmt.Errorf("update in %s: %w", b.Table, err)
		}
		b.c.e.inbound.updated.Add(1)
		return nil
	}
	set := make([]string, len(cols))
	for i, c := range cols {
		set[i] = c + " = ?"
	}
	n, err := db.Exec(ctx, "UPDATE "+quote(b.Table)+" SET "+strings.Join(set, ", ")+where, append(vals, pk)...)
	if err != nil {
		return fmt.Errorf("update in %s: %w", b.Table, err)
	}
	if n == 0 {
		return refuse(ReasonNotFound, "no row with pk %v", pk)
	}
	b.c.e.inbound.updated.Add(1)
	return nil
}

func (b *Binding[T]) remove(ctx context.Context, db *DB, pk any) error {
	if _, err := db.Exec(ctx, "DELETE FROM "+quote(b.Table)+" WHERE "+quote(b.c.pk.column)+" = ?", pk); err != nil {
		return fmt.Errorf("delete in %s: %w", b.Table, err)
	}
	b.c.e.inbound.deleted.Add(1)
	return nil
}
