package soak

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// modulePath is the module whose cmd/refundd the soak builds.
const modulePath = "github.com/refundd/refund-canceller"

// buildReplica builds cmd/refundd into dir and answers the binary's path.
// It finds the module root with `go env GOMOD` from the working directory,
// so the soak runs from anywhere inside the repository.
func buildReplica(ctx context.Context, dir string) (string, error) {
	root, err := moduleRoot(ctx)
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "refundd")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/refundd")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/refundd in %s: %w\n%s", root, err, out)
	}
	return bin, nil
}

// moduleRoot answers the directory of this module's go.mod.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside a Go module: run refundsoak from the repository (" + modulePath + ")")
	}
	b, err := os.ReadFile(gomod)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", gomod, err)
	}
	if !strings.Contains(string(b), "module "+modulePath+"\n") {
		return "", fmt.Errorf("%s is not module %s: run refundsoak from its repository", gomod, modulePath)
	}
	return filepath.Dir(gomod), nil
}

// replica is one refundd child process.
type replica struct {
	name string
	log  string // its stdout and stderr
	cmd  *exec.Cmd
	done chan struct{} // closed when it has exited
	err  error         // its exit, once done is closed
}

// startReplica starts bin with env (KEY=VALUE), its output appended to
// logPath.
func startReplica(name, bin string, env []string, logPath string) (*replica, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("replica %s log: %w", name, err)
	}
	defer f.Close() // the child holds its own descriptor
	cmd := exec.Command(bin)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = f, f
	setChildAttrs(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start replica %s: %w", name, err)
	}
	r := &replica{name: name, log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() { r.err = cmd.Wait(); close(r.done) }()
	return r, nil
}

// Kill sends SIGKILL and waits for the exit.
func (r *replica) Kill() {
	_ = r.cmd.Process.Kill()
	<-r.done
}

// Stop sends SIGTERM and waits for the exit, SIGKILL after within.
func (r *replica) Stop(within time.Duration) error {
	select {
	case <-r.done:
		return fmt.Errorf("replica %s had exited: %v (log: %s)", r.name, r.err, r.log)
	default:
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
		return nil
	case <-time.After(within):
		r.Kill()
		return fmt.Errorf("replica %s did not stop within %s of SIGTERM (killed; log: %s)", r.name, within, r.log)
	}
}

// Exited reports whether the process has ended on its own.
func (r *replica) Exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}
