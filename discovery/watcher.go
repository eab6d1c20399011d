package discovery

import (
	"context"
	"encoding/json"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/terminator-gw/terminator/nanobus"
)

// WatchOptions tunes a Watcher.
type WatchOptions struct {
	Prefix string        // default DefaultPrefix
	Peers  nanobus.Peers // told of every instance that comes and goes; may be nil
	Logger *slog.Logger
}

// Watcher follows every registration under a prefix.
type Watcher struct {
	cli    *clientv3.Client
	prefix string
	peers  nanobus.Peers
	log    *slog.Logger
	cancel context.CancelFunc
	done   chan struct{}

	mu        sync.Mutex
	known     map[string]record // etcd key -> registration
	changes   chan struct{}
	stopWatch context.CancelFunc // ends the current watch

	lists    atomic.Uint64 // full lists made (the first, then one per lost watch)
	stale    atomic.Bool   // etcd unreachable: serving the last known membership
	lastSeen atomic.Int64  // unix nanos of the last successful list or watch event
	bad      atomic.Uint64 // values that did not parse (skipped)
}

// Watch lists the current registrations, feeds them to opt.Peers, and
// follows changes in the background until Close. It returns after the first
// list, or with ctx's error if etcd cannot be listed before ctx ends.
func Watch(ctx context.Context, cli *clientv3.Client, opt WatchOptions) (*Watcher, error) {
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	wctx, cancel := context.WithCancel(context.Background())
	w := &Watcher{
		cli: cli, prefix: servicesPrefix(opt.Prefix), peers: opt.Peers, log: opt.Logger,
		cancel: cancel, done: make(chan struct{}), known: map[string]record{},
		changes: make(chan struct{}, 1),
	}
	lctx, lcancel := context.WithCancel(ctx)
	defer lcancel()
	rev, err := w.list(lctx)
	for err != nil {
		select {
		case <-ctx.Done():
			cancel()
			return nil, err
		case <-time.After(200 * time.Millisecond):
		}
		rev, err = w.list(lctx)
	}
	go w.run(wctx, rev)
	return w, nil
}

// run watches from rev+1; whenever the watch ends while the watcher lives,
// it lists again (keeping what it knew while etcd is unreachable).
func (w *Watcher) run(ctx context.Context, rev int64) {
	defer close(w.done)
	go w.probe(ctx)
	backoff := 100 * time.Millisecond
	for {
		wctx, stop := context.WithCancel(ctx)
		w.mu.Lock()
		w.stopWatch = stop
		w.mu.Unlock()
		wch := w.cli.Watch(clientv3.WithRequireLeader(wctx), w.prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
		for resp := range wch {
			if err := resp.Err(); err != nil {
				w.log.Warn("watch ended; listing again", "err", err, "compacted_to", resp.CompactRevision)
				break
			}
			w.apply(resp.Events)
			rev = resp.Header.Revision
		}
		stop()
		for {
			if ctx.Err() != nil {
				return
			}
			var err error
			if rev, err = w.list(ctx); err == nil {
				backoff = 100 * time.Millisecond
				break
			}
			if !w.stale.Swap(true) {
				w.log.Warn("etcd unreachable; keeping the last known membership", "err", err, "instances", w.count())
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 2*time.Second)
		}
	}
}

// record is a registration with the value it was parsed from, which tells
// whether a put changed anything.
type record struct {
	Registration
	raw string
}

// probe checks etcd every second. clientv3 retries a watch forever while
// etcd is down, so the watch alone never says so: the probe marks the
// membership stale, and when etcd answers again it ends the watch so that
// run lists afresh and catches up with what happened meanwhile.
func (w *Watcher) probe(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := w.cli.Get(pctx, w.prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		cancel()
		switch {
		case err != nil && ctx.Err() == nil:
			if !w.stale.Swap(true) {
				w.log.Warn("etcd unreachable; keeping the last known membership", "err", err, "instances", w.count())
			}
		case err == nil && w.stale.Load():
			w.mu.Lock()
			stop := w.stopWatch
			w.mu.Unlock()
			stop() // run lists again, which clears stale
		}
	}
}

// list reads the whole prefix and applies the difference to what is known.
func (w *Watcher) list(ctx context.Context) (int64, error) {
	lctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	resp, err := w.cli.Get(lctx, w.prefix, clientv3.WithPrefix())
	if err != nil {
		return 0, err
	}
	w.lists.Add(1)
	if w.stale.Swap(false) {
		w.log.Info("etcd reachable again; membership refreshed")
	}
	w.lastSeen.Store(time.Now().UnixNano())
	next := map[string]record{}
	for _, kv := range resp.Kvs {
		if rec, ok := w.parse(kv.Key, kv.Value); ok {
			next[string(kv.Key)] = rec
		}
	}
	w.mu.Lock()
	var added, removed []Registration
	for k, old := range w.known {
		if rec, ok := next[k]; !ok || rec.Addr != old.Addr || rec.Service != old.Service {
			removed = append(removed, old.Registration)
		}
	}
	for k, rec := range next {
		if old, ok := w.known[k]; !ok || old.raw != rec.raw {
			added = append(added, rec.Registration)
		}
	}
	w.known = next
	w.mu.Unlock()
	w.notify(added, removed)
	return resp.Header.Revision, nil
}

func (w *Watcher) apply(events []*clientv3.Event) {
	var added, removed []Registration
	w.mu.Lock()
	for _, ev := range events {
		k := string(ev.Kv.Key)
		old, had := w.known[k]
		switch ev.Type {
		case clientv3.EventTypeDelete:
			if had {
				delete(w.known, k)
				removed = append(removed, old.Registration)
			}
		case clientv3.EventTypePut:
			rec, ok := w.parse(ev.Kv.Key, ev.Kv.Value)
			if !ok || (had && old.raw == rec.raw) {
				continue
			}
			if had && (old.Addr != rec.Addr || old.Service != rec.Service) {
				removed = append(removed, old.Registration)
			}
			w.known[k] = rec
			added = append(added, rec.Registration)
		}
	}
	w.mu.Unlock()
	w.lastSeen.Store(time.Now().UnixNano())
	w.notify(added, removed)
}

// notify tells the peers and the Changes channel. Removals go first, so a
// node that moved address is never listed twice.
func (w *Watcher) notify(added, removed []Registration) {
	if len(added) == 0 && len(removed) == 0 {
		return
	}
	if w.peers != nil {
		for _, r := range removed {
			w.peers.RemovePeer(nanobus.Peer{Service: r.Service, Addr: r.Addr, Weight: r.Weight})
		}
		for _, r := range added {
			w.peers.AddPeer(nanobus.Peer{Service: r.Service, Addr: r.Addr, Weight: r.Weight})
		}
	}
	for _, r := range removed {
		w.log.Info("instance gone", "service", r.Service, "addr", r.Addr)
	}
	for _, r := range added {
		w.log.Info("instance up", "service", r.Service, "addr", r.Addr)
	}
	select {
	case w.changes <- struct{}{}:
	default:
	}
}

func (w *Watcher) parse(key, value []byte) (record, bool) {
	var reg Registration
	err := json.Unmarshal(value, &reg)
	if err == nil {
		err = reg.validate()
	}
	if err != nil {
		w.bad.Add(1)
		w.log.Warn("skipping a registration that does not parse", "key", string(key), "err", err)
		return record{}, false
	}
	return record{Registration: reg, raw: string(value)}, true
}

func (w *Watcher) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.known)
}

// Snapshot returns the known registrations, sorted by service then node.
func (w *Watcher) Snapshot() []Registration {
	w.mu.Lock()
	out := make([]Registration, 0, len(w.known))
	for _, r := range w.known {
		out = append(out, r.Registration)
	}
	w.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Service != out[j].Service {
			return out[i].Service < out[j].Service
		}
		return out[i].Node < out[j].Node
	})
	return out
}

// Changes gets a value (coalesced) after every change to the membership.
func (w *Watcher) Changes() <-chan struct{} { return w.changes }

// WatchStats describes the watcher's health.
type WatchStats struct {
	Instances int       // registrations known now
	Lists     uint64    // full lists made: 1 plus one per lost watch
	Stale     bool      // etcd unreachable: the membership may be out of date
	LastSeen  time.Time // last successful contact with etcd
	Malformed uint64    // registrations skipped because they did not parse
}

// Stats returns the watcher's health.
func (w *Watcher) Stats() WatchStats {
	return WatchStats{
		Instances: w.count(), Lists: w.lists.Load(), Stale: w.stale.Load(),
		LastSeen: time.Unix(0, w.lastSeen.Load()), Malformed: w.bad.Load(),
	}
}

// Close stops watching. The peers it added stay where they are.
func (w *Watcher) Close() {
	w.cancel()
	<-w.done
}
