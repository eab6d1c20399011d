package discovery

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// EmbeddedConfig configures an etcd member run inside this process.
type EmbeddedConfig struct {
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
	LogLevel string // default "error"
}

// Embedded is an etcd member running in this process.
type Embedded struct {
	etcd *embed.Etcd
	cfg  EmbeddedConfig
	once sync.Once
}

// StartEmbedded starts an etcd member and waits until it serves.
func StartEmbedded(c EmbeddedConfig) (*Embedded, error) {
	if c.Dir == "" {
		return nil, errors.New("embedded etcd: no data directory")
	}
	if c.Name == "" {
		c.Name = "default"
	}
	if c.LogLevel == "" {
		c.LogLevel = "error"
	}
	var err error
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
	cfg.LogLevel = c.LogLevel
	cfg.LogOutputs = []string{"stderr"}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("start embedded etcd: %w", err)
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
	return &Embedded{etcd: e, cfg: c}, nil
}

// Endpoints are the client URLs to give clientv3.
func (e *Embedded) Endpoints() []string { return []string{e.cfg.ClientURL} }

// Config is the configuration the member runs with (free ports filled in),
// to start it again on the same ports and data.
func (e *Embedded) Config() EmbeddedConfig { return e.cfg }

// IsLeader reports whether this member leads its cluster.
func (e *Embedded) IsLeader() bool { return e.etcd.Server.Leader() == e.etcd.Server.MemberID() }

// Close stops the member. Calling it again does nothing.
func (e *Embedded) Close() { e.once.Do(e.etcd.Close) }

// FreeLoopbackURL returns "http://127.0.0.1:PORT" with a port free now.
func FreeLoopbackURL() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return "http://" + l.Addr().String(), nil
}

// ClusterConfigs returns configs for an n-member cluster on loopback,
// with data under dir/<name>.
func ClusterConfigs(dir string, n int) ([]EmbeddedConfig, error) {
	cfgs := make([]EmbeddedConfig, n)
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
		cfgs[i] = EmbeddedConfig{Dir: dir + "/" + name, Name: name, ClientURL: c, PeerURL: p}
		members = append(members, name+"="+p)
	}
	for i := range cfgs {
		cfgs[i].InitialCluster = strings.Join(members, ",")
	}
	return cfgs, nil
}
