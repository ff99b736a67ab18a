package soak

import (
	"os/exec"
	"syscall"
)

// setChildAttrs makes the kernel SIGKILL a child when the soak dies
// (even by SIGKILL), so no redis-server or refundd outlives it.
func setChildAttrs(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
