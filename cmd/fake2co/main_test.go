package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/refundd/refund-canceller/internal/testutil"
)

// startFake2co runs the program in-process on a free port and answers its base URL.
func startFake2co(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan net.Addr, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- run(ctx, append([]string{"-addr", "127.0.0.1:0", "-log-level", "warn"}, args...), func(a net.Addr) { addrc <- a })
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("fake2co: %v", err)
		}
	})
	select {
	case a := <-addrc:
		return "http://" + a.String()
	case err := <-errc:
		t.Fatalf("fake2co did not start: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("fake2co did not start in 10s")
	}
	return ""
}

// TestVendorPHPSample runs 2Checkout's own PHP sample for cancelRefund
// (testdata/cancel_refund_sample.php, copied verbatim from the vendor's page)
// against fake2co, with only its Configuration constants changed.
func TestVendorPHPSample(t *testing.T) {
	if testing.Short() {
		t.Skip("runs PHP; not with -short")
	}
	php, err := exec.LookPath("php")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("php is not on PATH; CI must install php-cli and php-curl")
		}
		t.Skip("php not on PATH (apt-get install php-cli php-curl)")
	}
	sample, err := os.ReadFile("testdata/cancel_refund_sample.php")
	if err != nil {
		t.Fatal(err)
	}
	base := startFake2co(t, "-merchant-code", "AVANGATE", "-secret-key", "SECRET_KEY", "-seed", "1")
	script := setConst(t, string(sample), "URL", base+"/rpc/6.0")
	script = setConst(t, script, "ORDER_REF", "SBX00001")
	path := filepath.Join(t.TempDir(), "sample.php")
	if err := os.WriteFile(path, []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(php, path).CombinedOutput()
	if err != nil {
		t.Fatalf("php: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), `"result":"RF-SBX00001"`) || !strings.Contains(string(out), `string(11) "RF-SBX00001"`) {
		t.Fatalf("the sample did not cancel the refund:\n%s", out)
	}
	var refund struct{ Status string }
	testutil.GetJSON(t, base+"/admin/refunds/SBX00001", &refund)
	if refund.Status != "CANCELED" {
		t.Fatalf("refund status %s", refund.Status)
	}
	var stats struct {
		Logins int
		Calls  map[string]map[string]int
	}
	testutil.GetJSON(t, base+"/admin/stats", &stats)
	if stats.Logins != 1 || stats.Calls["cancelRefund"]["ok"] != 1 {
		t.Fatalf("stats %+v", stats)
	}
}

// TestSampleIsVerbatim checks the testdata copy against the vendor reference
// when the project's shared/ folder is beside the checkout.
func TestSampleIsVerbatim(t *testing.T) {
	ref, err := os.ReadFile("../../../shared/reference/2checkout-cancel-refund.md")
	if err != nil {
		t.Skip("shared/reference not beside the checkout")
	}
	sample, _ := os.ReadFile("testdata/cancel_refund_sample.php")
	if !strings.Contains(string(ref), "```php\n"+string(sample)+"```") {
		t.Fatal("testdata/cancel_refund_sample.php differs from the vendor's published sample")
	}
}

func setConst(t *testing.T, src, name, value string) string {
	t.Helper()
	re := regexp.MustCompile(`(public const ` + name + ` = )'[^']*';`)
	if !re.MatchString(src) {
		t.Fatalf("constant %s not found in the sample", name)
	}
	return re.ReplaceAllString(src, fmt.Sprintf("${1}'%s';", value))
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-fault", `{"kind":"nope"}`},
		{"-session-ttl", "-1s"},
		{"-addr", "256.0.0.1:1"},
	} {
		if err := run(context.Background(), args, nil); err == nil {
			t.Errorf("%v: accepted", args)
		}
	}
}

func TestHelpExitsZero(t *testing.T) {
	for _, args := range [][]string{{"-help"}, {"-h"}, {"--help"}} {
		if err := run(context.Background(), args, nil); err != nil {
			t.Errorf("%v: %v", args, err)
		}
	}
}

// -documented-only: an error object carries no data.error_code.
func TestDocumentedOnlyFlag(t *testing.T) {
	base := startFake2co(t, "-documented-only")
	resp, err := http.Post(base+"/rpc/6.0/", "application/json", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"cancelRefund","params":["nosession","X1"]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Error map[string]any `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || r.Error["code"] == nil || r.Error["message"] == nil {
		t.Fatalf("%+v %v", r, err)
	}
	if _, has := r.Error["data"]; has {
		t.Fatalf("data in documented-only mode: %+v", r.Error)
	}
}
