package cli

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/inmemory"
	"github.com/gochannels/channels/redislayer"
)

// LayerEnv is the environment variable that names the channel layer when no
// --layer flag is given. Unset means the in-memory layer.
const LayerEnv = "CHANNELS_LAYER"

// OpenLayer opens the channel layer named by rawURL:
//
//	"" or memory://            the in-memory layer (one process only);
//	                           query parameters capacity, expiry and
//	                           group_expiry (seconds) configure it
//	redis://, rediss://, unix://, redis+sentinel://
//	                           the Redis layer (see redislayer.ParseURL)
func OpenLayer(ctx context.Context, rawURL string) (channels.Layer, error) {
	return openLayer(ctx, rawURL, nil)
}

// openLayer is OpenLayer with the logger a Redis layer logs to (nil means
// slog.Default()).
func openLayer(ctx context.Context, rawURL string, log *slog.Logger) (channels.Layer, error) {
	if rawURL == "" || rawURL == "memory://" || strings.HasPrefix(rawURL, "memory:") {
		cfg := inmemory.Config{}
		if rawURL != "" {
			u, err := url.Parse(rawURL)
			if err != nil {
				return nil, fmt.Errorf("cli: layer URL %q: %w", rawURL, err)
			}
			q := u.Query()
			for key, dst := range map[string]*time.Duration{"expiry": &cfg.Expiry, "group_expiry": &cfg.GroupExpiry} {
				if v := q.Get(key); v != "" {
					n, err := strconv.ParseFloat(v, 64)
					if err != nil || n <= 0 {
						return nil, fmt.Errorf("cli: layer URL %q: %s must be a positive number of seconds", rawURL, key)
					}
					*dst = time.Duration(n * float64(time.Second))
				}
			}
			if v := q.Get("capacity"); v != "" {
				n, err := strconv.Atoi(v)
				if err != nil || n < 1 {
					return nil, fmt.Errorf("cli: layer URL %q: capacity must be a positive integer", rawURL)
				}
				cfg.Capacity = n
			}
		}
		return inmemory.New(cfg)
	}
	for _, scheme := range []string{"redis://", "rediss://", "unix://", "redis+sentinel://", "redis+cluster://"} {
		if strings.HasPrefix(rawURL, scheme) {
			cfg, err := redislayer.ParseURL(rawURL)
			if err != nil {
				return nil, fmt.Errorf("cli: %w", err)
			}
			cfg.Logger = log
			l, err := redislayer.New(ctx, cfg)
			if err != nil {
				return nil, fmt.Errorf("cli: %w", err)
			}
			return l, nil
		}
	}
	return nil, fmt.Errorf("cli: unknown channel layer %q (memory:// or redis://...)", rawURL)
}

// IsInMemory reports whether l only reaches one process.
func IsInMemory(l channels.Layer) bool {
	_, ok := l.(*inmemory.Layer)
	return ok
}

func closeLayer(l channels.Layer) {
	if c, ok := l.(interface{ Close() error }); ok {
		_ = c.Close()
	}
}
