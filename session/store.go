package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/alexedwards/scs/v2"
)

// Store keeps encoded sessions by key until they expire. It is scs's
// context-aware store interface plus an atomic create, so every Store in
// this package also works as the Store of an [scs.SessionManager] serving
// the HTTP side of an application, and sessions written by one are read by
// the other.
//
// Implementations must be safe for concurrent use, also from several
// processes when they share a database or a Redis server.
type Store interface {
	scs.CtxStore

	// CreateCtx stores b under key only when no unexpired entry exists
	// there; otherwise it changes nothing and returns an error wrapping
	// ErrExists. It is how two workers that both find no channel session
	// agree on which of them creates it (Django's must_create).
	CreateCtx(ctx context.Context, key string, b []byte, expiry time.Time) error
}

var (
	// ErrExists is returned by Store.CreateCtx when the key already holds an
	// unexpired session.
	ErrExists = errors.New("session: session already exists")

	// ErrStoreFull is returned by MemoryStore when it holds MaxSessions
	// unexpired sessions and a new one is committed.
	ErrStoreFull = errors.New("session: memory store is full")
)

// DefaultMaxSessions is MemoryStore's default limit.
const DefaultMaxSessions = 100_000

// MemoryStore is a Store held in the memory of one process: enough for
// runserver and tests, useless across processes. The zero value is ready to
// use. A MemoryStore is safe for concurrent use; no method blocks on
// anything but a mutex. It starts no goroutine: expired sessions are removed
// as it fills up.
type MemoryStore struct {
	// MaxSessions bounds the number of sessions held. Zero means
	// DefaultMaxSessions; a negative value means no limit (a warning is
	// logged once).
	MaxSessions int
	// Logger receives the warning about an unlimited store. Nil means
	// slog.Default().
	Logger *slog.Logger

	mu      sync.Mutex
	items   map[string]memItem
	warned  bool
	writes  int
	removed int
}

type memItem struct {
	data   []byte
	expiry time.Time
}

// NewMemoryStore returns an empty MemoryStore with the default limit.
func NewMemoryStore() *MemoryStore { return &MemoryStore{} }

func (s *MemoryStore) limit() int {
	switch {
	case s.MaxSessions > 0:
		return s.MaxSessions
	case s.MaxSessions < 0:
		if !s.warned {
			s.warned = true
			logger(s.Logger).Warn("session: MemoryStore has no session limit; memory grows with every connection until sessions expire")
		}
		return int(^uint(0) >> 1)
	}
	return DefaultMaxSessions
}

// FindCtx returns the data stored under key; found is false when there is
// none or it has expired.
func (s *MemoryStore) FindCtx(_ context.Context, key string) ([]byte, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	it, ok := s.items[key]
	if !ok || !time.Now().Before(it.expiry) {
		return nil, false, nil
	}
	return append([]byte(nil), it.data...), true, nil
}

// CommitCtx stores b under key until expiry, replacing what was there.
func (s *MemoryStore) CommitCtx(_ context.Context, key string, b []byte, expiry time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.put(key, b, expiry)
}

// CreateCtx stores b under key unless an unexpired session is there
// (ErrExists).
func (s *MemoryStore) CreateCtx(_ context.Context, key string, b []byte, expiry time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if it, ok := s.items[key]; ok && time.Now().Before(it.expiry) {
		return fmt.Errorf("%w: %q", ErrExists, key)
	}
	return s.put(key, b, expiry)
}

func (s *MemoryStore) put(key string, b []byte, expiry time.Time) error {
	now := time.Now()
	if s.items == nil {
		s.items = make(map[string]memItem)
	}
	if !now.Before(expiry) {
		delete(s.items, key)
		return nil
	}
	if _, ok := s.items[key]; !ok && len(s.items) >= s.limit() {
		s.sweep(now)
		if len(s.items) >= s.limit() {
			return fmt.Errorf("%w (%d sessions)", ErrStoreFull, len(s.items))
		}
	}
	s.writes++
	if s.writes%1024 == 0 {
		s.sweep(now)
	}
	s.items[key] = memItem{data: append([]byte(nil), b...), expiry: expiry}
	return nil
}

func (s *MemoryStore) sweep(now time.Time) {
	for k, it := range s.items {
		if !now.Before(it.expiry) {
			delete(s.items, k)
			s.removed++
		}
	}
}

// DeleteCtx removes key; a missing key is not an error.
func (s *MemoryStore) DeleteCtx(_ context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.items, key)
	return nil
}

// Len returns the number of sessions held, expired or not.
func (s *MemoryStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.items)
}

// Find implements scs.Store.
func (s *MemoryStore) Find(key string) ([]byte, bool, error) {
	return s.FindCtx(context.Background(), key)
}

// Commit implements scs.Store.
func (s *MemoryStore) Commit(key string, b []byte, expiry time.Time) error {
	return s.CommitCtx(context.Background(), key, b, expiry)
}

// Delete implements scs.Store.
func (s *MemoryStore) Delete(key string) error { return s.DeleteCtx(context.Background(), key) }

// Adapt makes any scs store (scs's own redisstore, pgxstore, ...) a Store.
// Stores that already are a Store are returned as they are. For the others,
// CreateCtx is a find followed by a commit, which is not atomic: two workers
// creating the same channel session at once may both succeed, and the later
// save wins. Prefer this package's stores, whose create is atomic.
func Adapt(s scs.Store) Store {
	if st, ok := s.(Store); ok {
		return st
	}
	return adapted{s}
}

type adapted struct{ s scs.Store }

func (a adapted) FindCtx(ctx context.Context, key string) ([]byte, bool, error) {
	if c, ok := a.s.(scs.CtxStore); ok {
		return c.FindCtx(ctx, key)
	}
	return a.s.Find(key)
}

func (a adapted) CommitCtx(ctx context.Context, key string, b []byte, expiry time.Time) error {
	if c, ok := a.s.(scs.CtxStore); ok {
		return c.CommitCtx(ctx, key, b, expiry)
	}
	return a.s.Commit(key, b, expiry)
}

func (a adapted) DeleteCtx(ctx context.Context, key string) error {
	if c, ok := a.s.(scs.CtxStore); ok {
		return c.DeleteCtx(ctx, key)
	}
	return a.s.Delete(key)
}

func (a adapted) CreateCtx(ctx context.Context, key string, b []byte, expiry time.Time) error {
	_, found, err := a.FindCtx(ctx, key)
	if err != nil {
		return err
	}
	if found {
		return fmt.Errorf("%w: %q", ErrExists, key)
	}
	return a.CommitCtx(ctx, key, b, expiry)
}

func (a adapted) Find(key string) ([]byte, bool, error) { return a.s.Find(key) }
func (a adapted) Commit(key string, b []byte, expiry time.Time) error {
	return a.s.Commit(key, b, expiry)
}
func (a adapted) Delete(key string) error { return a.s.Delete(key) }

func logger(l *slog.Logger) *slog.Logger {
	if l != nil {
		return l
	}
	return slog.Default()
}
