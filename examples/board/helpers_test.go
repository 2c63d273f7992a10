package main

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/gochannels/channels/internal/testenv"
	"github.com/gochannels/channels/redislayer"
)

// redisLayerURL returns REDIS_URL with a random key prefix, flushed when
// the test ends.
func redisLayerURL(t *testing.T) string {
	t.Helper()
	u, err := url.Parse(testenv.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("prefix", strings.TrimSuffix(testenv.Prefix("board"), ":"))
	u.RawQuery = q.Encode()
	layerURL := u.String()
	t.Cleanup(func() {
		if l, err := redislayer.Open(context.Background(), layerURL); err == nil {
			_ = l.Flush(context.Background())
			l.Close()
		}
	})
	return layerURL
}

// pgSchema creates a schema of its own in DATABASE_URL's database, dropped
// when the test ends, and returns the URL that uses it and a connection to
// it.
func pgSchema(t testing.TB) (string, *pgx.Conn) {
	t.Helper()
	base := testenv.DatabaseURL(t)
	ctx := context.Background()
	schema := strings.ReplaceAll(strings.TrimSuffix(testenv.Prefix("board"), ":"), "-", "_")
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		testenv.Missing(t, "PostgreSQL at DATABASE_URL: %v", err)
	}
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = admin.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
		_ = admin.Close(context.Background())
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	conn, err := pgx.Connect(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return u.String(), conn
}
