package main

import (
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/httpconsumer"
)

//go:embed static
var static embed.FS

// socketPath is the WebSocket route: the room and the user's name travel in
// the path, so every message of the connection (connect, receive,
// disconnect) carries them and the consumers need no stored state.
const socketPath = `^/chat/(?P<room>[A-Za-z0-9_-]{1,40})/(?P<name>[A-Za-z0-9_-]{1,30})/$`

// maxText is the longest chat line accepted, in characters.
const maxText = 2000

// Event is what the page receives: a chat line, or a join/leave notice.
type Event struct {
	Type string `json:"type"` // "message", "join" or "leave"
	Room string `json:"room"`
	User string `json:"user"`
	Text string `json:"text,omitempty"`
}

func group(room string) string { return "chat-" + room }

// broadcast sends ev to everyone in its room (after the consumer returns:
// consumer atomicity).
func broadcast(ctx context.Context, m *channels.Message, ev Event) error {
	b, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	return m.Group(group(ev.Room)).Send(ctx, channels.Content{"text": string(b)})
}

// Router is the chat application: three WebSocket consumers and the pages.
func Router() *channels.Router {
	r := channels.NewRouter()
	r.RouteFunc("websocket.connect", connect, channels.Path(socketPath))
	r.RouteFunc("websocket.receive", receive, channels.Path(socketPath))
	r.RouteFunc("websocket.disconnect", disconnect, channels.Path(socketPath))
	// Any other WebSocket path is refused (403) rather than accepted by the
	// default route.
	r.Route("websocket.connect", channels.ConsumerFunc(func(context.Context, *channels.Message) error {
		return channels.ErrDenyConnection
	}))
	r.Route("http.request", httpconsumer.New(Pages()))
	return r
}

// connect joins the room's group, accepts the socket and tells the room.
func connect(ctx context.Context, m *channels.Message) error {
	room, name := m.PathValue("room"), m.PathValue("name")
	if err := m.Group(group(room)).Add(ctx, m.ReplyChannel); err != nil {
		return err
	}
	if err := m.Reply(ctx, channels.Content{"accept": true}); err != nil {
		return err
	}
	return broadcast(ctx, m, Event{Type: "join", Room: room, User: name})
}

// receive relays one line to the room. The page sends {"text": "..."}.
func receive(ctx context.Context, m *channels.Message) error {
	var in struct {
		Text string `json:"text"`
	}
	if err := json.Unmarshal([]byte(m.Content.String("text")), &in); err != nil {
		return m.Reply(ctx, channels.Content{"text": `{"type":"error","text":"send JSON: {\"text\": \"...\"}"}`})
	}
	text := strings.TrimSpace(in.Text)
	if text == "" {
		return nil
	}
	if utf8.RuneCountInString(text) > maxText {
		return m.Reply(ctx, channels.Content{"text": fmt.Sprintf(`{"type":"error","text":"lines are limited to %d characters"}`, maxText)})
	}
	return broadcast(ctx, m, Event{Type: "message", Room: m.PathValue("room"), User: m.PathValue("name"), Text: text})
}

// disconnect leaves the group and tells the room.
func disconnect(ctx context.Context, m *channels.Message) error {
	room := m.PathValue("room")
	if err := m.Group(group(room)).Discard(ctx, m.ReplyChannel); err != nil {
		return err
	}
	return broadcast(ctx, m, Event{Type: "leave", Room: room, User: m.PathValue("name")})
}

// Pages serves the chat page; it runs in the workers, for http.request
// messages.
func Pages() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /", http.FileServerFS(sub))
	return mux
}
