package nanobus_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/terminator-gw/terminator/nanobus"
)

// testCA issues certificates for 127.0.0.1, good for both ends of a bus
// connection.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bus test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

func (ca *testCA) issue(t *testing.T, name string) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func (ca *testCA) config(t *testing.T, name string) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{ca.issue(t, name)},
		RootCAs:      ca.pool, ClientCAs: ca.pool, MinVersion: tls.VersionTLS13,
	}
}

func TestTLSRequiresClientCertificates(t *testing.T) {
	ca := newTestCA(t)
	svc := newNode(t, nanobus.Config{Service: "echo", Listen: "tls+tcp://127.0.0.1:0", TLS: ca.config(t, "svc")})
	must(t, svc.Handle("echo", echo))
	if !strings.HasPrefix(svc.Addr(), "tls+tcp://") {
		t.Fatalf("addr %s", svc.Addr())
	}

	// A member of the bus: certificate from the bus CA.
	member := newNode(t, nanobus.Config{Listen: "tls+tcp://127.0.0.1:0", TLS: ca.config(t, "member")})
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
	other := newTestCA(t)
	for name, cfg := range map[string]*tls.Config{
		"no certificate": {RootCAs: ca.pool, MinVersion: tls.VersionTLS13},
		"foreign CA":     {Certificates: []tls.Certificate{other.issue(t, "intruder")}, RootCAs: ca.pool, MinVersion: tls.VersionTLS13},
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
