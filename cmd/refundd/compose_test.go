package main

import (
	"bufio"
	"os"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/refundd/refund-canceller/internal/config"
)

// Every variable docker-compose.yml gives refundd is one refundd knows, and
// with refundd.env.example the file resolves to a configuration refundd
// accepts at start.
func TestComposeEnvironmentIsKnown(t *testing.T) {
	b, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			Environment map[string]string `yaml:"environment"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(b, &compose); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	env := compose.Services["refundd"].Environment
	if len(env) == 0 {
		t.Fatal("no environment for refundd in docker-compose.yml")
	}
	known := map[string]bool{}
	for _, v := range config.Vars {
		known[v.Name] = true
	}
	for name := range env {
		if !known[name] {
			t.Errorf("docker-compose.yml gives refundd %s, which refundd does not know", name)
		}
	}

	example := readEnvFile(t, "../../refundd.env.example")
	for name := range example {
		if !known[name] && !strings.HasPrefix(name, "SANDBOX_") {
			t.Errorf("refundd.env.example sets %s, which nothing reads", name)
		}
	}
	// Resolve ${NAME:-default} as compose does, with the example .env.
	subst := regexp.MustCompile(`\$\{([A-Z0-9_]+)(?::-([^}]*))?\}`)
	resolved := map[string]string{}
	for name, val := range env {
		resolved[name] = subst.ReplaceAllStringFunc(val, func(m string) string {
			p := subst.FindStringSubmatch(m)
			if v, ok := example[p[1]]; ok && v != "" {
				return v
			}
			return p[2]
		})
	}
	if _, err := config.Load(func(k string) string { return resolved[k] }); err != nil {
		t.Fatalf("compose + refundd.env.example do not start refundd: %v", err)
	}
}

func readEnvFile(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: bad line %q", path, line)
		}
		m[k] = v
	}
	return m
}
