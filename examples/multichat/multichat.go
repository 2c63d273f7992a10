package main

import (
	"context"
	_ "embed"
	"html/template"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/alexedwards/scs/v2"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/generic"
	"github.com/gochannels/channels/httpconsumer"
	"github.com/gochannels/channels/js"
	"github.com/gochannels/channels/session"
)

// Group names: every socket joins both.
const (
	messagesGroup = "multichat-messages"
	presenceGroup = "multichat-presence"
)

// maxText is the longest chat line accepted, in characters.
const maxText = 2000

// validName is what a user name may look like.
var validName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,30}$`)

// App is the multiplexed chat: one WebSocket at /multi/ carrying two
// streams, "messages" (chat lines) and "presence" (who comes and goes), for
// users logged in through an HTTP form.
type App struct {
	// Sessions gives the consumers the user who opened the socket.
	Sessions *session.Manager
	// HTTP is the HTTP side's session manager: the login form sets its
	// cookie. It shares Sessions' store and codec.
	HTTP *scs.SessionManager
}

// New returns the application with its sessions in store.
func New(store session.Store) *App {
	mgr := &session.Manager{Store: store}
	sm := mgr.NewHTTPManager()
	sm.Lifetime = 24 * time.Hour
	sm.Cookie.SameSite = http.SameSiteLaxMode // forms cannot be posted from other sites
	return &App{Sessions: mgr, HTTP: sm}
}

// Line is a chat line, as the page sends it and as the messages stream
// broadcasts it.
type Line struct {
	User string `json:"user,omitempty"`
	Text string `json:"text"`
}

// Presence is what the presence stream broadcasts.
type Presence struct {
	User  string `json:"user"`
	Event string `json:"event"` // "join" or "leave"
}

// Router routes the socket to the demultiplexer and the pages to the
// HTTP handler.
func (a *App) Router() *channels.Router {
	messages := &generic.JSONWebSocket[Line]{
		Options:   generic.Options{Groups: []string{messagesGroup}},
		Malformed: generic.SkipMalformed,
		Receive: func(ctx context.Context, c *generic.Conn, in Line) error {
			text := strings.TrimSpace(in.Text)
			if text == "" || utf8.RuneCountInString(text) > maxText {
				return nil
			}
			// The user comes from the session, never from the frame.
			user := session.UserFrom(ctx).ID()
			return generic.MultiplexerFrom(ctx).GroupSend(ctx, messagesGroup, Line{User: user, Text: text})
		},
	}
	presence := &generic.WebSocket{
		Options: generic.Options{Groups: []string{presenceGroup}},
		Connect: func(ctx context.Context, c *generic.Conn) error {
			return generic.MultiplexerFrom(ctx).GroupSend(ctx, presenceGroup, Presence{User: session.UserFrom(ctx).ID(), Event: "join"})
		},
		Disconnect: func(ctx context.Context, c *generic.Conn) error {
			// A socket refused at connect (no login) is disconnected too.
			user := session.UserFrom(ctx)
			if !session.Authenticated(user) {
				return nil
			}
			return generic.MultiplexerFrom(ctx).GroupSend(ctx, presenceGroup, Presence{User: user.ID(), Event: "leave"})
		},
	}
	demux := &generic.Demultiplexer{
		Options: generic.Options{Name: "multichat", Sessions: a.Sessions, HTTPUser: true},
		Consumers: map[string]channels.Consumer{
			"messages": messages,
			"presence": presence,
		},
		// Only logged-in users get a socket.
		Connect: func(ctx context.Context, c *generic.Conn) error {
			if !session.Authenticated(session.UserFrom(ctx)) {
				return channels.ErrDenyConnection
			}
			return nil
		},
	}
	r := channels.NewRouter()
	r.Handle(demux, channels.Path(`^/multi/$`))
	r.Route("websocket.connect", channels.ConsumerFunc(func(context.Context, *channels.Message) error {
		return channels.ErrDenyConnection // any other socket path
	}))
	r.Route("http.request", httpconsumer.New(a.Pages()))
	return r
}

//go:embed page.html
var pageHTML string

var page = template.Must(template.New("page").Parse(pageHTML))

// Pages serves the login form and the chat page; it runs in the workers,
// for http.request messages.
func (a *App) Pages() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = page.Execute(w, map[string]any{
			"User":   a.HTTP.GetString(r.Context(), session.AuthUserIDKey),
			"Script": js.ScriptTag(), // the WebSocketBridge, with its integrity hash
		})
	})
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimSpace(r.PostFormValue("name"))
		if !validName.MatchString(name) {
			http.Error(w, "a name is 1 to 30 letters, digits, '-' or '_'", http.StatusBadRequest)
			return
		}
		if err := session.LoginHTTP(r.Context(), a.HTTP, session.UserID(name), "form"); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		http.Redirect(w, r, "/", http.StatusSeeOther)
	})
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		user := a.HTTP.GetString(r.Context(), session.AuthUserIDKey)
		if err := a.HTTP.Destroy(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		// The user's open sockets still hold the login in their channel
		// sessions: close them, wherever their gateway runs.
		if m := httpconsumer.Message(r); m != nil && user != "" {
			if _, err := a.Sessions.LogoutSockets(r.Context(), m.Layer, user); err != nil {
				slog.Error("multichat: closing the sockets of a logged-out user", "user", user, "error", err)
			}
		}
		http.Redirect(w, r, "/", http.StatusSeeOther)
	})
	return a.HTTP.LoadAndSave(mux)
}
