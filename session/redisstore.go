package session

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/rueidis"
)

// DefaultRedisPrefix is the key prefix of RedisStore, the one scs's
// redisstore uses, so that both can share sessions.
const DefaultRedisPrefix = "scs:session:"

// RedisStore is a Store in Redis (6.2 or later), through rueidis. Every
// session is one string key that Redis expires itself. It is safe for
// concurrent use, also by several processes; its methods block on Redis.
type RedisStore struct {
	client rueidis.Client
	owned  bool
	prefix string
}

// OpenRedis connects to the Redis server at url (redis://host:port/db) and
// returns a store, under prefix (DefaultRedisPrefix when empty), that closes
// the connection on Close.
func OpenRedis(ctx context.Context, url, prefix string) (*RedisStore, error) {
	opt, err := rueidis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("session: redis url: %w", err)
	}
	opt.DisableCache = true
	// Sessions are small; rueidis's default 512 KiB pipe buffers are not
	// needed.
	opt.ReadBufferEachConn = 32 << 10
	opt.WriteBufferEachConn = 32 << 10
	client, err := rueidis.NewClient(opt)
	if err != nil {
		return nil, fmt.Errorf("session: connect to redis: %w", err)
	}
	if err := client.Do(ctx, client.B().Ping().Build()).Error(); err != nil {
		client.Close()
		return nil, fmt.Errorf("session: redis ping: %w", err)
	}
	s := NewRedisStore(client, prefix)
	s.owned = true
	return s, nil
}

// NewRedisStore returns a store on client under prefix (DefaultRedisPrefix
// when empty). Close does not close client.
func NewRedisStore(client rueidis.Client, prefix string) *RedisStore {
	if prefix == "" {
		prefix = DefaultRedisPrefix
	}
	return &RedisStore{client: client, prefix: prefix}
}

// FindCtx returns the data stored under key.
func (s *RedisStore) FindCtx(ctx context.Context, key string) ([]byte, bool, error) {
	b, err := s.client.Do(ctx, s.client.B().Get().Key(s.prefix+key).Build()).AsBytes()
	if rueidis.IsRedisNil(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("session: redis find: %w", err)
	}
	return b, true, nil
}

// CommitCtx stores b under key until expiry; an expiry in the past deletes
// the key.
func (s *RedisStore) CommitCtx(ctx context.Context, key string, b []byte, expiry time.Time) error {
	if !time.Now().Before(expiry) {
		return s.DeleteCtx(ctx, key)
	}
	cmd := s.client.B().Set().Key(s.prefix + key).Value(rueidis.BinaryString(b)).PxatMillisecondsTimestamp(expiry.UnixMilli()).Build()
	if err := s.client.Do(ctx, cmd).Error(); err != nil {
		return fmt.Errorf("session: redis commit: %w", err)
	}
	return nil
}

// CreateCtx stores b under key unless the key exists (ErrExists); it is one
// SET NX.
func (s *RedisStore) CreateCtx(ctx context.Context, key string, b []byte, expiry time.Time) error {
	if !time.Now().Before(expiry) {
		return fmt.Errorf("session: redis create %q: expiry %v is in the past", key, expiry)
	}
	cmd := s.client.B().Set().Key(s.prefix + key).Value(rueidis.BinaryString(b)).Nx().PxatMillisecondsTimestamp(expiry.UnixMilli()).Build()
	err := s.client.Do(ctx, cmd).Error()
	if rueidis.IsRedisNil(err) {
		return fmt.Errorf("%w: %q", ErrExists, key)
	}
	if err != nil {
		return fmt.Errorf("session: redis create: %w", err)
	}
	return nil
}

// DeleteCtx removes key; a missing key is not an error.
func (s *RedisStore) DeleteCtx(ctx context.Context, key string) error {
	if err := s.client.Do(ctx, s.client.B().Del().Key(s.prefix+key).Build()).Error(); err != nil {
		return fmt.Errorf("session: redis delete: %w", err)
	}
	return nil
}

// Close closes the connection when the store opened it.
func (s *RedisStore) Close() error {
	if s.owned {
		s.client.Close()
	}
	return nil
}

// Find implements scs.Store.
func (s *RedisStore) Find(key string) ([]byte, bool, error) {
	return s.FindCtx(context.Background(), key)
}

// Commit implements scs.Store.
func (s *RedisStore) Commit(key string, b []byte, expiry time.Time) error {
	return s.CommitCtx(context.Background(), key, b, expiry)
}

// Delete implements scs.Store.
func (s *RedisStore) Delete(key string) error { return s.DeleteCtx(context.Background(), key) }
