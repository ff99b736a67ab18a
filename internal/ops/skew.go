package ops

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Defaults of SkewConfig.
const (
	// DefaultMaxSkew is how far this replica's clock may be from Redis's
	// before it is unready (CLOCK_SKEW_MAX). Cut-offs are reckoned by each
	// replica's clock, and asynq's recoverer takes a task whose lease looks
	// expired by its clock: a replica about a minute ahead re-delivers tasks
	// still running elsewhere.
	DefaultMaxSkew = 5 * time.Second
	// DefaultSkewInterval is how often the skew is measured.
	DefaultSkewInterval = 30 * time.Second
)

// SkewObserver is told each skew measured (metrics).
type SkewObserver interface {
	ObserveClockSkew(d time.Duration)
}

// SkewConfig configures a ClockSkew.
type SkewConfig struct {
	// RedisTime answers Redis's TIME. Required.
	RedisTime func(ctx context.Context) (time.Time, error)
	// Max: a skew larger than this either way makes Err non-nil. Default
	// DefaultMaxSkew.
	Max time.Duration
	// Interval between measurements in Run. Default DefaultSkewInterval.
	Interval time.Duration
	// Now is this replica's clock. Default time.Now.
	Now func() time.Time
	// Logger is told when the skew goes past Max or comes back. Default nop.
	Logger *zap.Logger
	// Observer, if set, is told each skew measured.
	Observer SkewObserver
}

// ClockSkew measures this replica's clock against Redis's: at start and
// then every Interval (Run). Err says whether the last measurement was
// within Max; readiness asks it (Checks.ClockSkew).
type ClockSkew struct {
	cfg SkewConfig

	mu   sync.Mutex
	err  error // the last measurement's verdict; errNotMeasured before one
	over bool  // the last measurement was past Max
}

var errNotMeasured = errors.New("the clock's skew against Redis has not been measured yet")

// NewClockSkew returns a ClockSkew not yet measured: Err is non-nil until
// the first measurement.
func NewClockSkew(cfg SkewConfig) (*ClockSkew, error) {
	if cfg.RedisTime == nil {
		return nil, errors.New("ops: SkewConfig.RedisTime is required")
	}
	if cfg.Max <= 0 {
		cfg.Max = DefaultMaxSkew
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultSkewInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	return &ClockSkew{cfg: cfg, err: errNotMeasured}, nil
}

// Measure reads Redis's TIME once and records the skew: this clock at the
// middle of the round trip minus Redis's. Half the round trip is the
// measurement's uncertainty, given to the replica's favour: a slow Redis
// does not make it unready (the redis check says whether Redis is slow).
// It answers the skew, or the error reading TIME (the verdict is then kept
// from the last measurement).
func (s *ClockSkew) Measure(ctx context.Context) (time.Duration, error) {
	before := s.cfg.Now()
	rt, err := s.cfg.RedisTime(ctx)
	after := s.cfg.Now()
	if err != nil {
		return 0, fmt.Errorf("read Redis TIME: %w", err)
	}
	half := after.Sub(before) / 2
	skew := before.Add(half).Sub(rt)
	if s.cfg.Observer != nil {
		s.cfg.Observer.ObserveClockSkew(skew)
	}
	var verdict error
	if over := skew.Abs() - half; over > s.cfg.Max {
		dir := "ahead of"
		if skew < 0 {
			dir = "behind"
		}
		verdict = fmt.Errorf("this replica's clock is %v %s Redis's (TIME), more than CLOCK_SKEW_MAX %v: fix its time sync (NTP)",
			skew.Abs().Round(time.Millisecond), dir, s.cfg.Max)
	}
	s.mu.Lock()
	wasOver := s.over
	s.err, s.over = verdict, verdict != nil
	s.mu.Unlock()
	switch {
	case verdict != nil && !wasOver:
		s.cfg.Logger.Warn("clock skew past CLOCK_SKEW_MAX: the replica is not ready", zap.Duration("skew", skew), zap.Duration("max", s.cfg.Max))
	case verdict == nil && wasOver:
		s.cfg.Logger.Info("clock skew back within CLOCK_SKEW_MAX: the replica is ready again", zap.Duration("skew", skew), zap.Duration("max", s.cfg.Max))
	}
	return skew, nil
}

// Err answers nil if the last measurement was within Max, else why not.
func (s *ClockSkew) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Run measures now and then every Interval until ctx ends, each
// measurement bounded by 2s.
func (s *ClockSkew) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		mctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if _, err := s.Measure(mctx); err != nil && ctx.Err() == nil {
			s.cfg.Logger.Debug("clock skew not measured", zap.Error(err))
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
