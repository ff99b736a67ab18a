package metrics

import (
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	"github.com/refundd/refund-canceller/internal/redistest"
)

const rulesDir = "../../deploy/prometheus/"

// promtool answers the path of promtool: in CI it must be there.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("CI: promtool is not on PATH (Debian package prometheus)")
		}
		t.Skip("promtool is not on PATH (Debian package prometheus)")
	}
	return p
}

// TestAlertRules runs promtool over the rules, their unit tests and the
// compose Prometheus config.
func TestAlertRules(t *testing.T) {
	bin := promtool(t)
	for _, args := range [][]string{
		{"check", "rules", "alerts.yml"},
		{"test", "rules", "alerts_test.yml"},
		{"check", "config", "prometheus.yml"},
	} {
		cmd := exec.Command(bin, args...)
		cmd.Dir = rulesDir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// TestAlertRulesUseExportedMetrics: every refundd_* and asynq_* name an alert
// reads is one refundd exports, so a renamed metric cannot silence an alert.
func TestAlertRulesUseExportedMetrics(t *testing.T) {
	b, err := os.ReadFile(rulesDir + "alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &file); err != nil {
		t.Fatal(err)
	}
	// asynq's collector describes its metrics by collecting them: give it a
	// Redis with one queue in it.
	r := redistest.New(t)
	queue := r.Queue(t)
	client := asynq.NewClient(r.Opt)
	defer client.Close()
	if _, err := client.Enqueue(asynq.NewTask("probe", nil), asynq.Queue(queue)); err != nil {
		t.Fatal(err)
	}
	insp := asynq.NewInspector(r.Opt)
	defer insp.Close()
	m := New(insp)
	m.ReportReadiness(func() bool { return true })
	exported := map[string]bool{}
	descs := make(chan *prometheus.Desc, 1000)
	for _, c := range m.all {
		c.Describe(descs)
	}
	close(descs)
	nameRE := regexp.MustCompile(`fqName: "([a-z_:]+)"`)
	for d := range descs {
		if n := nameRE.FindStringSubmatch(d.String()); n != nil {
			exported[n[1]] = true
		}
	}
	usedRE := regexp.MustCompile(`\b(?:refundd|asynq)_[a-z_]+\b`)
	rules := 0
	for _, g := range file.Groups {
		for _, r := range g.Rules {
			rules++
			for _, name := range usedRE.FindAllString(r.Expr, -1) {
				if !exported[name] {
					known := make([]string, 0, len(exported))
					for k := range exported {
						known = append(known, k)
					}
					sort.Strings(known)
					t.Errorf("alert %s reads %s, which refundd does not export (it exports %v)", r.Alert, name, known)
				}
			}
		}
	}
	if rules == 0 {
		t.Fatal("no rules read from alerts.yml")
	}
}
