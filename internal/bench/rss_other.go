//go:build !unix

package bench

import "os"

func maxRSS(*os.ProcessState) int64 { return 0 }

func terminate(p *os.Process) error { return p.Signal(os.Interrupt) }
