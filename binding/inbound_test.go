package binding_test

import (
	"context"
	"testing"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/binding"
	"github.com/gochannels/channels/session"
)

// TestMassAssignment: inbound create and update write only the bound
// fields: keys naming excluded fields, the primary key and unknown fields
// are not written, with Fields as with Exclude.
func TestMassAssignment(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		for _, decl := range []binding.Binding[Item]{
			{Fields: []string{"title", "n"}},
			{Exclude: []string{"secret", "admin_only", "price", "updated"}},
		} {
			e.raw("DROP TABLE IF EXISTS items")
			e.createItems()
			decl.HasPermission = func(context.Context, session.User, string, any) bool { return true }
			b := itemBinding(t, decl)
			srv := startServer(t, e, map[string]channels.Consumer{"items": b.Consumer(e.db)})
			ws := srv.dial(t, "")
			ws.SendJSON(map[string]any{"stream": "items", "payload": map[string]any{"action": "create", "pk": 777, "data": map[string]any{
				"id": 999, "title": "x", "n": 5, "secret": "planted", "admin_only": true, "price": "1.00", "bogus": 1, "password": "p",
			}}})
			waitFor(t, "the create", func() bool { return b.Stats().Created == 1 })
			if got := e.queryString("SELECT id || ' ' || title || ' ' || n || ' ' || secret || ' ' || CASE WHEN admin_only THEN 'admin' ELSE 'all' END || ' ' || COALESCE(price, 0) FROM items"); got != "1 x 5  all 0" {
				t.Fatalf("created row %q, want id 1, title x, n 5 and nothing else set", got)
			}
			ws.SendJSON(map[string]any{"stream": "items", "payload": map[string]any{"action": "update", "pk": 1, "data": map[string]any{
				"id": 555, "title": "y", "secret": "planted", "admin_only": true, "price": "2.00", "bogus": 2,
			}}})
			waitFor(t, "the update", func() bool { return b.Stats().Updated == 1 })
			if got := e.queryString("SELECT id || ' ' || title || ' ' || n || ' ' || secret || ' ' || CASE WHEN admin_only THEN 'admin' ELSE 'all' END || ' ' || COALESCE(price, 0) FROM items"); got != "1 y 5  all 0" {
				t.Fatalf("updated row %q, want only the title changed", got)
			}
			if n := e.queryInt("SELECT COUNT(*) FROM items"); n != 1 {
				t.Fatalf("%d rows", n)
			}
			ws.Close(1000, "")
		}
	})
}

// TestInboundRefusals: an unknown action, a malformed request, a refused
// permission and an update of a missing row leave the data untouched, are
// counted, and are answered on the stream when ReplyErrors is set; the
// user comes from the channel session.
func TestInboundRefusals(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		e.createItems()
		e.raw("INSERT INTO items (title, n) VALUES ('keep', 1)")
		var seen []string
		b := itemBinding(t, binding.Binding[Item]{
			ReplyErrors: true,
			HasPermission: func(ctx context.Context, u session.User, action string, pk any) bool {
				seen = append(seen, u.ID()+":"+action)
				return action != "delete" || u.ID() == "admin"
			},
		})
		srv := startServer(t, e, map[string]channels.Consumer{"items": b.Consumer(e.db)})
		ws := srv.dial(t, "ada")
		cases := []struct {
			frame, reason string
		}{
			{`{"action":"frobnicate","pk":1}`, binding.ReasonBadAction},
			{`{"action":"update","pk":1,"data":"title"}`, binding.ReasonMalformed},
			{`{"action":"update","data":{"title":"z"}}`, binding.ReasonMalformed},
			{`{"action":"update","pk":"one","data":{"title":"z"}}`, binding.ReasonMalformed},
			{`{"action":"update","pk":1,"data":{"n":"many"}}`, binding.ReasonMalformed},
			{`{"action":"delete","pk":1}`, binding.ReasonDenied},
			{`{"action":"update","pk":42,"data":{"title":"z"}}`, binding.ReasonNotFound},
		}
		for _, c := range cases {
			ws.SendText(`{"stream":"items","payload":` + c.frame + `}`)
			m := receive(t, ws)
			if m.Stream != "items" || m.Payload.Error != c.reason {
				t.Fatalf("%s: got %+v, want error %q", c.frame, m, c.reason)
			}
		}
		if got := e.queryString("SELECT title || ' ' || n FROM items"); got != "keep 1" {
			t.Fatalf("row %q after refused requests", got)
		}
		want := binding.InboundStats{BadAction: 1, Malformed: 4, Denied: 1, NotFound: 1}
		if st := b.Stats(); st != want {
			t.Fatalf("stats %+v, want %+v", st, want)
		}
		// Checked: the well-formed requests (the bad field value is found
		// after the permission check).
		if len(seen) != 3 || seen[0] != "ada:update" || seen[1] != "ada:delete" || seen[2] != "ada:update" {
			t.Fatalf("HasPermission saw %v", seen)
		}

		// The admin may delete; a socket without login is anonymous.
		adm := srv.dial(t, "admin")
		adm.SendText(`{"stream":"items","payload":{"action":"delete","pk":1}}`)
		waitFor(t, "the delete", func() bool { return e.queryInt("SELECT COUNT(*) FROM items") == 0 })
		anon := srv.dial(t, "")
		anon.SendText(`{"stream":"items","payload":{"action":"delete","pk":1}}`)
		if m := receive(t, anon); m.Payload.Error != binding.ReasonDenied {
			t.Fatalf("anonymous delete: %+v", m.Payload)
		}
		if seen[len(seen)-1] != ":delete" {
			t.Fatalf("anonymous user seen as %q", seen[len(seen)-1])
		}
	})
}

// TestInboundSilentRefusal: without ReplyErrors, a refused request is
// counted and the sender hears nothing; without HasPermission every
// request is refused.
func TestInboundSilentRefusal(t *testing.T) {
	e := sqliteEnv(t)
	e.createItems()
	b := itemBinding(t, binding.Binding[Item]{})
	srv := startServer(t, e, map[string]channels.Consumer{"items": b.Consumer(e.db)})
	ws := srv.dial(t, "admin")
	ws.SendText(`{"stream":"items","payload":{"action":"create","data":{"title":"x"}}}`)
	waitFor(t, "the refusal", func() bool { return b.Stats().Denied == 1 })
	ws.ReceiveNothing(200 * time.Millisecond)
	if n := e.queryInt("SELECT COUNT(*) FROM items"); n != 0 {
		t.Fatalf("%d rows", n)
	}
}

// TestInboundNewPK: with NewPK the binding chooses the key of a created
// row (a text key here), and pk in data is still ignored.
func TestInboundNewPK(t *testing.T) {
	type Note struct {
		Key  string `json:"key"`
		Body string `json:"body"`
	}
	eachDB(t, func(t *testing.T, e *env) {
		e.raw("CREATE TABLE notes (key TEXT PRIMARY KEY, body TEXT NOT NULL DEFAULT '')")
		b := mustNew(t, binding.Binding[Note]{
			Model: "app.note", Stream: "notes", Table: "notes", PK: "key",
			Fields:        []string{binding.AllFields},
			GroupNames:    func(Note) []string { return []string{"notes"} },
			HasPermission: func(context.Context, session.User, string, any) bool { return true },
			NewPK:         func() any { return "n-1" },
		})
		srv := startServer(t, e, map[string]channels.Consumer{"notes": b.Consumer(e.db)})
		startRelay(t, e, srv, b)
		ws := srv.dial(t, "", "notes")
		ws.SendText(`{"stream":"notes","payload":{"action":"create","data":{"key":"mine","body":"hello"}}}`)
		m := receive(t, ws)
		if m.Payload.Action != "create" || m.Payload.PK != "n-1" || m.Payload.Data["body"] != "hello" || len(m.Payload.Data) != 1 {
			t.Fatalf("got %+v", m.Payload)
		}
	})
}
