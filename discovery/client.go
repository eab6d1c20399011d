package discovery

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
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
		return fmt.Errorf("want a duration such as 5s (%v to %v)", b.min, b.max)
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

// Permanent reports whether err is etcd refusing the credentials or the
// rights it was given: a wrong password, a user without the grant, no user
// where auth is on. Retrying will not heal them; a process should stop
// and say so.
func Permanent(err error) bool {
	for _, e := range []error{
		rpctypes.ErrAuthFailed, rpctypes.ErrGRPCAuthFailed,
		rpctypes.ErrPermissionDenied, rpctypes.ErrGRPCPermissionDenied,
		rpctypes.ErrUserEmpty, rpctypes.ErrGRPCUserEmpty,
	} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// ConnectOptions tunes Connect.
type ConnectOptions struct {
	Prefix string // the registry it must read; default DefaultPrefix
	Logger *slog.Logger
	// Report, when set, is told the cause while etcd cannot be reached,
	// and nil once it is: what readiness says meanwhile.
	Report func(error)
	// LogEvery is how often a failure that persists is logged again
	// (default 10s); the first is logged at once.
	LogEvery time.Duration
}

// Connect returns a client of the cluster once it answers a read of the
// registry as the configured user, which is what every role does first.
// Until then it retries (each attempt bounded by DialTimeout), logging the
// first failure at once as a warning, naming the endpoints and the cause
// (connection refused, a TLS handshake that failed, a timeout), and again
// every LogEvery while it lasts. Credentials or rights etcd refuses
// (Permanent) end it at once with that error; so does ctx.
func (c ClientConfig) Connect(ctx context.Context, opt ConnectOptions) (*clientv3.Client, error) {
	if len(c.Endpoints) == 0 {
		return nil, errors.New("etcd: no endpoints")
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = 5 * time.Second
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	if opt.LogEvery <= 0 {
		opt.LogEvery = 10 * time.Second
	}
	report := func(err error) {
		if opt.Report != nil {
			opt.Report(err)
		}
	}
	eps := strings.Join(c.Endpoints, ",")
	var (
		failures int
		logged   time.Time
		cause    error
	)
	// fail records cause; it is logged the first time and then once per
	// LogEvery.
	fail := func(err error) {
		cause = err
		report(err)
		if logged.IsZero() || time.Since(logged) >= opt.LogEvery {
			logged = time.Now()
			opt.Logger.Warn("etcd unreachable; retrying", "endpoints", eps, "err", err, "attempts", failures+1)
		}
	}
	retry := newBackoff(250 * time.Millisecond)
	for {
		// Probe first: clientv3 waits for a connection, so its error is a
		// timeout that names no cause; the probe names it at once.
		perr, none := c.probe(ctx)
		if none {
			fail(perr)
		}
		cli, err := c.attempt(ctx, rootPrefix(opt.Prefix))
		if err == nil {
			if failures > 0 {
				opt.Logger.Info("etcd reachable", "endpoints", eps, "after_attempts", failures+1)
			}
			report(nil)
			return cli, nil
		}
		if Permanent(err) {
			opt.Logger.Warn("etcd refuses this process: not retrying", "endpoints", eps, "user", c.Username, "err", err)
			report(err)
			return nil, fmt.Errorf("etcd as user %q: %w", c.Username, err)
		}
		if ctx.Err() != nil {
			if cause == nil {
				cause = err
			}
			return nil, fmt.Errorf("etcd %s: %w (last error: %w)", eps, ctx.Err(), cause)
		}
		switch {
		case none: // failed already, with the probe's cause
		case perr != nil:
			fail(errors.Join(err, perr)) // some endpoints answer, some do not
		default:
			fail(err)
		}
		failures++
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("etcd %s: %w (last error: %w)", eps, ctx.Err(), cause)
		case <-time.After(retry.NextBackOff()):
		}
	}
}

// Dial is Connect for a command run by hand: it logs nothing, and gives
// up after DialTimeout with an error that names the endpoints and the
// cause ("etcd http://127.0.0.1:2379: context deadline exceeded (last
// error: ... connection refused)").
func (c ClientConfig) Dial(ctx context.Context) (*clientv3.Client, error) {
	d := c.DialTimeout
	if d <= 0 {
		d = 5 * time.Second
	}
	dctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return c.Connect(dctx, ConnectOptions{Logger: slog.New(slog.DiscardHandler)})
}

// NameEndpoints adds the endpoints to an error of a call to etcd that
// timed out or found no member, which clientv3 reports without them.
func (c ClientConfig) NameEndpoints(err error) error {
	if err == nil || !(errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "Unavailable")) ||
		strings.Contains(err.Error(), "etcd ") {
		return err
	}
	return fmt.Errorf("etcd %s: %w", strings.Join(c.Endpoints, ","), err)
}

// attempt makes a client and reads the registry's range with it (a count:
// nothing is transferred), as the watcher will.
func (c ClientConfig) attempt(ctx context.Context, prefix string) (*clientv3.Client, error) {
	cli, err := c.Client()
	if err != nil {
		return nil, err
	}
	actx, cancel := context.WithTimeout(ctx, c.DialTimeout)
	defer cancel()
	if _, err := cli.Get(actx, prefix, clientv3.WithRange(prefix+"stats/"), clientv3.WithCountOnly()); err != nil {
		cli.Close()
		return nil, fmt.Errorf("read %s: %w", prefix, err)
	}
	return cli, nil
}

// probe connects to every endpoint as clientv3 would (TCP, then TLS for
// https://) and returns why those that fail do, and whether none
// answered. Endpoints of other schemes (unix://) are not probed.
func (c ClientConfig) probe(ctx context.Context) (error, bool) {
	var base *tls.Config
	if c.CA != "" || c.Cert != "" || c.Key != "" {
		t, err := nanobus.TLSFromFiles(c.CA, c.Cert, c.Key)
		if err != nil {
			return fmt.Errorf("etcd client %w", err), true
		}
		base = t
	}
	errs := make([]error, len(c.Endpoints))
	var wg sync.WaitGroup
	for i, ep := range c.Endpoints {
		wg.Go(func() { errs[i] = probeEndpoint(ctx, ep, base, c.DialTimeout) })
	}
	wg.Wait()
	failed := 0
	for _, err := range errs {
		if err != nil {
			failed++
		}
	}
	return errors.Join(errs...), failed == len(errs)
}

// http2Preface is what a gRPC client sends first: the HTTP/2 preface and
// an empty SETTINGS frame.
const http2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + "\x00\x00\x00\x04\x00\x00\x00\x00\x00"

func probeEndpoint(ctx context.Context, ep string, base *tls.Config, timeout time.Duration) error {
	u, err := url.Parse(ep)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return nil
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "2379")
	}
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(pctx, "tcp", host)
	if err != nil {
		return fmt.Errorf("etcd %s: %w", ep, err)
	}
	defer conn.Close()
	deadline, _ := pctx.Deadline()
	conn.SetDeadline(deadline)
	if u.Scheme == "https" {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if base != nil {
			cfg = base.Clone()
		}
		cfg.ServerName, cfg.NextProtos = u.Hostname(), []string{"h2"}
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(pctx); err != nil {
			return fmt.Errorf("etcd %s: TLS handshake: %w%s", ep, err, tlsHint(err, base))
		}
		conn = tc
	}
	// Under TLS 1.3 a server that wants a client certificate says so after
	// the handshake; over plain TCP, a TLS server answers the preface with
	// an alert or an HTTP/1 400. An HTTP/2 server sends its settings, or
	// waits: both are fine.
	if _, err := conn.Write([]byte(http2Preface)); err != nil {
		return fmt.Errorf("etcd %s: %w", ep, err)
	}
	conn.SetReadDeadline(time.Now().Add(min(timeout, 500*time.Millisecond)))
	var b [16]byte
	n, err := io.ReadAtLeast(conn, b[:], 1)
	switch {
	case n > 0 && u.Scheme == "http" && (b[0] == 0x15 || bytes.HasPrefix(b[:n], []byte("HTTP/1"))):
		return fmt.Errorf("etcd %s: the server speaks TLS: use https:// and -etcd-ca", ep)
	case n > 0:
		return nil
	case isTimeout(err):
		return nil
	case u.Scheme == "https":
		return fmt.Errorf("etcd %s: TLS: the server closed the connection after the handshake: %w%s", ep, err, tlsHint(err, base))
	default:
		return fmt.Errorf("etcd %s: the server closed the connection: %w (does it want TLS? use https://)", ep, err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// tlsHint names the flag that usually fixes a TLS failure.
func tlsHint(err error, base *tls.Config) string {
	var unknown x509.UnknownAuthorityError
	switch {
	case errors.As(err, &unknown) && (base == nil || base.RootCAs == nil):
		return " (give -etcd-ca: the CA that signed etcd's certificate)"
	case strings.Contains(err.Error(), "certificate required") && (base == nil || len(base.Certificates) == 0):
		return " (etcd wants a client certificate: give -etcd-cert and -etcd-key)"
	}
	return ""
}
