package notify

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddyserver/caddy/v2"
)

func init() {
	// go-redis logs dial failures and reconnects through the standard log
	// package by default, bypassing Caddy's structured logging. Route them
	// to Caddy's logger at debug level: the hub logs each state change of
	// the subscription itself.
	redis.SetLogger(redisLogger{})
}

// redisLogger adapts go-redis's logger to Caddy's current default logger.
type redisLogger struct{}

// Printf implements go-redis's internal logging interface.
func (redisLogger) Printf(_ context.Context, format string, v ...any) {
	if c := caddy.Log().Named("go-redis").Check(zapcore.DebugLevel, "go-redis"); c != nil {
		c.Write(zap.String("detail", fmt.Sprintf(format, v...)))
	}
}
