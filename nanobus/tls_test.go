package nanobus_test

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/nanobus/nanobustest"
)

func TestTLSRequiresClientCertificates(t *testing.T) {
	ca := nanobustest.NewCA(t)
	svc := newNode(t, nanobus.Config{Service: "echo", Listen: "tls+tcp://127.0.0.1:0", TLS: ca.Config(t, "svc")})
	must(t, svc.Handle("echo", echo))
	if !strings.HasPrefix(svc.Addr(), "tls+tcp://") {
		t.Fatalf("addr %s", svc.Addr())
	}

	// A member of the bus: certificate from the bus CA.
	member := newNode(t, nanobus.Config{Listen: "tls+tcp://127.0.0.1:0", TLS: ca.Config(t, "member")})
	connect(t, member, svc)
	resp, err := member.Call(context.Background(), "echo", "echo", []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	if string(resp.Body) != "secret" {
		t.Fatalf("body %q", resp.Body)
	}
	resp.Release()

	// Outsiders: one trusts the server but has no certificate, one has a
	// certificate from another CA. The service refuses each handshake
	// (counted), so neither connects: the SP header exchange that makes a
	// connection follows the TLS handshake, which the service ends. No
	// request gets in.
	other := nanobustest.NewCA(t)
	for name, cfg := range map[string]*tls.Config{
		"no certificate": {RootCAs: ca.Pool, MinVersion: tls.VersionTLS13},
		"foreign CA":     {Certificates: []tls.Certificate{other.Issue(t, "intruder", time.Hour)}, RootCAs: ca.Pool, MinVersion: tls.VersionTLS13},
	} {
		t.Run(name, func(t *testing.T) {
			outsider := newNode(t, nanobus.Config{TLS: cfg})
			assertRefused(t, svc, outsider, svc.Addr())
		})
	}
	// A plain TCP peer cannot speak to a TLS listener either.
	plain := newNode(t, nanobus.Config{})
	assertRefused(t, svc, plain, "tcp://"+strings.TrimPrefix(svc.Addr(), "tls+tcp://"))
	if got := svc.Stats().Requests; got != 1 {
		t.Fatalf("service received %d requests, want only the member's 1", got)
	}
}

// assertRefused has from dial svc at addr and waits until svc has refused
// a TLS handshake more (from's: no other node dials svc meanwhile). from
// then has no connection to it, and its calls find no instance.
func assertRefused(t *testing.T, svc, from *nanobus.Node, addr string) {
	t.Helper()
	before := svc.Stats().TLSRefused
	from.AddPeer(nanobus.Peer{Service: "echo", Addr: addr})
	eventually(t, "the service refusing the handshake", func() bool { return svc.Stats().TLSRefused > before })
	for _, p := range from.Instances("echo") {
		if p.Ready {
			t.Fatalf("connected to %s after the service refused the handshake", p.Addr)
		}
	}
	if _, err := from.Call(context.Background(), "echo", "echo", []byte("let me in")); !errors.Is(err, nanobus.ErrNoPeer) {
		t.Fatalf("call: %v, want ErrNoPeer", err)
	}
}
