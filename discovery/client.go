package discovery

import (
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/terminator-gw/terminator/nanobus"
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

// RegisterFlags adds the -etcd-* flags to fs. (The binary gives each an
// environment variable: ETCD_ENDPOINTS, ETCD_CA, ...)
func (c *ClientConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.Var((*listFlag)(&c.Endpoints), "etcd-endpoints", "comma-separated etcd client URLs; empty: only \"all\" runs, with an embedded etcd")
	fs.StringVar(&c.CA, "etcd-ca", c.CA, "CA file for TLS to etcd")
	fs.StringVar(&c.Cert, "etcd-cert", c.Cert, "client certificate file for TLS to etcd")
	fs.StringVar(&c.Key, "etcd-key", c.Key, "client key file for TLS to etcd")
	fs.StringVar(&c.Username, "etcd-user", c.Username, "etcd user name")
	// Not StringVar: flag prints a non-empty default in --help.
	fs.Func("etcd-password", "etcd password (prefer the environment: flags show in ps)", func(s string) error {
		c.Password = s
		return nil
	})
	if c.DialTimeout == 0 {
		c.DialTimeout = 5 * time.Second
	}
	fs.Var(&boundedDuration{d: &c.DialTimeout, min: 10 * time.Millisecond, max: 5 * time.Minute}, "etcd-dial-timeout",
		"etcd dial timeout: one attempt to reach etcd (`duration`: 10ms to 5m0s)")
}

// boundedDuration is a duration flag that refuses values out of [min,
// max]: a zero or negative DialTimeout means the default, so -1s would
// otherwise become 5s in silence.
type boundedDuration struct {
	d        *time.Duration
	min, max time.Duration
}

func (b *boundedDuration) String() string {
	if b == nil || b.d == nil {
		return ""
	}
	return b.d.String()
}

func (b *boundedDuration) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	if d < b.min || d > b.max {
		return fmt.Errorf("out of range: want %v to %v", b.min, b.max)
	}
	*b.d = d
	return nil
}

func (b *boundedDuration) Get() any { return *b.d }

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
	if c.CA != "" || c.Cert != "" || c.Key != "" {
		// clientv3 talks plain TCP to an http:// endpoint even with a TLS
		// config: refuse rather than skip the TLS the operator asked for.
		for _, ep := range c.Endpoints {
			if strings.HasPrefix(ep, "http://") {
				return nil, fmt.Errorf("etcd endpoint %s: TLS files given, use https://", ep)
			}
		}
		t, err := nanobus.TLSFromFiles(c.CA, c.Cert, c.Key)
		if err != nil {
			return nil, fmt.Errorf("etcd client %w", err)
		}
		cfg.TLS = t
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("etcd client for %v: %w", c.Endpoints, err)
	}
	return cli, nil
}
