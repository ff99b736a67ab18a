//go:build !linux

package soak

import "os/exec"

// setChildAttrs does nothing outside Linux: the soak's own cleanup stops
// its children.
func setChildAttrs(*exec.Cmd) {}
