package session_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/channelstest"
	"github.com/gochannels/channels/internal/testenv"
	"github.com/gochannels/channels/session"
)

// stores returns a factory per store kind; the services ones skip (or fail
// under CHANNELS_REQUIRE_SERVICES=1) when the service is absent.
func stores() map[string]func(t testing.TB) session.Store {
	return map[string]func(t testing.TB) session.Store{
		"memory": func(t testing.TB) session.Store { return session.NewMemoryStore() },
		"sqlite": func(t testing.TB) session.Store {
			s, err := session.OpenSQLite(t.Context(), filepath.Join(t.TempDir(), "sessions.db"), session.SQLConfig{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
		"postgres": func(t testing.TB) session.Store {
			url := testenv.DatabaseURL(t)
			table := strings.ReplaceAll(strings.TrimSuffix(testenv.Prefix("sessions"), ":"), "-", "_")
			s, err := session.OpenPostgres(t.Context(), url, session.SQLConfig{Table: table})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				s.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				c, err := pgx.Connect(ctx, url)
				if err != nil {
					t.Errorf("drop %s: %v", table, err)
					return
				}
				defer c.Close(ctx)
				if _, err := c.Exec(ctx, "DROP TABLE IF EXISTS "+table); err != nil {
					t.Errorf("drop %s: %v", table, err)
				}
			})
			return s
		},
		"redis": func(t testing.TB) session.Store {
			url := testenv.RedisURL(t)
			s, err := session.OpenRedis(t.Context(), url, testenv.Prefix("session"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
	}
}

func TestStores(t *testing.T) {
	for name, open := range stores() {
		t.Run(name, func(t *testing.T) {
			st := open(t)
			ctx := t.Context()
			soon := func() time.Time { return time.Now().Add(time.Hour) }

			t.Run("find missing", func(t *testing.T) {
				_, found, err := st.FindCtx(ctx, "missing")
				if err != nil || found {
					t.Fatalf("FindCtx(missing) = found %v, %v; want not found", found, err)
				}
			})
			t.Run("commit find overwrite delete", func(t *testing.T) {
				if err := st.CommitCtx(ctx, "k1", []byte("one"), soon()); err != nil {
					t.Fatal(err)
				}
				if b, found, err := st.FindCtx(ctx, "k1"); err != nil || !found || string(b) != "one" {
					t.Fatalf("FindCtx = %q %v %v, want one", b, found, err)
				}
				if err := st.CommitCtx(ctx, "k1", []byte{0, 0xff, 2}, soon()); err != nil {
					t.Fatal(err)
				}
				if b, _, _ := st.FindCtx(ctx, "k1"); string(b) != "\x00\xff\x02" {
					t.Fatalf("after overwrite FindCtx = %q (binary data must survive)", b)
				}
				if err := st.DeleteCtx(ctx, "k1"); err != nil {
					t.Fatal(err)
				}
				if _, found, _ := st.FindCtx(ctx, "k1"); found {
					t.Fatal("found after delete")
				}
				if err := st.DeleteCtx(ctx, "k1"); err != nil {
					t.Fatalf("deleting a missing key: %v", err)
				}
			})
			t.Run("expired is not found and can be created again", func(t *testing.T) {
				if err := st.CommitCtx(ctx, "k2", []byte("old"), time.Now().Add(50*time.Millisecond)); err != nil {
					t.Fatal(err)
				}
				deadline := time.Now().Add(5 * time.Second)
				for {
					_, found, err := st.FindCtx(ctx, "k2")
					if err != nil {
						t.Fatal(err)
					}
					if !found {
						break
					}
					if time.Now().After(deadline) {
						t.Fatal("session still found long after its expiry")
					}
					time.Sleep(20 * time.Millisecond)
				}
				if err := st.CreateCtx(ctx, "k2", []byte("new"), soon()); err != nil {
					t.Fatalf("CreateCtx over an expired session: %v", err)
				}
				if b, _, _ := st.FindCtx(ctx, "k2"); string(b) != "new" {
					t.Fatalf("FindCtx = %q, want new", b)
				}
			})
			t.Run("create is must-create", func(t *testing.T) {
				if err := st.CreateCtx(ctx, "k3", []byte("first"), soon()); err != nil {
					t.Fatal(err)
				}
				err := st.CreateCtx(ctx, "k3", []byte("second"), soon())
				if !errors.Is(err, session.ErrExists) {
					t.Fatalf("second CreateCtx = %v, want ErrExists", err)
				}
				if b, _, _ := st.FindCtx(ctx, "k3"); string(b) != "first" {
					t.Fatalf("FindCtx = %q, want first (a failed create changes nothing)", b)
				}
			})
			t.Run("concurrent creates: exactly one wins", func(t *testing.T) {
				const n = 8
				var wg sync.WaitGroup
				errs := make([]error, n)
				for i := range n {
					wg.Go(func() { errs[i] = st.CreateCtx(ctx, "k4", []byte(fmt.Sprint(i)), soon()) })
				}
				wg.Wait()
				won := 0
				for _, err := range errs {
					switch {
					case err == nil:
						won++
					case !errors.Is(err, session.ErrExists):
						t.Fatalf("CreateCtx: %v", err)
					}
				}
				if won != 1 {
					t.Fatalf("%d creates succeeded, want exactly 1", won)
				}
			})
			t.Run("scs SessionManager shares sessions with the middleware", func(t *testing.T) {
				testSCSInterop(t, st)
			})
		})
	}
}

// testSCSInterop logs in over real HTTP with an scs.SessionManager on st and
// reads the session from a websocket.connect carrying the cookie.
func testSCSInterop(t *testing.T, st session.Store) {
	mgr := &session.Manager{Store: st}
	sm := mgr.NewHTTPManager()
	mux := http.NewServeMux()
	mux.HandleFunc("/login", func(w http.ResponseWriter, r *http.Request) {
		if err := session.LoginHTTP(r.Context(), sm, session.UserID("ada"), "test"); err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		sm.Put(r.Context(), "theme", "dark")
	})
	mux.HandleFunc("/theme", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, sm.GetString(r.Context(), "theme"))
	})
	srv := httptest.NewServer(sm.LoadAndSave(mux))
	defer srv.Close()
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar}
	resp, err := hc.Get(srv.URL + "/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == session.DefaultCookieName {
			cookie = c
		}
	}
	if cookie == nil {
		t.Fatal("no session cookie after login")
	}

	var seenTheme string
	var seenUser session.User
	r := channels.NewRouter()
	r.Route("websocket.connect", channels.Chain(channels.ConsumerFunc(func(ctx context.Context, m *channels.Message) error {
		hs := session.HTTPFromContext(ctx)
		if hs == nil {
			return errors.New("no HTTP session")
		}
		seenTheme = hs.GetString("theme")
		seenUser = session.UserFrom(ctx)
		hs.Put("theme", "light") // written back for the HTTP side
		return m.Reply(ctx, channels.Content{"accept": true})
	}), mgr.HTTPSessionUser()))
	c := channelstest.NewClient(t, r)
	if err := c.SendAndConsume("websocket.connect", channels.Content{
		"path":    "/",
		"order":   0,
		"headers": []any{[]any{[]byte("cookie"), []byte("other=1; " + cookie.Name + "=" + cookie.Value)}},
	}); err != nil {
		t.Fatal(err)
	}
	if seenTheme != "dark" || seenUser == nil || seenUser.ID() != "ada" {
		t.Fatalf("consumer saw theme %q user %v, want dark and ada", seenTheme, seenUser)
	}
	resp, err = hc.Get(srv.URL + "/theme")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "light" {
		t.Fatalf("HTTP side reads theme %q after the consumer changed it, want light", b)
	}
}

func TestMemoryStoreLimit(t *testing.T) {
	st := &session.MemoryStore{MaxSessions: 2}
	ctx := t.Context()
	later := time.Now().Add(time.Hour)
	for _, k := range []string{"a", "b"} {
		if err := st.CommitCtx(ctx, k, []byte(k), later); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.CommitCtx(ctx, "c", []byte("c"), later); !errors.Is(err, session.ErrStoreFull) {
		t.Fatalf("third session: %v, want ErrStoreFull", err)
	}
	if err := st.CommitCtx(ctx, "a", []byte("a2"), later); err != nil {
		t.Fatalf("overwriting within the limit: %v", err)
	}
	if err := st.CommitCtx(ctx, "b", []byte("b"), time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := st.CommitCtx(ctx, "c", []byte("c"), later); err != nil {
		t.Fatalf("after one session expired: %v", err)
	}
}

func TestAdaptNonAtomicStore(t *testing.T) {
	// A plain scs.Store (no CreateCtx) still gets must-create semantics
	// when used sequentially.
	st := session.Adapt(plainStore{session.NewMemoryStore()})
	ctx := t.Context()
	if err := st.CreateCtx(ctx, "k", []byte("1"), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateCtx(ctx, "k", []byte("2"), time.Now().Add(time.Hour)); !errors.Is(err, session.ErrExists) {
		t.Fatalf("CreateCtx on existing = %v, want ErrExists", err)
	}
}

// plainStore hides everything but scs.Store.
type plainStore struct{ s *session.MemoryStore }

func (p plainStore) Find(k string) ([]byte, bool, error)          { return p.s.Find(k) }
func (p plainStore) Commit(k string, b []byte, e time.Time) error { return p.s.Commit(k, b, e) }
func (p plainStore) Delete(k string) error                        { return p.s.Delete(k) }
