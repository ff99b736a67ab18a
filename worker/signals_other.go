//go:build !unix

package worker

import "os"

// stopSignals stop a Server's Run taking new tasks: none here (no SIGTSTP).
var stopSignals []os.Signal
