package worker_test

import (
	"os"
	"testing"

	"github.com/refundd/refund-canceller/internal/testutil"
)

func TestMain(m *testing.M) { os.Exit(testutil.RunWaiting(m)) }
