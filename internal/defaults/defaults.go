// Package defaults holds the one rule every configuration struct in this
// project follows for its optional numbers (rpcclient.Config, worker.Policy,
// rpctest.Config): zero means "the default", negative is an error naming the
// field.
package defaults

import "fmt"

// Fill sets *v to def when it is zero, and answers an error naming the field
// when it is negative. Callers prefix their package: "rpcclient: %w".
func Fill[T ~int | ~int64](name string, v *T, def T) error {
	switch {
	case *v < 0:
		return fmt.Errorf("%s %v: must not be negative", name, *v)
	case *v == 0:
		*v = def
	}
	return nil
}
