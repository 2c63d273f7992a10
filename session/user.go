package session

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/alexedwards/scs/v2"
	"github.com/gochannels/channels"
)

// The session keys a login writes; the names are Django's, so the data is
// recognisable.
const (
	// AuthUserIDKey holds the logged-in user's ID (text).
	AuthUserIDKey = "_auth_user_id"
	// AuthBackendKey holds the name of what authenticated the user.
	AuthBackendKey = "_auth_user_backend"
	// AuthHashKey holds the user's session hash (see SessionHasher).
	AuthHashKey = "_auth_user_hash"
)

// User is an application's user as the session middleware sees it.
type User interface {
	// ID returns the user's identifier, what a login stores under
	// AuthUserIDKey; "" for the anonymous user.
	ID() string
}

// SessionHasher may be implemented by users whose sessions must end when
// their credentials change (Django's get_session_auth_hash): Login stores
// SessionHash under AuthHashKey, and UsersByID rejects a session whose
// stored hash differs from the user's current one.
type SessionHasher interface {
	SessionHash() string
}

type anonymous struct{}

func (anonymous) ID() string     { return "" }
func (anonymous) String() string { return "AnonymousUser" }

// Anonymous is the user of a message without a logged-in user.
var Anonymous User = anonymous{}

// Authenticated reports whether u is a logged-in user (not nil, not
// anonymous).
func Authenticated(u User) bool { return u != nil && u.ID() != "" }

// UserID is a User known only by its ID: the user Manager gives consumers
// when it has no UserLoader.
type UserID string

// ID returns the ID.
func (u UserID) ID() string { return string(u) }

// UserLoader finds the user a session belongs to. Implementations are
// called concurrently by many consumers and may block on a database.
type UserLoader interface {
	// LoadUser returns the user whose login s holds, or Anonymous (or nil)
	// when there is none. s is nil for a message without a session.
	LoadUser(ctx context.Context, s *Session) (User, error)
}

// UserLoaderFunc adapts a function to a UserLoader.
type UserLoaderFunc func(ctx context.Context, s *Session) (User, error)

// LoadUser calls f(ctx, s).
func (f UserLoaderFunc) LoadUser(ctx context.Context, s *Session) (User, error) { return f(ctx, s) }

// UsersByID returns a UserLoader that reads the ID stored under
// AuthUserIDKey and looks the user up with find, which returns nil or
// Anonymous for an unknown ID. When the user implements SessionHasher, the
// session must hold the same hash, or the user is anonymous.
func UsersByID(find func(ctx context.Context, id string) (User, error)) UserLoader {
	return UserLoaderFunc(func(ctx context.Context, s *Session) (User, error) {
		if s == nil {
			return Anonymous, nil
		}
		id := s.GetString(AuthUserIDKey)
		if id == "" {
			return Anonymous, nil
		}
		u, err := find(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("session: load user %q: %w", id, err)
		}
		if u == nil {
			return Anonymous, nil
		}
		if h, ok := u.(SessionHasher); ok {
			if subtle.ConstantTimeCompare([]byte(h.SessionHash()), []byte(s.GetString(AuthHashKey))) != 1 {
				return Anonymous, nil
			}
		}
		return u, nil
	})
}

// Login records u as the logged-in user of s: its ID, backend (a name for
// what authenticated it) and, for a SessionHasher, its session hash.
func Login(s *Session, u User, backend string) {
	for k, v := range AuthValues(u, backend) {
		s.Put(k, v)
	}
}

// AuthValues returns the session values that record u as logged in (see
// Login).
func AuthValues(u User, backend string) map[string]any {
	v := map[string]any{AuthUserIDKey: u.ID()}
	if backend != "" {
		v[AuthBackendKey] = backend
	}
	if h, ok := u.(SessionHasher); ok {
		v[AuthHashKey] = h.SessionHash()
	}
	return v
}

// Logout clears s, as Django's logout flushes the session. Saved, an empty
// channel session is deleted.
func Logout(s *Session) { s.Clear() }

// LoginHTTP records u as the logged-in user of the HTTP session in ctx, for
// an HTTP handler wrapped by sm.LoadAndSave. The token is renewed first
// (against session fixation).
func LoginHTTP(ctx context.Context, sm *scs.SessionManager, u User, backend string) error {
	if err := sm.RenewToken(ctx); err != nil {
		return fmt.Errorf("session: renew token: %w", err)
	}
	for k, v := range AuthValues(u, backend) {
		sm.Put(ctx, k, v)
	}
	return nil
}

// UserFrom returns the user the user middleware attached to ctx, or
// Anonymous.
func UserFrom(ctx context.Context) User {
	if u, ok := ctx.Value(userCtxKey{}).(User); ok && u != nil {
		return u
	}
	return Anonymous
}

func (m *Manager) loadUser(ctx context.Context, s *Session) (User, error) {
	if s == nil {
		return Anonymous, nil
	}
	if m.Users == nil {
		if id := s.GetString(AuthUserIDKey); id != "" {
			return UserID(id), nil
		}
		return Anonymous, nil
	}
	u, err := m.Users.LoadUser(ctx, s)
	if err != nil {
		return nil, err
	}
	if u == nil {
		return Anonymous, nil
	}
	return u, nil
}

// UserGroup returns the name of the group that holds the open WebSockets of
// the user with the given ID: "session.user." and 32 hexadecimal digits of
// the SHA-256 of the ID (so IDs of any form make valid group names).
func UserGroup(userID string) string {
	sum := sha256.Sum256([]byte(userID))
	return "session.user." + hex.EncodeToString(sum[:16])
}

// trackUser keeps the user's group in step with the connection: joined on
// connect, left on disconnect.
func (m *Manager) trackUser(ctx context.Context, msg *channels.Message, u User) error {
	if m.NoUserGroups || !Authenticated(u) || msg.ReplyChannel == "" {
		return nil
	}
	g := channels.Group{Name: UserGroup(u.ID()), Layer: msg.Layer}
	var err error
	switch msg.Channel {
	case "websocket.connect":
		err = g.Add(ctx, msg.ReplyChannel)
	case "websocket.disconnect":
		err = g.Discard(ctx, msg.ReplyChannel)
	default:
		return nil
	}
	if errors.Is(err, channels.ErrGroupsUnsupported) {
		m.logger().Warn("session: the layer has no groups, so LogoutSockets cannot reach this user's sockets", "layer", fmt.Sprint(msg.Layer))
		return nil
	}
	if err != nil {
		return fmt.Errorf("session: user group: %w", err)
	}
	return nil
}

// HTTPSessionUser returns middleware that applies HTTPSession and attaches
// the user of the HTTP session (Anonymous without one), read with UserFrom
// (Django's http_session_user).
func (m *Manager) HTTPSessionUser() channels.Middleware {
	return func(next channels.Consumer) channels.Consumer {
		return named{"HTTPSessionUser", next, func(ctx context.Context, msg *channels.Message) error {
			return m.withHTTP(ctx, msg, func(ctx context.Context) error {
				u, err := m.loadUser(ctx, HTTPFromContext(ctx))
				if err != nil {
					return err
				}
				return next.Consume(context.WithValue(ctx, userCtxKey{}, u), msg)
			})
		}}
	}
}

// ChannelSessionUser returns middleware that applies ChannelSession and
// attaches the user the channel session holds, read with UserFrom (Django's
// channel_session_user). On "websocket.connect" an authenticated user's
// socket joins UserGroup (unless NoUserGroups), and leaves it on
// "websocket.disconnect".
func (m *Manager) ChannelSessionUser() channels.Middleware {
	return func(next channels.Consumer) channels.Consumer {
		return named{"ChannelSessionUser", next, func(ctx context.Context, msg *channels.Message) error {
			return m.withChannel(ctx, msg, func(ctx context.Context, cs *Session) error {
				return m.runAsUser(ctx, msg, cs, next)
			})
		}}
	}
}

func (m *Manager) runAsUser(ctx context.Context, msg *channels.Message, cs *Session, next channels.Consumer) error {
	u, err := m.loadUser(ctx, cs)
	if err != nil {
		return err
	}
	if err := m.trackUser(ctx, msg, u); err != nil {
		return err
	}
	return next.Consume(context.WithValue(ctx, userCtxKey{}, u), msg)
}

// HTTPUser returns middleware that gives a WebSocket the user who opened
// it, on every one of its messages (Django's channel_session_user_from_http
// with channel_session_user, what a generic consumer's http_user does): it
// applies HTTPSession and ChannelSession, copies the login keys
// (AuthUserIDKey, and AuthBackendKey and AuthHashKey when present) from the
// HTTP session seen on connect into the channel session, and attaches the
// user the channel session holds, read with UserFrom. Later messages, which
// carry no cookie, find the user in the channel session. An authenticated
// user's socket joins UserGroup on connect (unless NoUserGroups) and leaves
// it on disconnect.
func (m *Manager) HTTPUser() channels.Middleware {
	return func(next channels.Consumer) channels.Consumer {
		return named{"HTTPUser", next, func(ctx context.Context, msg *channels.Message) error {
			return m.withHTTP(ctx, msg, func(ctx context.Context) error {
				return m.withChannel(ctx, msg, func(ctx context.Context, cs *Session) error {
					if hs := HTTPFromContext(ctx); hs != nil {
						transferUser(hs, cs)
					}
					return m.runAsUser(ctx, msg, cs, next)
				})
			})
		}}
	}
}

// transferUser copies the login keys from one session to another when the
// source holds a user ID.
func transferUser(from, to *Session) {
	id := from.GetString(AuthUserIDKey)
	if id == "" {
		return
	}
	for _, k := range []string{AuthUserIDKey, AuthBackendKey, AuthHashKey} {
		v := from.Get(k)
		if v == nil {
			continue
		}
		if sv, ok := v.(string); ok && to.GetString(k) == sv {
			continue
		}
		to.Put(k, v)
	}
}

// LogoutSockets closes every open WebSocket of the user whose ID is given,
// wherever its gateway runs: it sends {"close": LogoutCloseCode} to
// UserGroup(userID), which the user middleware made each of the user's
// sockets join when it connected. Call it when the user logs out over HTTP
// (after destroying the HTTP session) or changes their password.
//
// The sockets' channel sessions are left to expire with them, so that
// their "websocket.disconnect" consumers still see who left (to announce
// it, and to leave the user group); frames a client sent before its socket
// closed may still run as the user. Inside a consumer the close is held in
// the consumer's outbox like any group send; outside one it goes at once,
// and the group is then emptied. It returns how many sockets were found.
// It blocks on the layer.
func (m *Manager) LogoutSockets(ctx context.Context, l channels.Layer, userID string) (int, error) {
	gl, ok := l.(channels.GroupLayer)
	if !ok {
		return 0, fmt.Errorf("session: logout sockets: %w", channels.ErrGroupsUnsupported)
	}
	name := UserGroup(userID)
	members, err := gl.GroupChannels(ctx, name)
	if err != nil {
		return 0, fmt.Errorf("session: logout sockets: %w", err)
	}
	if len(members) == 0 {
		return 0, nil
	}
	code := m.LogoutCloseCode
	if code == 0 {
		code = DefaultLogoutCloseCode
	}
	var errs []error
	if err := (channels.Group{Name: name, Layer: l}).Send(ctx, channels.Content{"close": int64(code)}); err != nil {
		errs = append(errs, err)
	}
	if !channels.InConsumer(ctx) {
		for _, ch := range members {
			if err := gl.GroupDiscard(ctx, name, ch); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return len(members), fmt.Errorf("session: logout sockets: %w", err)
	}
	return len(members), nil
}
