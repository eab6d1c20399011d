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
	// certificate from another CA. Neither connects, neither gets a
	// request in.
	other := nanobustest.NewCA(t)
	for name, cfg := range map[string]*tls.Config{
		"no certificate": {RootCAs: ca.Pool, MinVersion: tls.VersionTLS13},
		"foreign CA":     {Certificates: []tls.Certificate{other.Issue(t, "intruder", time.Hour)}, RootCAs: ca.Pool, MinVersion: tls.VersionTLS13},
	} {
		t.Run(name, func(t *testing.T) {
			outsider := newNode(t, nanobus.Config{TLS: cfg})
			outsider.AddPeer(nanobus.Peer{Service: "echo", Addr: svc.Addr()})
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			if err := outsider.WaitReady(ctx, "echo"); err == nil {
				// TLS 1.3 clients finish their handshake before the server
				// checks the certificate: the server then closes at once.
				time.Sleep(100 * time.Millisecond)
			}
			_, err := outsider.Call(context.Background(), "echo", "echo", []byte("let me in"))
			if !errors.Is(err, nanobus.ErrNoPeer) && !errors.Is(err, nanobus.ErrPeerLost) {
				t.Fatalf("outsider call: %v, want ErrNoPeer or ErrPeerLost", err)
			}
		})
	}
	// A plain TCP peer cannot speak to a TLS listener either.
	plain := newNode(t, nanobus.Config{})
	plain.AddPeer(nanobus.Peer{Service: "echo", Addr: "tcp://" + strings.TrimPrefix(svc.Addr(), "tls+tcp://")})
	time.Sleep(100 * time.Millisecond)
	if _, err := plain.Call(context.Background(), "echo", "echo", nil); !errors.Is(err, nanobus.ErrNoPeer) {
		t.Fatalf("plain call: %v, want ErrNoPeer", err)
	}
	if got := svc.Stats().Requests; got != 1 {
		t.Fatalf("service received %d requests, want only the member's 1", got)
	}
}
