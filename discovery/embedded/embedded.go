// Package embedded runs etcd inside this process: the registry of the
// one-process default ("terminator all") and of tests. It is a package of
// its own so that a service binary that only registers with an external
// etcd (through discovery) does not link the etcd server.
//
// Start runs one member with its data in a directory, on loopback ports
// chosen free unless given, logging only errors to stderr; starting it
// again with the same Config (same Dir and ports) restarts the same member
// with its data. StartCluster runs an n-member cluster in one process.
package embedded

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Config configures an etcd member run inside this process.
type Config struct {
	Dir       string // data directory (required); a restart on the same Dir keeps the data
	Name      string // member name, default "default"
	ClientURL string // e.g. "http://127.0.0.1:2379"; default a free loopback port
	PeerURL   string // e.g. "http://127.0.0.1:2380"; default a free loopback port
	// InitialCluster is "name=peerURL,..." for a multi-member cluster;
	// default this member alone.
	InitialCluster string
	// Existing joins (or restarts into) a cluster whose data is already
	// in Dir rather than bootstrapping a new one.
	Existing bool
	LogLevel string // zap level of etcd's own log lines (stderr): default "error"
	// TLS for clients, when CertFile and KeyFile are set (ClientURL must
	// then be https://); with CAFile, clients must present a certificate
	// it signed.
	CertFile, KeyFile, CAFile string
}

// Etcd is an etcd member running in this process.
type Etcd struct {
	etcd    *embed.Etcd
	cfg     Config
	closing *atomic.Bool // set when Close starts: the logger drops etcd's shutdown noise
	once    sync.Once
}

// Start starts an etcd member and waits until it serves. A member
// of a multi-member cluster serves only once a quorum runs: start the
// members together (StartCluster does).
func Start(c Config) (*Etcd, error) {
	// A free port picked here can be taken by someone else before etcd
	// binds it; pick again a few times rather than fail a test run.
	for attempt := 1; ; attempt++ {
		e, err := start(c)
		if err == nil || attempt == 3 || (c.ClientURL != "" && c.PeerURL != "") || !addrInUse(err) {
			return e, err
		}
	}
}

func addrInUse(err error) bool {
	return errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "address already in use")
}

func start(c Config) (*Etcd, error) {
	if c.Dir == "" {
		return nil, errors.New("embedded etcd: no data directory")
	}
	if c.Name == "" {
		c.Name = "default"
	}
	if c.LogLevel == "" {
		c.LogLevel = "error"
	}
	level, err := zapcore.ParseLevel(c.LogLevel)
	if err != nil {
		return nil, fmt.Errorf("embedded etcd log level: %w", err)
	}
	if c.ClientURL == "" {
		if c.ClientURL, err = FreeLoopbackURL(); err != nil {
			return nil, err
		}
	}
	if c.PeerURL == "" {
		if c.PeerURL, err = FreeLoopbackURL(); err != nil {
			return nil, err
		}
	}
	if c.InitialCluster == "" {
		c.InitialCluster = c.Name + "=" + c.PeerURL
	}
	curl, err := url.Parse(c.ClientURL)
	if err != nil {
		return nil, fmt.Errorf("embedded etcd client URL: %w", err)
	}
	purl, err := url.Parse(c.PeerURL)
	if err != nil {
		return nil, fmt.Errorf("embedded etcd peer URL: %w", err)
	}
	cfg := embed.NewConfig()
	cfg.Name = c.Name
	cfg.Dir = c.Dir
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*curl}, []url.URL{*curl}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*purl}, []url.URL{*purl}
	cfg.InitialCluster = c.InitialCluster
	cfg.InitialClusterToken = "terminator"
	if c.Existing {
		cfg.ClusterState = embed.ClusterStateFlagExisting
	}
	if c.CertFile != "" {
		cfg.ClientTLSInfo.CertFile, cfg.ClientTLSInfo.KeyFile = c.CertFile, c.KeyFile
		cfg.ClientTLSInfo.TrustedCAFile = c.CAFile
		cfg.ClientTLSInfo.ClientCertAuth = c.CAFile != ""
	}
	cfg.LogLevel = c.LogLevel
	cfg.LogOutputs = []string{"stderr"}
	closing := new(atomic.Bool)
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(quietLogger(level, closing))
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("start embedded etcd %s in %s: %w", c.Name, c.Dir, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("embedded etcd: %w", err)
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, errors.New("embedded etcd: not ready after 60s")
	}
	return &Etcd{etcd: e, cfg: c, closing: closing}, nil
}

// quietLogger writes JSON lines at level and above to stderr, except the
// errors etcd logs about its own listeners while it shuts down in order
// ("setting up serving from embedded etcd failed": "http: Server closed",
// "use of closed network connection", ...).
func quietLogger(level zapcore.Level, closing *atomic.Bool) *zap.Logger {
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	core := zapcore.NewCore(enc, zapcore.Lock(os.Stderr), level)
	return zap.New(&shutdownFilter{Core: core, closing: closing})
}

type shutdownFilter struct {
	zapcore.Core
	closing *atomic.Bool
}

func (f *shutdownFilter) With(fields []zapcore.Field) zapcore.Core {
	return &shutdownFilter{Core: f.Core.With(fields), closing: f.closing}
}

func (f *shutdownFilter) Check(ent zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if f.closing.Load() && strings.HasPrefix(ent.Message, "setting up serving from embedded etcd failed") {
		return ce
	}
	if f.Enabled(ent.Level) {
		return ce.AddCore(ent, f)
	}
	return ce
}

// Endpoints are the client URLs to give clientv3.
func (e *Etcd) Endpoints() []string { return []string{e.cfg.ClientURL} }

// Config is the configuration the member runs with (free ports filled in),
// to start it again on the same ports and data.
func (e *Etcd) Config() Config { return e.cfg }

// IsLeader reports whether this member leads its cluster.
func (e *Etcd) IsLeader() bool { return e.etcd.Server.Leader() == e.etcd.Server.MemberID() }

// Close stops the member and waits until it has stopped. Calling it again
// does nothing. With clients still connected (watches open) etcd gives them
// its request timeout (about 7s) to go before cutting them off.
func (e *Etcd) Close() {
	e.once.Do(func() {
		e.closing.Store(true)
		e.etcd.Close()
	})
}

// FreeLoopbackURL returns "http://127.0.0.1:PORT" with a port free now.
func FreeLoopbackURL() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return "http://" + l.Addr().String(), nil
}

// StartCluster starts an n-member cluster on loopback, data under
// dir/m1, dir/m2, ..., and waits until every member serves. Stop it by
// closing every member.
func StartCluster(dir string, n int) ([]*Etcd, error) {
	cfgs, err := ClusterConfigs(dir, n)
	if err != nil {
		return nil, err
	}
	members := make([]*Etcd, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, c := range cfgs {
		wg.Go(func() { members[i], errs[i] = Start(c) }) // each waits for a quorum
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, m := range members {
			if m != nil {
				m.Close()
			}
		}
		return nil, fmt.Errorf("start %d-member cluster: %w", n, err)
	}
	return members, nil
}

// ClusterConfigs returns configs for an n-member cluster on loopback,
// with data under dir/<name>.
func ClusterConfigs(dir string, n int) ([]Config, error) {
	cfgs := make([]Config, n)
	var members []string
	for i := range cfgs {
		c, err := FreeLoopbackURL()
		if err != nil {
			return nil, err
		}
		p, err := FreeLoopbackURL()
		if err != nil {
			return nil, err
		}
		name := fmt.Sprintf("m%d", i+1)
		cfgs[i] = Config{Dir: dir + "/" + name, Name: name, ClientURL: c, PeerURL: p}
		members = append(members, name+"="+p)
	}
	for i := range cfgs {
		cfgs[i].InitialCluster = strings.Join(members, ",")
	}
	return cfgs, nil
}
