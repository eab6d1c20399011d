package discovery

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/terminator-gw/terminator/nanobus/nanobustest"
)

// Connect names why etcd cannot be reached, in its first warning and in
// what it reports for readiness, and keeps trying until its context ends.
func TestConnectNamesTheCause(t *testing.T) {
	p := writePKI(t, t.TempDir())
	tlsEndpoint := startTLSEtcd(t, p) // wants a client certificate
	closed := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return "http://" + l.Addr().String()
	}()
	for _, tt := range []struct {
		name string
		cfg  ClientConfig
		want []string
	}{
		{"nobody listens", ClientConfig{Endpoints: []string{closed}}, []string{closed, "connection refused"}},
		{"http to a TLS etcd", ClientConfig{Endpoints: []string{strings.Replace(tlsEndpoint, "https", "http", 1)}}, []string{"closed the connection", "want TLS"}},
		{"no CA", ClientConfig{Endpoints: []string{tlsEndpoint}}, []string{tlsEndpoint, "TLS handshake", "unknown authority", "-etcd-ca"}},
		{"no client certificate", ClientConfig{Endpoints: []string{tlsEndpoint}, CA: p.ca}, []string{tlsEndpoint, "certificate required", "-etcd-cert"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var logs nanobustest.Logs
			log := slog.New(slog.NewTextHandler(&logs, nil))
			reported := make(chan error, 100)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() {
				cli, err := tt.cfg.Connect(ctx, ConnectOptions{Logger: log, Report: func(err error) {
					select {
					case reported <- err:
					default:
					}
				}})
				if cli != nil {
					cli.Close()
				}
				done <- err
			}()
			has := func(s string) bool {
				for _, w := range tt.want {
					if !strings.Contains(s, w) {
						return false
					}
				}
				return true
			}
			eventually(t, 20*time.Second, "a warning naming the cause", func() bool {
				return strings.Contains(logs.String(), "level=WARN") && has(logs.String())
			})
			select {
			case err := <-reported:
				if err == nil || !has(err.Error()) {
					t.Errorf("reported %v, want the cause %q", err, tt.want)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("nothing reported in 20s")
			}
			cancel()
			select {
			case err := <-done:
				if err == nil || !has(err.Error()) {
					t.Errorf("Connect = %v, want it to name the cause %q", err, tt.want)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("Connect still running 20s after its context ended")
			}
		})
	}
}
