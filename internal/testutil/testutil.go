// Package testutil holds helpers shared by the project's tests.
package testutil

import (
	"encoding/json"
	"flag"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
)

// Eventually polls cond every few milliseconds until it is true, failing
// the test if it is still false after within. Tests wait with it instead of
// sleeping for work to happen.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// FreePort answers a TCP port on 127.0.0.1 that was free a moment ago, for
// a server the test starts itself (a redis-server, a refundd process).
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// FreeAddr answers "127.0.0.1:<FreePort>".
func FreeAddr(t testing.TB) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
}

// GetJSON GETs url and decodes its JSON body into v, failing the test on any
// error.
func GetJSON(t testing.TB, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

// Metrics answers the body of base + "/metrics" (Prometheus' text format).
func Metrics(t testing.TB, base string) string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// MetricValue answers the value of series (a name with its labels, as
// Prometheus' text format writes it, e.g. `refundd_attempts_total{outcome="held"}`)
// in a /metrics text, and whether it is there.
func MetricValue(t testing.TB, text, series string) (float64, bool) {
	t.Helper()
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f, true
		}
	}
	return 0, false
}

// WaitTask polls the task id of queue until done says so, failing the test
// after within, and answers its last info.
func WaitTask(t testing.TB, insp *asynq.Inspector, queue, id string, within time.Duration, done func(*asynq.TaskInfo) bool) *asynq.TaskInfo {
	t.Helper()
	var info *asynq.TaskInfo
	Eventually(t, within, "task "+id, func() bool {
		i, err := insp.GetTaskInfo(queue, id)
		info = i
		return err == nil && done(i)
	})
	return info
}

// WaitingParallelism is how many parallel tests a package whose tests
// mostly wait on real servers' timers (asynq's forwarder and heartbeat, the
// sandbox, retry delays) runs at once, unless -test.parallel is given:
// they wait, they do not compute, so GOMAXPROCS (go test's default) would
// leave a 2-core machine idle while they sleep in turn.
const WaitingParallelism = 8

// RunWaiting runs m with WaitingParallelism unless the command line set
// -test.parallel; a package's TestMain calls it.
func RunWaiting(m *testing.M) int {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		_ = flag.Set("test.parallel", strconv.Itoa(WaitingParallelism))
	}
	return m.Run()
}
