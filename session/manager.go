package session

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/alexedwards/scs/v2"
	"github.com/gochannels/channels"
)

// Defaults of Manager's fields.
const (
	// DefaultCookieName is the HTTP session cookie name, Django's.
	DefaultCookieName = "sessionid"
	// DefaultLifetime is how long a channel session lives after its last
	// save: the longest a gateway keeps a WebSocket open (the layer's group
	// expiry, 86 400 s by default).
	DefaultLifetime = 24 * time.Hour
	// DefaultLogoutCloseCode is the WebSocket close code LogoutSockets
	// closes a user's sockets with.
	DefaultLogoutCloseCode = 4001
	// DefaultParkTimeout is how long EnforceOrdering lets an early message
	// wait before handing it back to the runner with
	// channels.ErrConsumeLater.
	DefaultParkTimeout = 5 * time.Second
	// DefaultMaxAhead is how far ahead of the next expected order
	// EnforceOrdering parks a message.
	DefaultMaxAhead = 500
)

// ErrNoStore is returned by every middleware of a Manager without a Store.
var ErrNoStore = errors.New("session: Manager.Store is not set")

// Manager holds the session configuration and makes the session, user and
// ordering middleware. Set its fields before making middleware; after that a
// Manager is safe for concurrent use and must not be changed. The zero value
// is not usable: Store is required.
type Manager struct {
	// Store keeps channel sessions. Required.
	Store Store
	// HTTPStore is where the HTTP side (an scs.SessionManager) keeps its
	// sessions. Nil means Store.
	HTTPStore Store
	// Codec encodes session data; it must be the HTTP side's codec. Nil
	// means scs.GobCodec, scs's default.
	Codec scs.Codec
	// Lifetime is how long a channel session lives after its last save.
	// Zero means DefaultLifetime.
	Lifetime time.Duration

	// CookieName is the HTTP session cookie (scs.SessionManager's
	// Cookie.Name). Empty means DefaultCookieName; scs's own default is
	// "session", so set one of the two.
	CookieName string
	// AllowQueryKey also takes the HTTP session key from a "session_key"
	// query parameter of the WebSocket URL, as Django Channels did. It is
	// off by default because a key in a URL is a bearer credential that
	// ends up in access logs, proxy logs, browser history and Referer
	// headers; browsers send the cookie on WebSocket handshakes anyway.
	AllowQueryKey bool
	// HashHTTPTokens must match the HTTP side's scs
	// SessionManager.HashTokenInStore.
	HashHTTPTokens bool

	// Users loads the user a session belongs to. Nil means a user known by
	// the ID the session holds (UserID), without further checks.
	Users UserLoader
	// NoUserGroups stops the user middleware from adding each WebSocket of
	// an authenticated user to the user's group (UserGroup) on connect,
	// which is what lets LogoutSockets reach them.
	NoUserGroups bool
	// LogoutCloseCode is the close code LogoutSockets uses. Zero means
	// DefaultLogoutCloseCode.
	LogoutCloseCode int

	// ParkTimeout is how long EnforceOrdering lets an early message wait
	// for its predecessors when it is more than MaxAhead early (or its wait
	// channel is full), before returning channels.ErrConsumeLater.
	// Zero means DefaultParkTimeout.
	ParkTimeout time.Duration
	// MaxAhead is how far ahead of the next expected order EnforceOrdering
	// parks a message, which bounds how many messages of one connection
	// wait in the layer; a message further ahead waits for its
	// predecessors instead, holding its worker's slot (which slows the
	// socket down). Zero means DefaultMaxAhead.
	MaxAhead int

	// Runner runs each message EnforceOrdering lets through, so that what
	// it sends is flushed before the connection's next message can run.
	// Nil means a channels.Runner logging to Logger.
	Runner *channels.Runner

	// Logger receives save failures and ordering events. Nil means
	// slog.Default().
	Logger *slog.Logger

	duplicates, orphans atomic.Uint64
}

// OrderingStats count the messages EnforceOrdering dropped.
type OrderingStats struct {
	Duplicates uint64 // messages whose order had already been consumed
	Orphans    uint64 // parked messages without "original_channel", which cannot be sent back
}

// OrderingStats returns the counts of messages EnforceOrdering dropped.
func (m *Manager) OrderingStats() OrderingStats {
	return OrderingStats{Duplicates: m.duplicates.Load(), Orphans: m.orphans.Load()}
}

func (m *Manager) logger() *slog.Logger { return logger(m.Logger) }

func (m *Manager) codec() scs.Codec {
	if m.Codec != nil {
		return m.Codec
	}
	return scs.GobCodec{}
}

func (m *Manager) httpStore() Store {
	if m.HTTPStore != nil {
		return m.HTTPStore
	}
	return m.Store
}

func (m *Manager) lifetime() time.Duration {
	if m.Lifetime > 0 {
		return m.Lifetime
	}
	return DefaultLifetime
}

func (m *Manager) cookieName() string {
	if m.CookieName != "" {
		return m.CookieName
	}
	return DefaultCookieName
}

// ChannelSession returns middleware that gives every message of a
// connection the connection's channel session, keyed by ChannelKey of the
// message's reply channel (Django's channel_session). Read it with
// FromContext.
//
// A message without a reply channel is an error wrapping
// channels.ErrNoReplyChannel. A session that does not exist is created at
// once with must-create semantics; when another worker is creating it at the
// same moment the middleware returns channels.ErrConsumeLater, so the
// message is consumed again later. After the consumer returns (also with an
// error or a panic) the session is saved if it was modified: deleted from
// the store if it is now empty, so a logout sticks. Because middleware runs
// inside channels.Runner.Run, the save happens before the consumer's sends
// are flushed. When ctx already carries this connection's channel session
// (nested use, such as a demultiplexer's sub-consumers) the consumer runs
// with it and the outermost middleware saves it.
func (m *Manager) ChannelSession() channels.Middleware {
	return func(next channels.Consumer) channels.Consumer {
		return named{"ChannelSession", next, func(ctx context.Context, msg *channels.Message) error {
			return m.withChannel(ctx, msg, func(ctx context.Context, _ *Session) error {
				return next.Consume(ctx, msg)
			})
		}}
	}
}

// named is a middleware's consumer, with a name for logs.
type named struct {
	what string
	next channels.Consumer
	fn   func(ctx context.Context, msg *channels.Message) error
}

func (n named) Consume(ctx context.Context, msg *channels.Message) error { return n.fn(ctx, msg) }

func (n named) Name() string { return n.what + "(" + channels.ConsumerName(n.next) + ")" }

// withChannel runs fn with the message's channel session in ctx and saves
// the session afterwards when it loaded it.
func (m *Manager) withChannel(ctx context.Context, msg *channels.Message, fn func(context.Context, *Session) error) (err error) {
	if m.Store == nil {
		return ErrNoStore
	}
	if msg.ReplyChannel == "" {
		return fmt.Errorf("session: channel session on %q: %w", msg.Channel, channels.ErrNoReplyChannel)
	}
	key := ChannelKey(msg.ReplyChannel)
	if s := FromContext(ctx); s != nil && s.key == key {
		return fn(ctx, s)
	}
	s, err := m.loadChannel(ctx, key)
	if err != nil {
		return err
	}
	ctx = context.WithValue(ctx, channelCtxKey{}, s)
	returned := false
	defer func() {
		if !returned { // fn panicked: save what it changed, let the panic go on
			if serr := m.saveChannel(ctx, s); serr != nil {
				m.logger().Error("session: saving the channel session after a panic failed", "key", key, "error", serr)
			}
		}
	}()
	err = fn(ctx, s)
	returned = true
	if serr := m.saveChannel(ctx, s); serr != nil {
		m.logger().Error("session: saving the channel session failed", "key", key, "channel", msg.Channel, "error", serr)
		return errors.Join(err, serr)
	}
	return err
}

// loadChannel loads the channel session stored under key, creating it when
// there is none.
func (m *Manager) loadChannel(ctx context.Context, key string) (*Session, error) {
	b, found, err := m.Store.FindCtx(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("session: load channel session: %w", err)
	}
	if found {
		_, values, err := m.codec().Decode(b)
		if err != nil {
			m.logger().Warn("session: channel session cannot be decoded; starting an empty one", "key", key, "error", err)
			values = nil
		}
		return newSession(key, values, time.Time{}), nil
	}
	expiry := time.Now().Add(m.lifetime())
	enc, err := m.codec().Encode(expiry, map[string]any{})
	if err != nil {
		return nil, fmt.Errorf("session: encode new channel session: %w", err)
	}
	if err := m.Store.CreateCtx(ctx, key, enc, expiry); err != nil {
		if !errors.Is(err, ErrExists) {
			return nil, fmt.Errorf("session: create channel session: %w", err)
		}
		// Another consumer created it first; use theirs if it can be read
		// already, else consume the message later (Django's behaviour).
		if b, found, err := m.Store.FindCtx(ctx, key); err == nil && found {
			if _, values, err := m.codec().Decode(b); err == nil {
				return newSession(key, values, time.Time{}), nil
			}
		}
		return nil, fmt.Errorf("session: channel session %s is being created by another consumer: %w", key, channels.ErrConsumeLater)
	}
	return newSession(key, nil, time.Time{}), nil
}

// saveChannel writes a modified channel session, or deletes it if it is
// empty, and marks it unmodified.
func (m *Manager) saveChannel(ctx context.Context, s *Session) error {
	s.mu.Lock()
	if !s.modified {
		s.mu.Unlock()
		return nil
	}
	s.modified = false
	empty := len(s.values) == 0
	s.mu.Unlock()
	var err error
	if empty {
		err = m.Store.DeleteCtx(ctx, s.storeKey)
	} else {
		expiry := time.Now().Add(m.lifetime())
		var b []byte
		if b, err = m.codec().Encode(expiry, s.snapshot()); err == nil {
			err = m.Store.CommitCtx(ctx, s.storeKey, b, expiry)
		} else {
			err = fmt.Errorf("session: encode channel session (values must suit the codec; gob.Register custom types): %w", err)
		}
	}
	if err != nil {
		s.mu.Lock()
		s.modified = true
		s.mu.Unlock()
	}
	return err
}

// httpHolder records, once per message, the HTTP session found for it (nil
// when none), so nested middleware does not look again.
type httpHolder struct{ s *Session }

// HTTPSession returns middleware that gives the consumer the HTTP session
// named by the message's session cookie (Django's http_session). Read it
// with HTTPFromContext; it is nil when the message has no cookie (only
// "websocket.connect" and "http.request" carry headers) or the session does
// not exist. The middleware never creates sessions and never sets cookies.
// After the consumer returns (also with an error) the session is saved if
// it was modified, keeping its deadline.
func (m *Manager) HTTPSession() channels.Middleware {
	return func(next channels.Consumer) channels.Consumer {
		return named{"HTTPSession", next, func(ctx context.Context, msg *channels.Message) error {
			return m.withHTTP(ctx, msg, func(ctx context.Context) error { return next.Consume(ctx, msg) })
		}}
	}
}

func (m *Manager) withHTTP(ctx context.Context, msg *channels.Message, fn func(context.Context) error) error {
	if m.Store == nil {
		return ErrNoStore
	}
	if _, ok := ctx.Value(httpCtxKey{}).(*httpHolder); ok {
		return fn(ctx)
	}
	h := &httpHolder{}
	if token := m.httpToken(msg); token != "" {
		s, err := m.loadHTTP(ctx, token)
		if err != nil {
			return err
		}
		h.s = s
	}
	ctx = context.WithValue(ctx, httpCtxKey{}, h)
	returned := false
	defer func() {
		if !returned && h.s != nil {
			if serr := m.saveHTTP(ctx, h.s); serr != nil {
				m.logger().Error("session: saving the HTTP session after a panic failed", "error", serr)
			}
		}
	}()
	err := fn(ctx)
	returned = true
	if h.s != nil {
		if serr := m.saveHTTP(ctx, h.s); serr != nil {
			m.logger().Error("session: saving the HTTP session failed", "channel", msg.Channel, "error", serr)
			return errors.Join(err, serr)
		}
	}
	return err
}

// httpToken finds the HTTP session token of a message: the session cookie,
// or the "session_key" query parameter when AllowQueryKey is set.
func (m *Manager) httpToken(msg *channels.Message) string {
	if m.AllowQueryKey {
		var qs string
		switch v := msg.Content["query_string"].(type) {
		case string:
			qs = v
		case []byte:
			qs = string(v)
		}
		if qs != "" {
			if q, err := url.ParseQuery(qs); err == nil && q.Get("session_key") != "" {
				return q.Get("session_key")
			}
		}
	}
	name := m.cookieName()
	for _, value := range headerValues(msg.Content, "cookie") {
		for _, c := range parseCookies(value) {
			if c.Name == name && c.Value != "" {
				return c.Value
			}
		}
	}
	return ""
}

// headerValues returns the values of the named header (lower case) of an
// ASGI message: a list of [name, value] pairs of bytes, or, in the legacy
// form, a map.
func headerValues(c channels.Content, name string) []string {
	var out []string
	text := func(v any) (string, bool) {
		switch v := v.(type) {
		case []byte:
			return string(v), true
		case string:
			return v, true
		}
		return "", false
	}
	switch hs := c["headers"].(type) {
	case []any:
		for _, h := range hs {
			pair, ok := h.([]any)
			if !ok || len(pair) != 2 {
				continue
			}
			n, ok1 := text(pair[0])
			v, ok2 := text(pair[1])
			if ok1 && ok2 && strings.EqualFold(n, name) {
				out = append(out, v)
			}
		}
	case map[string]any:
		for n, v := range hs {
			if s, ok := text(v); ok && strings.EqualFold(n, name) {
				out = append(out, s)
			}
		}
	}
	return out
}

// parseCookies parses a Cookie header, skipping malformed pairs instead of
// giving up on the whole header.
func parseCookies(header string) []*http.Cookie {
	if cs, err := http.ParseCookie(header); err == nil {
		return cs
	}
	var out []*http.Cookie
	for part := range strings.SplitSeq(header, ";") {
		if cs, err := http.ParseCookie(strings.TrimSpace(part)); err == nil {
			out = append(out, cs...)
		}
	}
	return out
}

// HTTPStoreKey returns the key under which the HTTP store keeps the session
// whose cookie holds token: the token itself, or its hash when
// HashHTTPTokens is set (as scs does).
func (m *Manager) HTTPStoreKey(token string) string {
	if !m.HashHTTPTokens {
		return token
	}
	sum := sha256.Sum256([]byte(token))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// loadHTTP loads the HTTP session of token, or returns nil when it does not
// exist or has passed its deadline.
func (m *Manager) loadHTTP(ctx context.Context, token string) (*Session, error) {
	key := m.HTTPStoreKey(token)
	b, found, err := m.httpStore().FindCtx(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("session: load HTTP session: %w", err)
	}
	if !found {
		return nil, nil
	}
	deadline, values, err := m.codec().Decode(b)
	if err != nil {
		m.logger().Warn("session: HTTP session cannot be decoded; ignoring it (is Manager.Codec the HTTP side's codec?)", "error", err)
		return nil, nil
	}
	if !deadline.IsZero() && !time.Now().Before(deadline) {
		return nil, nil
	}
	s := newSession(token, values, deadline)
	s.storeKey = key
	return s, nil
}

// saveHTTP writes a modified HTTP session back with its own deadline.
func (m *Manager) saveHTTP(ctx context.Context, s *Session) error {
	s.mu.Lock()
	if !s.modified {
		s.mu.Unlock()
		return nil
	}
	s.modified = false
	deadline := s.deadline
	s.mu.Unlock()
	if deadline.IsZero() {
		deadline = time.Now().Add(m.lifetime())
	}
	b, err := m.codec().Encode(deadline, s.snapshot())
	if err == nil {
		err = m.httpStore().CommitCtx(ctx, s.storeKey, b, deadline)
	}
	if err != nil {
		s.mu.Lock()
		s.modified = true
		s.mu.Unlock()
		return fmt.Errorf("session: save HTTP session: %w", err)
	}
	return nil
}

// ChannelAndHTTPSession returns middleware that applies HTTPSession and
// then ChannelSession (Django's channel_and_http_session): on a message
// with an HTTP session (the connect) the session's key is stored in the
// channel session under CookieName; on later messages, which carry no
// cookie, the HTTP session is loaded again from that stored key, so
// HTTPFromContext works on every message of the connection.
func (m *Manager) ChannelAndHTTPSession() channels.Middleware {
	return func(next channels.Consumer) channels.Consumer {
		return named{"ChannelAndHTTPSession", next, func(ctx context.Context, msg *channels.Message) error {
			return m.withHTTP(ctx, msg, func(ctx context.Context) error {
				return m.withChannel(ctx, msg, func(ctx context.Context, cs *Session) error {
					if err := m.linkHTTP(ctx, cs); err != nil {
						return err
					}
					return next.Consume(ctx, msg)
				})
			})
		}}
	}
}

// linkHTTP stores the HTTP session key in the channel session, or loads the
// HTTP session from the stored key.
func (m *Manager) linkHTTP(ctx context.Context, cs *Session) error {
	h, _ := ctx.Value(httpCtxKey{}).(*httpHolder)
	if h == nil {
		return nil
	}
	name := m.cookieName()
	if h.s != nil {
		if cs.GetString(name) != h.s.key {
			cs.Put(name, h.s.key)
		}
		return nil
	}
	if token := cs.GetString(name); token != "" {
		s, err := m.loadHTTP(ctx, token)
		if err != nil {
			return err
		}
		h.s = s
	}
	return nil
}

// NewHTTPSession stores a new HTTP session holding values, as the HTTP side
// (an scs.SessionManager with the same store, codec and token hashing)
// would, with a deadline Lifetime from now, and returns its token: the
// value of the session cookie (see Cookie). It is for tests and tools;
// applications create HTTP sessions with their scs.SessionManager.
func (m *Manager) NewHTTPSession(ctx context.Context, values map[string]any) (string, error) {
	if m.Store == nil {
		return "", ErrNoStore
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("session: new token: %w", err)
	}
	token := base64.RawURLEncoding.EncodeToString(b)
	deadline := time.Now().Add(m.lifetime())
	enc, err := m.codec().Encode(deadline, values)
	if err != nil {
		return "", fmt.Errorf("session: encode HTTP session: %w", err)
	}
	if err := m.httpStore().CreateCtx(ctx, m.HTTPStoreKey(token), enc, deadline); err != nil {
		return "", fmt.Errorf("session: store HTTP session: %w", err)
	}
	return token, nil
}

// Cookie returns the session cookie carrying token, named CookieName.
func (m *Manager) Cookie(token string) *http.Cookie {
	return &http.Cookie{Name: m.cookieName(), Value: token, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode}
}

// LoadChannelSession returns the stored channel session of the connection
// whose reply channel is given, or nil when it has none. It is a snapshot
// for tests and tools: changes to it are not saved.
func (m *Manager) LoadChannelSession(ctx context.Context, replyChannel string) (*Session, error) {
	if m.Store == nil {
		return nil, ErrNoStore
	}
	key := ChannelKey(replyChannel)
	b, found, err := m.Store.FindCtx(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("session: load channel session: %w", err)
	}
	if !found {
		return nil, nil
	}
	_, values, err := m.codec().Decode(b)
	if err != nil {
		return nil, fmt.Errorf("session: decode channel session: %w", err)
	}
	return newSession(key, values, time.Time{}), nil
}

// NewHTTPManager returns an scs.SessionManager for the HTTP side of the
// application that matches m: m's HTTP store, codec, cookie name and token
// hashing, so that the sessions it writes are the ones the middleware
// reads. Adjust its other fields (Lifetime, Cookie.Secure, ...) before
// use. (Like every scs.New, it leaves behind the idle cleanup goroutine of
// the memory store scs creates by default, which scs offers no race-free
// way to stop; it wakes once a minute.)
func (m *Manager) NewHTTPManager() *scs.SessionManager {
	sm := scs.New()
	sm.Store = m.httpStore()
	sm.Codec = m.codec()
	sm.Cookie.Name = m.cookieName()
	sm.HashTokenInStore = m.HashHTTPTokens
	return sm
}
