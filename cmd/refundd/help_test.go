package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// --help answers 0 (a nil error) for every command, the demo included.
func TestHelpEverywhere(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}, {"demo", "--help"}, {"demo", "-h"}} {
		var out bytes.Buffer
		if err := run(context.Background(), args, func(string) string { return "" }, &out); err != nil || !strings.Contains(out.String(), "Usage") {
			t.Errorf("%v: %v, %.100q", args, err, out.String())
		}
	}
}
