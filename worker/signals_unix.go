//go:build unix

package worker

import (
	"os"
	"syscall"
)

// stopSignals stop a Server's Run taking new tasks (asynq's Run does the same).
var stopSignals = []os.Signal{syscall.SIGTSTP}
