//go:build unix

package bench

import (
	"os"
	"syscall"
)

// maxRSS answers an ended process's peak resident set in bytes (Linux
// reports ru_maxrss in KiB).
func maxRSS(ps *os.ProcessState) int64 {
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
		return int64(ru.Maxrss) * 1024
	}
	return 0
}

func terminate(p *os.Process) error { return p.Signal(syscall.SIGTERM) }
