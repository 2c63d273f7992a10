package binding_test

import (
	"context"
	"errors"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/binding"
	"github.com/gochannels/channels/session"
)

// userBinding is the spec's binding on the user model, group "users".
func userBinding(t *testing.T, fields, exclude []string) *binding.Binding[User] {
	return mustNew(t, binding.Binding[User]{
		Model: "auth.user", Stream: "users", Table: "users",
		Fields: fields, Exclude: exclude,
		GroupNames:    func(User) []string { return []string{"users"} },
		HasPermission: func(context.Context, session.User, string, any) bool { return true },
	})
}

func keys(m map[string]any) []string {
	return slices.Sorted(maps.Keys(m))
}

// TestOutboundCreateFields: creating a user sends exactly one "create" with
// the pk and the four bound fields (spec §4).
func TestOutboundCreateFields(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		e.createUsers()
		b := userBinding(t, []string{"username", "email", "password", "last_name"}, nil)
		srv := startServer(t, e, nil)
		startRelay(t, e, srv, b)
		ws := srv.dial(t, "", "users")
		if _, err := e.db.Exec(context.Background(), "INSERT INTO users (username, email) VALUES (?, ?)", "test", "test@test.com"); err != nil {
			t.Fatal(err)
		}
		e.db.Notify()
		m := receive(t, ws)
		id := e.queryInt("SELECT id FROM users WHERE username = 'test'")
		if m.Stream != "users" || m.Payload.Action != "create" || m.Payload.Model != "auth.user" || pkOf(t, m) != id || m.Payload.ChangeID == 0 {
			t.Fatalf("got %+v, want create of auth.user pk %d with a change_id", m, id)
		}
		want := map[string]any{"username": "test", "email": "test@test.com", "password": "", "last_name": ""}
		if !maps.Equal(m.Payload.Data, want) {
			t.Fatalf("data %v, want %v", m.Payload.Data, want)
		}
		ws.ReceiveNothing(200 * time.Millisecond)
	})
}

// TestOutboundCreateExclude: with Exclude, data holds every other field.
func TestOutboundCreateExclude(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		e.createUsers()
		b := userBinding(t, nil, []string{"first_name", "last_name"})
		srv := startServer(t, e, nil)
		startRelay(t, e, srv, b)
		ws := srv.dial(t, "", "users")
		e.raw("INSERT INTO users (username, email, first_name, last_name) VALUES ('test', 'test@test.com', 'Ada', 'Lovelace')")
		m := receive(t, ws)
		if m.Payload.Action != "create" {
			t.Fatalf("got %+v", m)
		}
		if got := keys(m.Payload.Data); !slices.Equal(got, []string{"email", "password", "username"}) {
			t.Fatalf("data keys %v, want email, password, username", got)
		}
		ws.ReceiveNothing(200 * time.Millisecond)
	})
}

// TestNeitherFieldsNorExclude: a binding with neither is refused when it
// is created, and so is one with both, or naming a field the type lacks.
func TestNeitherFieldsNorExclude(t *testing.T) {
	base := binding.Binding[User]{
		Model: "auth.user", Stream: "users", Table: "users",
		GroupNames: func(User) []string { return []string{"users"} },
	}
	cases := map[string]func(b *binding.Binding[User]){
		"neither":         func(b *binding.Binding[User]) {},
		"both":            func(b *binding.Binding[User]) { b.Fields = []string{"username"}; b.Exclude = []string{"email"} },
		"unknown field":   func(b *binding.Binding[User]) { b.Fields = []string{"nickname"} },
		"unknown exclude": func(b *binding.Binding[User]) { b.Exclude = []string{"nickname"} },
		"all plus more":   func(b *binding.Binding[User]) { b.Fields = []string{binding.AllFields, "email"} },
		"no groups":       func(b *binding.Binding[User]) { b.Fields = []string{"email"}; b.GroupNames = nil },
		"no model":        func(b *binding.Binding[User]) { b.Fields = []string{"email"}; b.Model = "" },
		"bad table":       func(b *binding.Binding[User]) { b.Fields = []string{"email"}; b.Table = "users; DROP" },
		"no pk field":     func(b *binding.Binding[User]) { b.Fields = []string{"email"}; b.PK = "uid" },
	}
	for name, change := range cases {
		b := base
		change(&b)
		if _, err := binding.New(b); !errors.Is(err, binding.ErrInvalidBinding) {
			t.Errorf("%s: New returned %v, want ErrInvalidBinding", name, err)
		}
	}
	b := base
	b.Fields = []string{binding.AllFields}
	if _, err := binding.New(b); err != nil {
		t.Fatalf("AllFields: %v", err)
	}
	// A relay refuses a binding not made by New.
	r := &binding.Relay{DB: &binding.DB{}, Layer: nil, Bindings: []binding.Registration{&b}}
	if err := r.Run(context.Background()); err == nil {
		t.Fatal("a relay without a layer ran")
	}
}

// TestOutboundUpdateAllFields: with AllFields an update of the username
// sends one "update" with the new username, and every field but the pk.
func TestOutboundUpdateAllFields(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		e.createUsers()
		e.raw("INSERT INTO users (username, email) VALUES ('test', 'test@test.com')")
		b := userBinding(t, []string{binding.AllFields}, nil)
		srv := startServer(t, e, nil)
		startRelay(t, e, srv, b)
		ws := srv.dial(t, "", "users")
		e.raw("UPDATE users SET username = 'test_updated' WHERE username = 'test'")
		m := receive(t, ws) // the insert came before Install: only the update is reported
		if m.Payload.Action != "update" || m.Payload.Data["username"] != "test_updated" || m.Payload.Data["email"] != "test@test.com" {
			t.Fatalf("got %+v, want update with username test_updated", m)
		}
		if got := keys(m.Payload.Data); !slices.Equal(got, []string{"email", "first_name", "last_name", "password", "username"}) {
			t.Fatalf("data keys %v", got)
		}
		ws.ReceiveNothing(200 * time.Millisecond)
	})
}

// TestOutboundDelete: deleting sends one "delete" with the pk and the data
// of the row as it was.
func TestOutboundDelete(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		e.createUsers()
		b := userBinding(t, []string{"username"}, nil)
		srv := startServer(t, e, nil)
		r := startRelay(t, e, srv, b)
		e.raw("INSERT INTO users (username, email) VALUES ('test', 'test@test.com')")
		waitFor(t, "the create to be relayed", func() bool { return r.Stats().Changes == 1 })
		ws := srv.dial(t, "", "users")
		e.raw("DELETE FROM users WHERE username = 'test'")
		m := receive(t, ws)
		if m.Payload.Action != "delete" || pkOf(t, m) != 1 || !maps.Equal(m.Payload.Data, map[string]any{"username": "test"}) {
			t.Fatalf("got %+v, want delete pk 1 username test", m)
		}
		ws.ReceiveNothing(200 * time.Millisecond)
	})
}

// TestInboundCreate: a create frame makes one user with those values; the
// client, in no group, receives nothing.
func TestInboundCreate(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		e.createUsers()
		b := userBinding(t, []string{"username", "email"}, nil)
		srv := startServer(t, e, map[string]channels.Consumer{"users": b.Consumer(e.db)})
		startRelay(t, e, srv, b)
		ws := srv.dial(t, "")
		ws.SendText(`{"stream":"users","payload":{"action":"create","data":{"username":"test_inbound","email":"test@user_steam.com"}}}`)
		waitFor(t, "the user", func() bool { return e.queryInt("SELECT COUNT(*) FROM users") == 1 })
		if got := e.queryString("SELECT username || ' ' || email FROM users"); got != "test_inbound test@user_steam.com" {
			t.Fatalf("row %q", got)
		}
		ws.ReceiveNothing(300 * time.Millisecond)
		if st := b.Stats(); st.Created != 1 {
			t.Fatalf("stats %+v", st)
		}
	})
}

// TestInboundUpdateFields: an update writes only the bound fields: with
// Fields [username], the username changes and the email stays; an update
// of the email alone changes nothing.
func TestInboundUpdateFields(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		e.createUsers()
		e.raw("INSERT INTO users (username, email) VALUES ('test', 'test@test.com')")
		id := e.queryInt("SELECT id FROM users")
		b := userBinding(t, []string{"username"}, nil)
		srv := startServer(t, e, map[string]channels.Consumer{"users": b.Consumer(e.db)})
		startRelay(t, e, srv, b)
		ws := srv.dial(t, "")
		ws.SendJSON(map[string]any{"stream": "users", "payload": map[string]any{"action": "update", "pk": id, "data": map[string]any{"username": "test_inbound"}}})
		waitFor(t, "the update", func() bool { return e.queryString("SELECT username FROM users") == "test_inbound" })
		if got := e.queryString("SELECT email FROM users"); got != "test@test.com" {
			t.Fatalf("email %q", got)
		}
		ws.SendJSON(map[string]any{"stream": "users", "payload": map[string]any{"action": "update", "pk": id, "data": map[string]any{"email": "new@test.com"}}})
		waitFor(t, "the second update", func() bool { return b.Stats().Updated == 2 })
		if got := e.queryString("SELECT username || ' ' || email FROM users"); got != "test_inbound test@test.com" {
			t.Fatalf("row %q after an update of an unbound field", got)
		}
	})
}

// TestInboundDelete: a delete frame removes the row.
func TestInboundDelete(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		e.createUsers()
		e.raw("INSERT INTO users (username, email) VALUES ('test', 'test@test.com')")
		id := e.queryInt("SELECT id FROM users")
		b := userBinding(t, []string{"username"}, nil)
		srv := startServer(t, e, map[string]channels.Consumer{"users": b.Consumer(e.db)})
		startRelay(t, e, srv, b)
		ws := srv.dial(t, "")
		ws.SendJSON(map[string]any{"stream": "users", "payload": map[string]any{"action": "delete", "pk": id}})
		waitFor(t, "the delete", func() bool { return e.queryInt("SELECT COUNT(*) FROM users") == 0 })
	})
}
