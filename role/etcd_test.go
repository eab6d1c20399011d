package role

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/terminator-gw/terminator/discovery"
	"github.com/terminator-gw/terminator/discovery/embedded"
)

// logBuffer collects a process's log lines, for the test to look into
// while the process runs.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// line is the first log line with every one of parts, or "".
func (b *logBuffer) line(parts ...string) string {
	for l := range strings.Lines(b.String()) {
		found := true
		for _, p := range parts {
			found = found && strings.Contains(l, p)
		}
		if found {
			return l
		}
	}
	return ""
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// authEtcd runs an etcd with auth on: user "terminator" (password
// "terminator-pw") may read and write the registry, user "nogrant"
// (password "nogrant-pw") nothing, user "reader" (password "reader-pw")
// only read.
func authEtcd(t *testing.T) []string {
	t.Helper()
	endpoints, cli := etcdFor(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(cli.UserAdd(ctx, "root", "root-pw"))
	must(cli.UserGrantRole(ctx, "root", "root"))
	must(cli.RoleAdd(ctx, "registry"))
	prefix := discovery.DefaultPrefix + "/"
	must(cli.RoleGrantPermission(ctx, "registry", prefix, clientv3.GetPrefixRangeEnd(prefix), clientv3.PermissionType(clientv3.PermReadWrite)))
	must(cli.UserAdd(ctx, "terminator", "terminator-pw"))
	must(cli.UserGrantRole(ctx, "terminator", "registry"))
	must(cli.UserAdd(ctx, "nogrant", "nogrant-pw"))
	must(cli.RoleAdd(ctx, "reader"))
	must(cli.RoleGrantPermission(ctx, "reader", prefix, clientv3.GetPrefixRangeEnd(prefix), clientv3.PermissionType(clientv3.PermRead)))
	must(cli.UserAdd(ctx, "reader", "reader-pw"))
	must(cli.UserGrantRole(ctx, "reader", "reader"))
	must(cli.AuthEnable(ctx))
	return endpoints
}

// startLogged starts role in the background with its log in a buffer; the
// result arrives on the channel.
func startLogged(t *testing.T, ctx context.Context, role string, cfg Config) (*logBuffer, <-chan error) {
	t.Helper()
	logs := &logBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	done := make(chan error, 1)
	go func() {
		p, err := Start(ctx, role, cfg, log)
		if err == nil {
			p.Stop()
		}
		done <- err
	}()
	return logs, done
}

// waitFor waits (20s at most) for cond, failing the test with what with
// the logs.
func waitFor(t *testing.T, logs *logBuffer, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out after 20s waiting for %s; logs:\n%s", what, logs)
}

// An etcd that refuses the process's credentials fails its start with the
// cause, logged (a warning naming the endpoint) and returned: a wrong
// password, or a user without the grant, will not heal by retrying.
func TestStartFailsOnEtcdAuth(t *testing.T) {
	endpoints := authEtcd(t)
	for _, tt := range []struct {
		name, user, password string
		want                 error
	}{
		{"wrong password", "terminator", "wrong", rpctypes.ErrAuthFailed},
		{"no grant", "nogrant", "nogrant-pw", rpctypes.ErrPermissionDenied},
		{"no user", "", "", rpctypes.ErrUserEmpty},
		{"read only", "reader", "reader-pw", rpctypes.ErrPermissionDenied}, // fails at its registration
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t, endpoints)
			cfg.Etcd.Username, cfg.Etcd.Password = tt.user, tt.password
			// Long enough that a start still waiting when it ends has
			// retried what it should have given up on.
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			logs, done := startLogged(t, ctx, "echo", cfg)
			var err error
			select {
			case err = <-done:
			case <-ctx.Done():
				t.Fatalf("start still waiting after 60s; logs:\n%s", logs)
			}
			if !errors.Is(err, tt.want) || errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Start = %v, want it to fail with %v at once", err, tt.want)
			}
			if l := logs.line("level=WARN", endpoints[0], tt.want.Error()); l == "" {
				t.Errorf("no warning naming the endpoint %s and the cause %q; logs:\n%s", endpoints[0], tt.want, logs)
			}
		})
	}
}

// An https etcd reached without TLS flags (its certificate does not
// verify): the first failure is logged at once with the cause, readiness
// says it, and the start keeps waiting (a certificate can be fixed) until
// it is stopped, with the cause in its error.
func TestStartLogsEtcdTLSFailure(t *testing.T) {
	dir := t.TempDir()
	cert, key := selfSigned(t, dir)
	clientURL := "https://" + freeAddr(t)
	e, err := embedded.Start(embedded.Config{Dir: t.TempDir(), ClientURL: clientURL, CertFile: cert, KeyFile: key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)

	cfg := testConfig(t, e.Endpoints())
	cfg.Admin.Listen = freeAddr(t) // Start has not returned: readiness is all there is
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logs, done := startLogged(t, ctx, "echo", cfg)
	waitFor(t, logs, "a warning naming the endpoint and the TLS failure", func() bool {
		return logs.line("level=WARN", clientURL, "TLS", "certificate") != ""
	})
	waitFor(t, logs, "/readyz to name the cause", func() bool {
		status, body, _ := getQuiet(cfg.Admin.Listen, "/readyz")
		return status == 503 && strings.Contains(body, "certificate")
	})
	cancel()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Errorf("Start after cancel = %v, want an error naming the cause", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("Start did not return within 30s of its context's end; logs:\n%s", logs)
	}
}

// getQuiet is get without failing: the listener may not be up yet.
func getQuiet(addr, path string) (int, string, error) {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + addr + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// selfSigned writes a self-signed certificate for 127.0.0.1 and its key.
func selfSigned(t *testing.T, dir string) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "etcd"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// An etcd nobody listens on: the start says so at once and again every
// few seconds, naming the endpoint, and /readyz says what it waits for
// (not just "starting") until it is stopped.
func TestStartWarnsWhileEtcdUnreachable(t *testing.T) {
	dead := "http://" + freeAddr(t)
	cfg := testConfig(t, []string{dead})
	cfg.Admin.Listen = freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logs, done := startLogged(t, ctx, "echo", cfg)
	waitFor(t, logs, "two warnings naming the endpoint", func() bool {
		return strings.Count(logs.String(), "level=WARN msg=\"etcd unreachable; retrying\" endpoints="+dead) >= 2
	})
	status, body, err := getQuiet(cfg.Admin.Listen, "/readyz")
	if status != 503 || !strings.Contains(body, "waiting for etcd ("+dead+"): ") || !strings.Contains(body, "connection refused") {
		t.Fatalf("/readyz: %d %q %v, want 503 saying it waits for etcd (%s) and why", status, body, err, dead)
	}
	cancel()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), dead) {
			t.Errorf("Start after cancel = %v, want an error naming %s", err, dead)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("Start did not return within 30s of its context's end; logs:\n%s", logs)
	}
}
