package bench

import (
	"bufio"
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisSample is Redis's command count (INFO commandstats, commands run by
// scripts included, the benchmark's own INFO calls excluded) and CPU time.
type redisSample struct {
	at    time.Time
	calls int64
	cpu   float64 // seconds, user + sys
}

func sampleRedis(ctx context.Context, rc *redis.Client) (redisSample, error) {
	info, err := rc.Info(ctx, "commandstats", "cpu").Result()
	if err != nil {
		return redisSample{}, err
	}
	s := redisSample{at: time.Now()}
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		name, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch {
		case name == "used_cpu_sys" || name == "used_cpu_user":
			f, _ := strconv.ParseFloat(val, 64)
			s.cpu += f
		case strings.HasPrefix(name, "cmdstat_") && name != "cmdstat_info":
			calls, _, _ := strings.Cut(strings.TrimPrefix(val, "calls="), ",")
			n, _ := strconv.ParseInt(calls, 10, 64)
			s.calls += n
		}
	}
	return s, sc.Err()
}

// idleLoad is what Redis did per second between two samples.
type idleLoad struct {
	commands float64 // per second
	cpuMS    float64 // Redis CPU milliseconds per second
}

func loadBetween(a, b redisSample) idleLoad {
	secs := b.at.Sub(a.at).Seconds()
	return idleLoad{commands: float64(b.calls-a.calls) / secs, cpuMS: (b.cpu - a.cpu) * 1000 / secs}
}

func (l idleLoad) minus(o idleLoad) idleLoad {
	return idleLoad{commands: max(l.commands-o.commands, 0), cpuMS: max(l.cpuMS-o.cpuMS, 0)}
}
