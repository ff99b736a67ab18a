// Package logging builds the project's zap loggers from LOG_LEVEL and
// LOG_FORMAT, and routes through them what libraries would log on their own,
// so that with LOG_FORMAT=json every line the process writes is JSON:
// RouteGlobal takes go-redis's internal logger and the standard library's
// log package (asynq's metrics collector, asynqmon); ForAsynq adapts the
// logger given to the asynq server.
package logging

import (
	"context"
	"fmt"
	"io"
	stdlog "log"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// New builds a logger writing to stderr. level is debug, info, warn or error
// (default info); format is json (default) or console.
func New(level, format string) (*zap.Logger, error) { return NewTo(os.Stderr, level, format) }

// NewTo is New writing to w (the benchmark logs to io.Discard, so it pays for
// encoding every line but not for a terminal).
func NewTo(w io.Writer, level, format string) (*zap.Logger, error) {
	lvl := zapcore.InfoLevel
	if level != "" {
		if err := lvl.UnmarshalText([]byte(level)); err != nil {
			return nil, fmt.Errorf("LOG_LEVEL %q: want debug, info, warn or error", level)
		}
	}
	var enc zapcore.Encoder
	switch format {
	case "", "json":
		ec := zap.NewProductionEncoderConfig()
		ec.EncodeTime = zapcore.RFC3339NanoTimeEncoder
		enc = zapcore.NewJSONEncoder(ec)
	case "console":
		ec := zap.NewDevelopmentEncoderConfig()
		ec.EncodeTime = zapcore.TimeEncoderOfLayout("15:04:05.000")
		enc = zapcore.NewConsoleEncoder(ec)
	default:
		return nil, fmt.Errorf("LOG_FORMAT %q: want json or console", format)
	}
	core := zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(w)), lvl)
	return zap.New(core, zap.AddCaller(), zap.AddStacktrace(zapcore.DPanicLevel)), nil
}

// RouteGlobal sends go-redis's internal log (dial failures, pool trouble)
// and the standard library's log package (asynq's metrics collector,
// asynqmon) to log, at warn level. Both are process-wide: the first call
// installs the routes, and every call points them at its log, so main (or
// a test running main's code again) may call it with each logger it builds.
func RouteGlobal(log *zap.Logger) {
	global.Store(log.WithOptions(zap.WithCaller(false)))
	installOnce.Do(func() {
		redis.SetLogger(redisLogger{})
		stdlog.SetFlags(0)
		stdlog.SetPrefix("")
		stdlog.SetOutput(stdWriter{})
	})
}

var (
	installOnce sync.Once
	global      atomic.Pointer[zap.Logger]
)

// redisLogger is go-redis's internal.Logging on the routed logger.
type redisLogger struct{}

func (redisLogger) Printf(_ context.Context, format string, v ...any) {
	global.Load().Named("redis").Warn(strings.TrimPrefix(fmt.Sprintf(format, v...), "redis: "))
}

// stdWriter is the standard logger's output on the routed logger: one
// entry per line.
type stdWriter struct{}

func (stdWriter) Write(p []byte) (int, error) {
	global.Load().Named("stdlog").Warn(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// ForAsynq adapts log for the asynq server (worker.ServerConfig.Logger).
// asynq follows every archived task with its own warning "Retry exhausted
// for task id=…", even one the handler ended on purpose (asynq.SkipRetry)
// and has already logged as the refusal it is; ForAsynq lowers that line to
// debug, so a permanent refusal is logged once. The handler ends every task
// it archives with a logged reason; asynq's MaxRetry is only a backstop.
func ForAsynq(log *zap.Logger) *zap.Logger {
	return log.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core { return asynqCore{c} }))
}

// retryExhausted starts the line asynq writes when it archives a task.
const retryExhausted = "Retry exhausted for task"

type asynqCore struct{ zapcore.Core }

func (c asynqCore) With(fields []zapcore.Field) zapcore.Core { return asynqCore{c.Core.With(fields)} }

func (c asynqCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if e.Level == zapcore.WarnLevel && strings.HasPrefix(e.Message, retryExhausted) {
		e.Level = zapcore.DebugLevel
	}
	return c.Core.Check(e, ce)
}
