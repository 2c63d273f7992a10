package session_test

import (
	"context"
	"fmt"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/inmemory"
	"github.com/gochannels/channels/session"
)

// run consumes one message of a connection the way a worker does, and
// prints what the consumer sent back.
func run(l channels.Layer, c channels.Consumer, reply, channel string, content channels.Content) {
	ctx := context.Background()
	content["reply_channel"] = reply
	_ = (&channels.Runner{}).Run(ctx, c, channels.NewMessage(l, channel, content))
	for {
		_, out, _ := channels.Poll(ctx, l, reply)
		if out == nil {
			return
		}
		fmt.Println(out)
	}
}

func ExampleManager_ChannelSession() {
	l := inmemory.MustNew(inmemory.Config{})
	defer l.Close()
	mgr := &session.Manager{Store: session.NewMemoryStore()}

	r := channels.NewRouter()
	// The connect remembers the room; later messages of the same
	// connection find it in the channel session.
	r.Route("websocket.connect", mgr.ChannelSession()(channels.ConsumerFunc(func(ctx context.Context, m *channels.Message) error {
		session.FromContext(ctx).Put("room", m.Content.String("path"))
		return m.Reply(ctx, channels.Content{"accept": true})
	})))
	r.Route("websocket.receive", mgr.ChannelSession()(channels.ConsumerFunc(func(ctx context.Context, m *channels.Message) error {
		return m.Reply(ctx, channels.Content{"text": "you are in " + session.FromContext(ctx).GetString("room")})
	})))

	reply, _ := l.NewChannel(context.Background(), "websocket.send.example!")
	run(l, r, reply, "websocket.connect", channels.Content{"path": "/lobby/"})
	run(l, r, reply, "websocket.receive", channels.Content{"path": "/lobby/", "text": "where am I?"})
	// Output:
	// map[accept:true]
	// map[text:you are in /lobby/]
}

func ExampleManager_EnforceOrdering() {
	l := inmemory.MustNew(inmemory.Config{})
	defer l.Close()
	mgr := &session.Manager{Store: session.NewMemoryStore()}
	ordering, err := mgr.EnforceOrdering(session.StrictOrdering)
	if err != nil {
		panic(err)
	}
	echo := ordering(channels.ConsumerFunc(func(ctx context.Context, m *channels.Message) error {
		return m.Reply(ctx, channels.Content{"text": m.Content.String("text")})
	}))

	// Frames 2 and 3 reach a worker before frame 1: they wait, and run
	// right after it.
	reply, _ := l.NewChannel(context.Background(), "websocket.send.example!")
	run(l, echo, reply, "websocket.receive", channels.Content{"order": 0, "text": "zero"})
	run(l, echo, reply, "websocket.receive", channels.Content{"order": 2, "text": "two"})
	run(l, echo, reply, "websocket.receive", channels.Content{"order": 3, "text": "three"})
	run(l, echo, reply, "websocket.receive", channels.Content{"order": 1, "text": "one"})
	// Output:
	// map[text:zero]
	// map[text:one]
	// map[text:two]
	// map[text:three]
}

func ExampleUsersByID() {
	users := map[string]session.User{"7": session.UserID("7")}
	loader := session.UsersByID(func(_ context.Context, id string) (session.User, error) {
		return users[id], nil // nil for an unknown ID: anonymous
	})
	mgr := &session.Manager{Store: session.NewMemoryStore(), Users: loader}
	_ = mgr // use mgr.HTTPUser() or mgr.ChannelSessionUser() on consumers
	// A consumer then reads the user with session.UserFrom(ctx).
	fmt.Println(session.Authenticated(session.Anonymous), session.Authenticated(users["7"]))
	// Output: false true
}
