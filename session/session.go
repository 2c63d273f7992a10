package session

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"sync"
	"time"

	"github.com/gochannels/channels/internal/normal"
)

// Session is one session's data: a map from text keys to values, loaded
// from a Store and saved back by the middleware that loaded it.
//
// Values must survive the Manager's codec: with the default scs.GobCodec
// that means the basic Go types (string, bool, int, int64, float64, []byte,
// time.Time, ...) and types registered with gob.Register, exactly as with
// scs. A Session is safe for concurrent use.
type Session struct {
	mu       sync.Mutex
	key      string // the key applications see
	storeKey string // the key in the store (a hash of key for hashed HTTP tokens)
	values   map[string]any
	deadline time.Time // HTTP sessions keep the deadline scs gave them
	modified bool
}

func newSession(key string, values map[string]any, deadline time.Time) *Session {
	if values == nil {
		values = make(map[string]any)
	}
	return &Session{key: key, storeKey: key, values: values, deadline: deadline}
}

// Key returns the key the session is stored under: for a channel session
// ChannelKey(reply channel), for an HTTP session the cookie's token.
func (s *Session) Key() string { return s.key }

// Get returns the value of key, or nil.
func (s *Session) Get(key string) any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.values[key]
}

// Has reports whether key is set.
func (s *Session) Has(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.values[key]
	return ok
}

// GetString returns the text value of key, or "".
func (s *Session) GetString(key string) string {
	v, _ := s.Get(key).(string)
	return v
}

// GetBool returns the boolean value of key, or false.
func (s *Session) GetBool(key string) bool {
	v, _ := s.Get(key).(bool)
	return v
}

// GetInt returns the integer value of key and whether there is one. Every
// Go integer type is accepted, and float64 values that are whole numbers.
func (s *Session) GetInt(key string) (int64, bool) {
	return normal.ToInt(s.Get(key))
}

// Put sets key to value and marks the session modified.
func (s *Session) Put(key string, value any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.values[key] = value
	s.modified = true
}

// Remove deletes key, marking the session modified if it was set.
func (s *Session) Remove(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.values[key]; ok {
		delete(s.values, key)
		s.modified = true
	}
}

// Clear deletes every key. An emptied channel session is deleted from the
// store when it is saved, so a logout sticks.
func (s *Session) Clear() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.values) > 0 {
		clear(s.values)
		s.modified = true
	}
}

// Keys returns the session's keys, sorted.
func (s *Session) Keys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]string, 0, len(s.values))
	for k := range s.values {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Len returns the number of keys.
func (s *Session) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.values)
}

// Modified reports whether the session changed since it was loaded or last
// saved.
func (s *Session) Modified() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.modified
}

// snapshot returns a copy of the values for encoding.
func (s *Session) snapshot() map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]any, len(s.values))
	for k, v := range s.values {
		out[k] = v
	}
	return out
}

// ChannelKey returns the key of the channel session of a connection: "chn"
// followed by the first 29 hexadecimal digits of the SHA-256 of its reply
// channel name, 32 characters in all (the layout of Django Channels' keys,
// with SHA-256 for their MD5).
func ChannelKey(replyChannel string) string {
	sum := sha256.Sum256([]byte(replyChannel))
	return "chn" + hex.EncodeToString(sum[:])[:29]
}

type (
	channelCtxKey  struct{}
	httpCtxKey     struct{}
	userCtxKey     struct{}
	orderingCtxKey struct{}
)

// FromContext returns the channel session the ChannelSession middleware (or
// one that implies it) attached to ctx, or nil.
func FromContext(ctx context.Context) *Session {
	s, _ := ctx.Value(channelCtxKey{}).(*Session)
	return s
}

// HTTPFromContext returns the HTTP session the HTTPSession middleware (or
// one that implies it) attached to ctx, or nil when the message carried no
// session cookie or its session does not exist.
func HTTPFromContext(ctx context.Context) *Session {
	if h, ok := ctx.Value(httpCtxKey{}).(*httpHolder); ok {
		return h.s
	}
	return nil
}

// replace swaps in values read again from the store.
func (s *Session) replace(values map[string]any) {
	if values == nil {
		values = make(map[string]any)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.values = values
	s.modified = false
}
