package role

import (
	"context"
	"log/slog"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/terminator-gw/terminator/discovery"
	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/services"
)

// background is a process started in the background, its log in a
// buffer.
type background struct {
	logs *logBuffer
	done chan struct{} // closed when Start returned
	p    *Process
	err  error
}

// startProcess starts role in the background; the process stops when the
// test ends.
func startProcess(t *testing.T, ctx context.Context, role string, cfg Config) *background {
	t.Helper()
	b := &background{logs: &logBuffer{}, done: make(chan struct{})}
	log := slog.New(slog.NewTextHandler(b.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	go func() {
		defer close(b.done)
		b.p, b.err = Start(ctx, role, cfg, log)
	}()
	t.Cleanup(func() {
		<-b.done // bounded by ctx
		if b.p != nil {
			b.p.Stop()
		}
	})
	return b
}

// wait waits (30s at most) for the start to end, and fails the test if it
// failed.
func (b *background) wait(t *testing.T) *Process {
	t.Helper()
	select {
	case <-b.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("not started within 30s; logs:\n%s", b.logs)
	}
	if b.err != nil {
		t.Fatalf("start: %v; logs:\n%s", b.err, b.logs)
	}
	return b.p
}

// registeredAt is the etcd revision at which service's newest
// registration was created, or 0 without one.
func registeredAt(t *testing.T, cli *clientv3.Client, service string) int64 {
	t.Helper()
	var rev int64
	for _, kv := range registrationKeys(t, cli, service) {
		rev = max(rev, kv.CreateRevision)
	}
	return rev
}

// startCallee starts a bus node of service and registers it in etcd, as
// an instance of it would; both go when the test ends. It returns the
// revision of the registration.
func startCallee(t *testing.T, cli *clientv3.Client, service string) int64 {
	t.Helper()
	n, err := nanobus.NewNode(nanobus.Config{Service: service, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	reg, err := discovery.Register(ctx, cli, discovery.RegistrationOf(n), discovery.RegisterOptions{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	return registeredAt(t, cli, service)
}

// A service is announced only once it reaches an instance of every service
// it calls: web, started before profiles, visits, flirts and
// notifications, is registered after them, not before.
func TestServiceRegistersOnceItReachesItsCallees(t *testing.T) {
	endpoints, cli := etcdFor(t)
	cfg := testConfig(t, endpoints)
	cfg.CalleeWait = time.Minute // longer than the test: only the callees end the wait
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	web := startProcess(t, ctx, "web", cfg)
	logs := web.logs
	waitFor(t, logs, "web to wait for its callees", func() bool { return logs.line("waiting for callees", "service=web") != "" })

	var calleesAt int64
	webService, _ := services.Lookup("web")
	for _, callee := range webService.Calls {
		if at := registeredAt(t, cli, "web"); at != 0 {
			t.Fatalf("web registered (revision %d) before %s is up", at, callee)
		}
		calleesAt = max(calleesAt, startCallee(t, cli, callee))
	}
	p := web.wait(t)
	if at := registeredAt(t, cli, "web"); at <= calleesAt {
		t.Errorf("web registered at revision %d, its last callee at %d: want it after", at, calleesAt)
	}
	if l := logs.line("callee not reachable"); l != "" {
		t.Errorf("a callee was reported unreachable: %s", l)
	}
	eventually(t, "readiness", func() bool { return ready(p) })
}

// The wait is bounded: a service whose callees never come up is
// registered after CalleeWait all the same, and the log names each callee
// it did not reach.
func TestServiceRegistersWithoutItsCalleesAfterTheWait(t *testing.T) {
	endpoints, cli := etcdFor(t)
	cfg := testConfig(t, endpoints)
	cfg.CalleeWait = 200 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	web := startProcess(t, ctx, "web", cfg)
	web.wait(t)
	logs := web.logs
	if regs := registrations(t, cli, "web"); len(regs) != 1 {
		t.Errorf("%d registrations of web, want 1", len(regs))
	}
	webService, _ := services.Lookup("web")
	for _, callee := range webService.Calls {
		if logs.line("callee not reachable", "service=web", "callee="+callee) == "" {
			t.Errorf("no warning names %s; logs:\n%s", callee, logs)
		}
	}
}
