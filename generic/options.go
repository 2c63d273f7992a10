package generic

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/session"
)

// ErrNoSessions is returned (wrapped) by consumers whose options ask for
// sessions, users or ordering without a session.Manager.
var ErrNoSessions = errors.New("generic: sessions, users and ordering need Options.Sessions")

// websocketChannels are the channels every consumer here handles.
var websocketChannels = []string{"websocket.connect", "websocket.receive", "websocket.disconnect"}

// Options are the settings WebSocket, JSONWebSocket and Demultiplexer
// share. Set them before the consumer is first used.
type Options struct {
	// Name names the consumer in logs (and tells consumers of one type
	// apart for session.Manager.EnforceOrdering). Empty means the type's
	// name.
	Name string

	// Groups are groups every connection joins when it connects, before
	// Connect runs, and leaves when it disconnects, before Disconnect runs.
	Groups []string
	// ConnectionGroups, when set, returns more groups for a connection,
	// from its message (its path, or route values read with
	// m.PathValue). It is called on connect and on disconnect with
	// messages of the same path, so it must give the same answer.
	ConnectionGroups func(m *channels.Message) []string

	// Sessions makes the session middleware the options below ask for.
	Sessions *session.Manager
	// ChannelSession gives the hooks the connection's channel session
	// (session.FromContext).
	ChannelSession bool
	// ChannelSessionUser gives the hooks the channel session and the user
	// it holds (session.UserFrom). It wins over ChannelSession.
	ChannelSessionUser bool
	// HTTPUser gives the hooks the user of the HTTP session that opened
	// the socket, on every message: the login is copied from the HTTP
	// session into the channel session on connect (session.Manager.HTTPUser).
	// It implies ChannelSessionUser.
	HTTPUser bool
	// Ordering set to session.StrictOrdering runs each connection's
	// messages in order across workers (session.Manager.EnforceOrdering,
	// outermost). session.SlightOrdering is an error, as in Channels 1.0.
	Ordering session.Ordering

	// Logger receives the consumer's own logs (configuration errors,
	// malformed frames). Nil means slog.Default().
	Logger *slog.Logger
}

func (o *Options) logger() *slog.Logger {
	if o.Logger != nil {
		return o.Logger
	}
	return slog.Default()
}

// middleware returns the session middleware the options ask for, outermost
// first.
func (o *Options) middleware() ([]channels.Middleware, error) {
	var mw []channels.Middleware
	needs := o.ChannelSession || o.ChannelSessionUser || o.HTTPUser || o.Ordering != session.NoOrdering
	if !needs {
		return nil, nil
	}
	if o.Sessions == nil {
		return nil, ErrNoSessions
	}
	if o.Ordering != session.NoOrdering {
		m, err := o.Sessions.EnforceOrdering(o.Ordering)
		if err != nil {
			return nil, err
		}
		mw = append(mw, m)
	}
	switch {
	case o.HTTPUser:
		mw = append(mw, o.Sessions.HTTPUser())
	case o.ChannelSessionUser:
		mw = append(mw, o.Sessions.ChannelSessionUser())
	case o.ChannelSession:
		mw = append(mw, o.Sessions.ChannelSession())
	}
	return mw, nil
}

// groups returns the connection's groups, checked.
func (o *Options) groups(m *channels.Message) ([]string, error) {
	gs := append([]string(nil), o.Groups...)
	if o.ConnectionGroups != nil {
		gs = append(gs, o.ConnectionGroups(m)...)
	}
	for _, g := range gs {
		if err := channels.ValidateGroupName(g); err != nil {
			return nil, fmt.Errorf("generic: connection group: %w", err)
		}
	}
	return gs, nil
}

// joinGroups adds the connection to its groups.
func (o *Options) joinGroups(ctx context.Context, m *channels.Message) error {
	gs, err := o.groups(m)
	if err != nil {
		return err
	}
	for _, g := range gs {
		if err := m.Group(g).Add(ctx, m.ReplyChannel); err != nil {
			return fmt.Errorf("generic: join group %q: %w", g, err)
		}
	}
	return nil
}

// leaveGroups removes the connection from its groups.
func (o *Options) leaveGroups(ctx context.Context, m *channels.Message) error {
	gs, err := o.groups(m)
	if err != nil {
		return err
	}
	var errs []error
	for _, g := range gs {
		if err := m.Group(g).Discard(ctx, m.ReplyChannel); err != nil {
			errs = append(errs, fmt.Errorf("generic: leave group %q: %w", g, err))
		}
	}
	return errors.Join(errs...)
}

// built is a consumer's middleware chain, made on first use.
type built struct {
	once   sync.Once
	chain  channels.Consumer
	err    error
	logged sync.Once
}

// consume runs m through the chain made from the options around dispatch.
// A configuration error rejects connects and fails other messages, and is
// logged once.
func (b *built) consume(ctx context.Context, o *Options, name string, dispatch channels.Consumer, m *channels.Message) error {
	b.once.Do(func() {
		mw, err := o.middleware()
		if err != nil {
			b.err = fmt.Errorf("generic: %s: %w", name, err)
			return
		}
		b.chain = channels.Chain(namedConsumer{name, dispatch}, mw...)
	})
	if b.err != nil {
		b.logged.Do(func() {
			o.logger().Error("generic: consumer is misconfigured; rejecting its sockets", "consumer", name, "error", b.err)
		})
		if m.Channel == "websocket.connect" {
			return errors.Join(b.err, channels.ErrDenyConnection)
		}
		return b.err
	}
	return b.chain.Consume(ctx, m)
}

// validate returns the configuration error of o, if any.
func (o *Options) validate() error {
	_, err := o.middleware()
	return err
}

// namedConsumer gives the hooks' dispatcher the consumer's name, which the
// middleware uses in logs and EnforceOrdering to tell consumers apart.
type namedConsumer struct {
	name string
	channels.Consumer
}

func (n namedConsumer) Name() string { return n.name }
