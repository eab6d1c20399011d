package discovery

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

// ClientConfig says how to reach an etcd cluster.
type ClientConfig struct {
	Endpoints   []string      // "https://10.0.0.1:2379", ...; empty: only "terminator all" runs, with an embedded etcd
	CA          string        // CA bundle that signed the members' certificates
	Cert, Key   string        // client certificate and key, for clusters that require them
	Username    string        // etcd auth
	Password    string        // etcd auth
	DialTimeout time.Duration // default 5s
}

// RegisterFlags adds the -etcd-* flags to fs, with defaults from ETCD_*
// environment variables (shown by --help).
func (c *ClientConfig) RegisterFlags(fs *flag.FlagSet) {
	str := func(p *string, name, env, usage string) {
		fs.StringVar(p, name, os.Getenv(env), usage+" (env "+env+")")
	}
	c.Endpoints = splitList(os.Getenv("ETCD_ENDPOINTS"))
	fs.Var((*listFlag)(&c.Endpoints), "etcd-endpoints", "comma-separated etcd client URLs; empty: only \"all\" runs, with an embedded etcd (env ETCD_ENDPOINTS)")
	str(&c.CA, "etcd-ca", "ETCD_CA", "CA file for TLS to etcd")
	str(&c.Cert, "etcd-cert", "ETCD_CERT", "client certificate file for TLS to etcd")
	str(&c.Key, "etcd-key", "ETCD_KEY", "client key file for TLS to etcd")
	str(&c.Username, "etcd-user", "ETCD_USER", "etcd user name")
	// Not through str: flag prints a non-empty default in --help, and the
	// default here is the secret itself.
	c.Password = os.Getenv("ETCD_PASSWORD")
	fs.Func("etcd-password", "etcd password (prefer the env var ETCD_PASSWORD: flags show in ps)", func(s string) error {
		c.Password = s
		return nil
	})
	c.DialTimeout = 5 * time.Second
	if d, err := time.ParseDuration(os.Getenv("ETCD_DIAL_TIMEOUT")); err == nil {
		c.DialTimeout = d
	}
	fs.DurationVar(&c.DialTimeout, "etcd-dial-timeout", c.DialTimeout, "etcd dial timeout (env ETCD_DIAL_TIMEOUT)")
}

// listFlag is a comma-separated list flag whose default shows in --help.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = splitList(s); return nil }

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// Client connects to the cluster.
func (c ClientConfig) Client() (*clientv3.Client, error) {
	if len(c.Endpoints) == 0 {
		return nil, errors.New("etcd: no endpoints")
	}
	cfg := clientv3.Config{
		Endpoints:   c.Endpoints,
		DialTimeout: c.DialTimeout,
		Username:    c.Username,
		Password:    c.Password,
		Logger:      zap.NewNop(),
		// Keepalive pings find a dead member fast, so the client moves on.
		DialKeepAliveTime:    5 * time.Second,
		DialKeepAliveTimeout: 3 * time.Second,
		// clientv3 leaves gRPC's reconnect backoff at its default, which
		// grows to 120s: after a long outage a node would notice etcd is
		// back (and register again) up to two minutes late. Dialing a
		// member every 2s at most is cheap.
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 250 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
			MinConnectTimeout: 5 * time.Second,
		})},
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	if (c.Cert == "") != (c.Key == "") {
		return nil, errors.New("etcd client TLS: give both a certificate and its key, or neither")
	}
	if c.CA != "" || c.Cert != "" {
		// clientv3 talks plain TCP to an http:// endpoint even with a TLS
		// config: refuse rather than skip the TLS the operator asked for.
		for _, ep := range c.Endpoints {
			if strings.HasPrefix(ep, "http://") {
				return nil, fmt.Errorf("etcd endpoint %s: TLS files given, use https://", ep)
			}
		}
		t := &tls.Config{MinVersion: tls.VersionTLS12}
		if c.CA != "" {
			pem, err := os.ReadFile(c.CA)
			if err != nil {
				return nil, fmt.Errorf("etcd CA %s: %w", c.CA, err)
			}
			t.RootCAs = x509.NewCertPool()
			if !t.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("etcd CA %s: no certificates", c.CA)
			}
		}
		if c.Cert != "" {
			cert, err := tls.LoadX509KeyPair(c.Cert, c.Key)
			if err != nil {
				return nil, fmt.Errorf("etcd client certificate %s: %w", c.Cert, err)
			}
			t.Certificates = []tls.Certificate{cert}
		}
		cfg.TLS = t
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("etcd client for %v: %w", c.Endpoints, err)
	}
	return cli, nil
}
