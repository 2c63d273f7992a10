package binding_test

import (
	"context"
	"database/sql/driver"
	"encoding/hex"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/binding"
	"github.com/gochannels/channels/session"
)

// UUID is a UUID the way UUID packages make it: text on the wire and in
// the database.
type UUID [16]byte

// MarshalText returns the UUID's canonical text.
func (u UUID) MarshalText() ([]byte, error) {
	h := hex.EncodeToString(u[:])
	return []byte(h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]), nil
}

// UnmarshalText reads the canonical text.
func (u *UUID) UnmarshalText(b []byte) error {
	h := strings.ReplaceAll(string(b), "-", "")
	if len(h) != 32 {
		return fmt.Errorf("bad UUID %q", b)
	}
	_, err := hex.Decode(u[:], []byte(h))
	return err
}

// String returns the canonical text.
func (u UUID) String() string { b, _ := u.MarshalText(); return string(b) }

// Value stores the UUID as text.
func (u UUID) Value() (driver.Value, error) { return u.String(), nil }

// Event has the types the wire carries as strings (times, UUIDs,
// decimals) and a boolean SQLite stores as 0/1.
type Event struct {
	ID     int64      `json:"id"`
	At     time.Time  `json:"at"`
	Ref    UUID       `json:"ref"`
	Amount string     `json:"amount"` // a NUMERIC column
	Rate   *big.Float `json:"rate" db:"-"`
	Done   bool       `json:"done"`
	Note   *string    `json:"note"`
}

func (e *env) createEvents() {
	e.t.Helper()
	if e.pg {
		e.raw("CREATE TABLE events (id bigserial PRIMARY KEY, at timestamptz NOT NULL, ref uuid NOT NULL, amount numeric(12,2) NOT NULL, done boolean NOT NULL DEFAULT false, note text)")
		return
	}
	e.raw("CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, at TIMESTAMP NOT NULL, ref TEXT NOT NULL, amount NUMERIC NOT NULL, done BOOLEAN NOT NULL DEFAULT 0, note TEXT)")
}

// TestTypesOnTheWire: a row created through the inbound consumer comes
// back in the relay's message with its time, UUID and decimal as strings,
// its boolean as a boolean (SQLite stores 0/1), a NULL as null, and a
// member value.
func TestTypesOnTheWire(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		e.createEvents()
		b := mustNew(t, binding.Binding[Event]{
			Model: "app.event", Stream: "events", Table: "events",
			Fields:        []string{binding.AllFields},
			GroupNames:    func(Event) []string { return []string{"events"} },
			HasPermission: func(context.Context, session.User, string, any) bool { return true },
			Members: map[string]func(Event) any{
				"at.year": func(ev Event) any { return ev.At.Year() },
				"done":    func(Event) any { return "never replaces a field" },
			},
		})
		srv := startServer(t, e, map[string]channels.Consumer{"events": b.Consumer(e.db)})
		startRelay(t, e, srv, b)
		ws := srv.dial(t, "", "events")
		ref := "0b9f6d5e-8f1c-4c2a-9d3e-2a7b1c4d5e6f"
		ws.SendText(`{"stream":"events","payload":{"action":"create","data":{"at":"2026-03-04T05:06:07.5Z","ref":"` + ref + `","amount":"12.50","done":true}}}`)
		m := receive(t, ws)
		d := m.Payload.Data
		if m.Payload.Action != "create" {
			t.Fatalf("got %+v", m.Payload)
		}
		if at, _ := d["at"].(string); at == "" {
			t.Fatalf("at = %#v, want a string", d["at"])
		} else if got, err := time.Parse(time.RFC3339Nano, at); err != nil || !got.Equal(time.Date(2026, 3, 4, 5, 6, 7, 5e8, time.UTC)) {
			t.Fatalf("at = %q (%v)", at, err)
		}
		if d["ref"] != ref {
			t.Fatalf("ref = %#v", d["ref"])
		}
		if a, ok := d["amount"].(string); !ok || (a != "12.5" && a != "12.50") {
			t.Fatalf("amount = %#v, want the decimal as a string", d["amount"])
		}
		if d["done"] != true {
			t.Fatalf("done = %#v, want true", d["done"])
		}
		if v, ok := d["note"]; !ok || v != nil {
			t.Fatalf("note = %#v, want null", v)
		}
		if d["at__year"] != float64(2026) {
			t.Fatalf("at__year = %#v", d["at__year"])
		}
		e.raw("UPDATE events SET done = ?", false)
		if m := receive(t, ws); m.Payload.Data["done"] != false {
			t.Fatalf("done = %#v after the update, want false", m.Payload.Data["done"])
		}
	})
}

// TestDecode: row images in the forms SQLite and PostgreSQL record.
func TestDecode(t *testing.T) {
	b := mustNew(t, binding.Binding[Event]{
		Model: "app.event", Stream: "events", Table: "events", Fields: []string{binding.AllFields},
		GroupNames: func(Event) []string { return nil },
	})
	want := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	for _, img := range []string{
		`{"id":1,"at":"2026-03-04 05:06:07+00:00","ref":"0b9f6d5e-8f1c-4c2a-9d3e-2a7b1c4d5e6f","amount":12.5,"done":1,"note":null}`,
		`{"id":"1","at":"2026-03-04T05:06:07+00:00","ref":"0b9f6d5e-8f1c-4c2a-9d3e-2a7b1c4d5e6f","amount":"12.5","done":true}`,
		`{"id":1,"at":"2026-03-04 05:06:07","ref":"0b9f6d5e-8f1c-4c2a-9d3e-2a7b1c4d5e6f","amount":12.5,"done":"1","extra":[1]}`,
	} {
		ev, err := b.Decode([]byte(img))
		if err != nil {
			t.Fatalf("%s: %v", img, err)
		}
		if ev.ID != 1 || !ev.At.Equal(want) || ev.Ref.String() != "0b9f6d5e-8f1c-4c2a-9d3e-2a7b1c4d5e6f" || ev.Amount != "12.5" || !ev.Done || ev.Note != nil {
			t.Fatalf("%s: decoded %+v", img, ev)
		}
	}
	if _, err := b.Decode([]byte(`{"id":1,"done":"maybe"}`)); err == nil {
		t.Fatal("a boolean column holding \"maybe\" decoded")
	}
	if _, err := b.Decode([]byte(`{"at":"yesterday"}`)); err == nil {
		t.Fatal("a time column holding \"yesterday\" decoded")
	}
}

// TestPayload: the payload of a value, with Serialize suppressing some.
func TestPayload(t *testing.T) {
	b := mustNew(t, binding.Binding[Item]{
		Model: "board.item", Stream: "items", Table: "items", Exclude: []string{"secret"},
		GroupNames: itemGroups,
		Serialize: func(action string, it Item, data map[string]any) map[string]any {
			if it.Title == "" {
				return nil
			}
			return data
		},
	})
	p, ok := b.Payload("update", Item{ID: 3, Title: "x", Secret: "s"})
	if !ok || p.PK != int64(3) || p.Model != "board.item" || p.Action != "update" {
		t.Fatalf("payload %+v", p)
	}
	if _, has := p.Data["secret"]; has {
		t.Fatal("an excluded field was serialized")
	}
	if _, has := p.Data["id"]; has {
		t.Fatal("the pk is in data")
	}
	if _, ok := b.Payload("update", Item{ID: 4}); ok {
		t.Fatal("a payload Serialize suppressed was returned")
	}
}
