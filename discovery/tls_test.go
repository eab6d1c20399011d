package discovery

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/terminator-gw/terminator/discovery/embedded"
)

// pki writes a CA, a server certificate for 127.0.0.1 and a client
// certificate into dir, and returns their file names.
type pki struct{ ca, serverCert, serverKey, clientCert, clientKey string }

func writePKI(t *testing.T, dir string) pki {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	leaf := func(name string, serial int64, usage x509.ExtKeyUsage) (cert, key string) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return write(name+".pem", "CERTIFICATE", der), write(name+"-key.pem", "EC PRIVATE KEY", kder)
	}
	p := pki{ca: write("ca.pem", "CERTIFICATE", caDER)}
	p.serverCert, p.serverKey = leaf("server", 2, x509.ExtKeyUsageServerAuth)
	// The client's CN names no etcd user: requests count as that user only
	// when they carry no password token.
	p.clientCert, p.clientKey = leaf("some-client", 3, x509.ExtKeyUsageClientAuth)
	return p
}

// startTLSEtcd runs an etcd that serves clients over TLS and requires a
// client certificate signed by the CA.
func startTLSEtcd(t *testing.T, p pki) string {
	t.Helper()
	clientURL, err := embedded.FreeLoopbackURL()
	if err != nil {
		t.Fatal(err)
	}
	clientURL = strings.Replace(clientURL, "http://", "https://", 1)
	e, err := embedded.Start(embedded.Config{Dir: t.TempDir(), ClientURL: clientURL,
		CertFile: p.serverCert, KeyFile: p.serverKey, CAFile: p.ca})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return clientURL
}

// A cluster with TLS, client certificates and auth: a user allowed only the
// registry prefix registers and watches through ClientConfig.
func TestClientTLSAndAuth(t *testing.T) {
	p := writePKI(t, t.TempDir())
	endpoint := startTLSEtcd(t, p)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	tlsOnly := ClientConfig{Endpoints: []string{endpoint}, CA: p.ca, Cert: p.clientCert, Key: p.clientKey, DialTimeout: 5 * time.Second}
	admin, err := tlsOnly.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(admin.UserAdd(ctx, "root", "root-pw"))
	must(admin.UserGrantRole(ctx, "root", "root"))
	must(admin.RoleAdd(ctx, "registry"))
	must(admin.RoleGrantPermission(ctx, "registry", DefaultPrefix+"/", clientv3.GetPrefixRangeEnd(DefaultPrefix+"/"), clientv3.PermissionType(clientv3.PermReadWrite)))
	must(admin.UserAdd(ctx, "terminator", "terminator-pw"))
	must(admin.UserGrantRole(ctx, "terminator", "registry"))
	must(admin.AuthEnable(ctx))

	// Without a password the certificate's CN is the user, and it has no
	// rights; with the wrong password the client does not connect.
	if _, err := admin.Get(ctx, DefaultPrefix, clientv3.WithPrefix()); err == nil {
		t.Fatal("read without credentials allowed")
	}
	wrong := tlsOnly
	wrong.Username, wrong.Password = "terminator", "nope"
	if cli, err := wrong.Client(); err == nil {
		cli.Close()
		t.Fatal("wrong password accepted")
	}
	// Without the CA the server's certificate does not verify.
	noCA := ClientConfig{Endpoints: []string{endpoint}, Cert: p.clientCert, Key: p.clientKey, Username: "terminator", Password: "terminator-pw", DialTimeout: time.Second}
	if cli, err := noCA.Client(); err == nil {
		_, err = cli.Get(ctx, DefaultPrefix)
		cli.Close()
		if err == nil {
			t.Fatal("connected without trusting the CA")
		}
	}

	good := tlsOnly
	good.Username, good.Password = "terminator", "terminator-pw"
	cli, err := good.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	peers := &recorder{}
	w, err := Watch(ctx, cli, WatchOptions{Peers: peers, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	r, err := Register(ctx, cli, Registration{Service: "profiles", Node: "n1", Addr: "tcp://127.0.0.1:7401"}, RegisterOptions{TTL: ttl, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "registration seen over TLS with auth", func() bool { return peers.has("tcp://127.0.0.1:7401") })
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Second, "deregistration seen", func() bool { return !peers.has("tcp://127.0.0.1:7401") })
}
