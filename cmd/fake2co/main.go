// Command fake2co serves the sandbox 2Checkout JSON-RPC 6.0 server (package
// rpctest) as a program: the RPC endpoint at /rpc/6.0/ and the admin API at
// /admin/. See docs/sandbox.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/refundd/refund-canceller/internal/logging"
	"github.com/refundd/refund-canceller/rpcclient/rpctest"
)

type faultFlags []rpctest.FaultRule

func (f *faultFlags) String() string { return fmt.Sprint(len(*f), " rules") }
func (f *faultFlags) Set(v string) error {
	rules, err := rpctest.ParseFaultRules([]byte(v))
	if err != nil {
		return err
	}
	*f = append(*f, rules...)
	return nil
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], nil); err != nil {
		fmt.Fprintln(os.Stderr, "fake2co:", err)
		os.Exit(1)
	}
}

// run serves until ctx ends. onListen, if set, is told the bound address.
func run(ctx context.Context, args []string, onListen func(net.Addr)) error {
	fs := flag.NewFlagSet("fake2co", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:9090", "listen address")
	code := fs.String("merchant-code", envOr("TCO_MERCHANT_CODE", rpctest.DefaultMerchantCode), "merchant code login accepts (env TCO_MERCHANT_CODE)")
	secret := fs.String("secret-key", "", "secret key login accepts (env TCO_SECRET_KEY; default "+rpctest.DefaultSecretKey+")")
	ttl := fs.Duration("session-ttl", rpctest.DefaultSessionTTL, "session lifetime")
	window := fs.Duration("window", rpctest.DefaultWindow, "how long after initiation a refund can be cancelled")
	seed := fs.Int("seed", 0, "seed N cancellable refunds initiated now, order refs SBX00001…")
	faultSeed := fs.Int64("fault-seed", 1, "seed of the fault dice")
	logLevel := fs.String("log-level", "info", "debug logs every call")
	documentedOnly := fs.Bool("documented-only", false, "speak only what 2Checkout documents: errors without data.error_code, getOrder without the refund fields")
	var faults faultFlags
	fs.Var(&faults, "fault", `fault rule as JSON (repeatable), e.g. '{"method":"cancelRefund","kind":"status","status":503,"probability":0.2}'`)
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(os.Stdout)
		fs.Usage()
		return nil
	} else if err != nil {
		return err
	}
	if *secret == "" {
		*secret = envOr("TCO_SECRET_KEY", rpctest.DefaultSecretKey)
	}
	log, err := logging.New(*logLevel, "console")
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()

	sb, err := rpctest.New(rpctest.Config{MerchantCode: *code, SecretKey: *secret, SessionTTL: *ttl, Window: *window, FaultSeed: *faultSeed,
		DocumentedOnly: *documentedOnly, Logger: log})
	if err != nil {
		return err
	}
	defer sb.Close()
	if err := sb.SetFaults(faults...); err != nil {
		return err
	}
	var refs []string
	for i := 1; i <= *seed; i++ {
		refs = append(refs, fmt.Sprintf("SBX%05d", i))
		if err := sb.Seed(rpctest.Refund{OrderRef: refs[i-1]}); err != nil {
			return err
		}
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: sb, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 2 * time.Minute}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	base := "http://" + ln.Addr().String()
	log.Info("sandbox 2Checkout listening",
		zap.String("rpc", base+"/rpc/6.0/"), zap.String("admin", base+"/admin/"),
		zap.String("merchant_code", *code), zap.Int("seeded", len(refs)), zap.String("seeded_refs", summarize(refs)),
		zap.Int("fault_rules", len(faults)), zap.Bool("documented_only", *documentedOnly))
	if onListen != nil {
		onListen(ln.Addr())
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sb.Close() // release hanging requests first
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func summarize(refs []string) string {
	if len(refs) <= 3 {
		return strings.Join(refs, ",")
	}
	return refs[0] + "…" + refs[len(refs)-1]
}
