//go:build !unix

package bench

import (
	"errors"
	"os"
	"time"
)

func peakRSS(*os.Process) (int64, error) { return 0, errors.New("peak RSS: only measured on Linux") }

func terminate(p *os.Process) error { return p.Signal(os.Interrupt) }

func cpuTime() time.Duration { return 0 }
