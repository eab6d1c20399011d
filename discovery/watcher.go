package discovery

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/terminator-gw/terminator/nanobus"
)

// Why not clientv3/naming/endpoints: its Manager watches one service name
// and keeps only an address and an opaque metadata value per key, its watch
// channel closes on any watch error (the caller has to re-list anyway), and
// it offers no way to list every service at one revision. The terminator
// needs all services' routes from one consistent list followed by one watch
// of the whole prefix, so the Watcher does list-then-watch itself.

// WatchOptions tunes a Watcher.
type WatchOptions struct {
	Prefix string        // default DefaultPrefix
	Peers  nanobus.Peers // told of every instance that comes and goes; may be nil
	Logger *slog.Logger
}

// Watcher follows every registration under a prefix, and the routes and
// settings kept beside them: every key under the prefix that sorts before
// "stats/" (registrations, announced routes, rollout policies, flags; the
// per-node numbers under stats/ change every second and nobody needs them
// pushed).
type Watcher struct {
	cli    *clientv3.Client
	prefix string // "/terminator/"
	end    string // the end of the watched range: prefix + "stats/"
	peers  nanobus.Peers
	log    *slog.Logger
	cancel context.CancelFunc
	done   chan struct{}

	mu        sync.Mutex
	known     map[string]record          // etcd key -> registration
	byPeer    map[peerID]map[string]bool // (service, addr) -> etcd keys announcing it
	told      map[peerID]string          // what Peers was told: (service, addr) -> the record's raw value
	changes   chan struct{}
	stopWatch context.CancelFunc // ends the current watch
	staleAt   time.Time          // when etcd was found unreachable

	lists    atomic.Uint64 // full lists made (the first, then one per lost watch)
	outages  atomic.Uint64 // times etcd was found unreachable
	stale    atomic.Bool   // etcd unreachable: serving the last known membership
	lastSeen atomic.Int64  // unix nanos of the last successful list or watch event
	bad      atomic.Uint64 // values that did not parse (skipped)
}

// peerID is how nanobus tells instances apart: a service at an address.
// Several keys can name the same one (a process restarted on a fixed port
// gets a new node ID while its earlier life's key waits for its lease to
// expire), so the Watcher counts keys per peerID and removes the peer only
// when the last of them goes.
type peerID struct{ service, addr string }

// record is one watched key: a registration, an announced route, or any
// other setting kept raw, with the value it was parsed from, which tells
// whether a put changed anything, and the revision it was put at, which
// tells the newest of several keys for one peer.
type record struct {
	Registration        // for a key under services/
	route        *Route // for a key under routes/<service>/
	raw          string
	modRev       int64
}

func (r record) registration() bool { return r.Service != "" && r.route == nil }

func (r record) peer() peerID { return peerID{r.Service, r.Addr} }

func newWatcher(cli *clientv3.Client, opt WatchOptions) *Watcher {
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	return &Watcher{
		cli: cli, prefix: rootPrefix(opt.Prefix), end: rootPrefix(opt.Prefix) + "stats/", peers: opt.Peers, log: opt.Logger,
		done: make(chan struct{}), known: map[string]record{}, byPeer: map[peerID]map[string]bool{},
		told: map[peerID]string{}, changes: make(chan struct{}, 1), cancel: func() {},
	}
}

// Watch lists the current registrations, feeds them to opt.Peers, and
// follows changes in the background until Close. It returns after the first
// list, or with ctx's error if etcd cannot be listed before ctx ends.
func Watch(ctx context.Context, cli *clientv3.Client, opt WatchOptions) (*Watcher, error) {
	w := newWatcher(cli, opt)
	rev, err := w.list(ctx)
	var logged time.Time
	for err != nil {
		// Refused credentials or rights will not heal: say so now rather
		// than when ctx ends.
		if Permanent(err) {
			return nil, fmt.Errorf("watch %s: %w", w.prefix, err)
		}
		if time.Since(logged) >= 10*time.Second {
			logged = time.Now()
			w.log.Warn("etcd: cannot list the registry; retrying", "endpoints", strings.Join(cli.Endpoints(), ","), "err", err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("watch %s: %w (last error: %w)", w.prefix, ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
		rev, err = w.list(ctx)
	}
	w.start(rev)
	return w, nil
}

// start runs the watch from rev+1 in the background.
func (w *Watcher) start(rev int64) {
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	go w.run(ctx, rev)
}

// run watches from rev+1; whenever the watch ends while the watcher lives,
// it lists again (keeping what it knew while etcd is unreachable). list and
// apply run on this goroutine only (after the first list), so Peers hears
// of changes in the order they happened.
func (w *Watcher) run(ctx context.Context, rev int64) {
	defer close(w.done)
	go w.probe(ctx)
	retry := newBackoff(100 * time.Millisecond)
	for {
		wctx, stop := context.WithCancel(ctx)
		w.mu.Lock()
		w.stopWatch = stop
		w.mu.Unlock()
		// WithRequireLeader: a member cut off from its cluster ends the
		// watch instead of holding it open with nothing to say.
		wch := w.cli.Watch(clientv3.WithRequireLeader(wctx), w.prefix, clientv3.WithRange(w.end), clientv3.WithRev(rev+1))
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
				retry.Reset()
				break
			}
			w.markStale(err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(retry.NextBackOff()):
			}
		}
	}
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
		_, err := w.cli.Get(pctx, w.prefix, clientv3.WithRange(w.end), clientv3.WithCountOnly())
		cancel()
		switch {
		case err != nil && ctx.Err() == nil:
			w.markStale(err)
		case err == nil && w.stale.Load():
			w.mu.Lock()
			stop := w.stopWatch
			w.mu.Unlock()
			if stop != nil {
				stop() // run lists again, which clears stale
			}
		}
	}
}

// markStale records that etcd did not answer: the membership is kept as it
// was, and the outage is counted and logged once.
func (w *Watcher) markStale(err error) {
	w.mu.Lock()
	if w.stale.Load() {
		w.mu.Unlock()
		return
	}
	w.stale.Store(true)
	w.staleAt = time.Now()
	n := len(w.known)
	w.mu.Unlock()
	w.outages.Add(1)
	w.log.Warn("etcd unreachable; keeping the last known membership", "err", err, "instances", n)
}

// list reads the whole prefix and applies the difference to what is known.
func (w *Watcher) list(ctx context.Context) (int64, error) {
	lctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	resp, err := w.cli.Get(lctx, w.prefix, clientv3.WithRange(w.end))
	if err != nil {
		return 0, fmt.Errorf("list %s: %w", w.prefix, err)
	}
	w.lists.Add(1)
	w.lastSeen.Store(time.Now().UnixNano())
	next := map[string]record{}
	for _, kv := range resp.Kvs {
		if rec, ok := w.parse(kv.Key, kv.Value, kv.ModRevision); ok {
			next[string(kv.Key)] = rec
		}
	}
	w.mu.Lock()
	changed := len(next) != len(w.known)
	for k, rec := range next {
		if old, ok := w.known[k]; !ok || old.raw != rec.raw {
			changed = true
		}
	}
	affected := map[peerID]bool{}
	for id := range w.told {
		affected[id] = true
	}
	w.known = next
	w.byPeer = map[peerID]map[string]bool{}
	for k, rec := range next {
		if rec.registration() {
			w.index(k, rec)
			affected[rec.peer()] = true
		}
	}
	removed, added := w.reconcile(affected)
	wasStale, staleFor := w.stale.Swap(false), time.Since(w.staleAt)
	w.mu.Unlock()
	if wasStale {
		w.log.Info("etcd reachable again; membership refreshed", "stale_for", staleFor.Round(time.Millisecond), "instances", len(next))
	}
	w.notify(changed, removed, added)
	return resp.Header.Revision, nil
}

// apply follows one watch response.
func (w *Watcher) apply(events []*clientv3.Event) {
	changed := false
	affected := map[peerID]bool{}
	w.mu.Lock()
	for _, ev := range events {
		k := string(ev.Kv.Key)
		old, had := w.known[k]
		switch ev.Type {
		case clientv3.EventTypeDelete:
			if had {
				if old.registration() {
					w.unindex(k, old)
					affected[old.peer()] = true
				}
				delete(w.known, k)
				changed = true
			}
		case clientv3.EventTypePut:
			rec, ok := w.parse(ev.Kv.Key, ev.Kv.Value, ev.Kv.ModRevision)
			if !ok || (had && old.raw == rec.raw) {
				continue
			}
			if had && old.registration() {
				w.unindex(k, old)
				affected[old.peer()] = true
			}
			w.known[k] = rec
			if rec.registration() {
				w.index(k, rec)
				affected[rec.peer()] = true
			}
			changed = true
		}
	}
	removed, added := w.reconcile(affected)
	w.mu.Unlock()
	w.lastSeen.Store(time.Now().UnixNano())
	w.notify(changed, removed, added)
}

func (w *Watcher) index(key string, rec record) {
	keys := w.byPeer[rec.peer()]
	if keys == nil {
		keys = map[string]bool{}
		w.byPeer[rec.peer()] = keys
	}
	keys[key] = true
}

func (w *Watcher) unindex(key string, rec record) {
	if keys := w.byPeer[rec.peer()]; keys != nil {
		delete(keys, key)
		if len(keys) == 0 {
			delete(w.byPeer, rec.peer())
		}
	}
}

// reconcile brings what Peers was told in line with the known keys, for
// the affected peers: a peer no key names any more is removed, a new one is
// added, and one whose newest key says something new (weight, version,
// routes) is added again, which updates it. Called with mu held.
func (w *Watcher) reconcile(affected map[peerID]bool) (removed, added []nanobus.Peer) {
	for id := range affected {
		var newest record
		found := false
		for k := range w.byPeer[id] {
			if rec := w.known[k]; !found || rec.modRev > newest.modRev {
				newest, found = rec, true
			}
		}
		raw, told := w.told[id]
		switch {
		case !found && told:
			delete(w.told, id)
			removed = append(removed, nanobus.Peer{Service: id.service, Addr: id.addr})
		case found && (!told || raw != newest.raw):
			w.told[id] = newest.raw
			p, err := newest.Peer()
			if err != nil {
				w.bad.Add(1)
				w.log.Warn("registration with routes that do not parse; using the others", "service", id.service, "addr", id.addr, "err", err)
			}
			added = append(added, p)
		}
	}
	return removed, added
}

// notify tells the peers and the Changes channel. Removals go first, so a
// node that moved address is never listed twice.
func (w *Watcher) notify(changed bool, removed, added []nanobus.Peer) {
	for _, p := range removed {
		if w.peers != nil {
			w.peers.RemovePeer(p)
		}
		w.log.Info("instance gone", "service", p.Service, "addr", p.Addr)
	}
	for _, p := range added {
		if w.peers != nil {
			w.peers.AddPeer(p)
		}
		w.log.Info("instance up", "service", p.Service, "addr", p.Addr, "weight", p.Weight)
	}
	if changed || len(removed) > 0 || len(added) > 0 {
		select {
		case w.changes <- struct{}{}:
		default:
		}
	}
}

func (w *Watcher) parse(key, value []byte, modRev int64) (record, bool) {
	rec := record{raw: string(value), modRev: modRev}
	var err error
	switch rel := strings.TrimPrefix(string(key), w.prefix); {
	case strings.HasPrefix(rel, "services/"):
		if err = json.Unmarshal(value, &rec.Registration); err == nil {
			err = rec.Registration.validate()
		}
	case strings.HasPrefix(rel, "routes/"):
		service, _, _ := strings.Cut(strings.TrimPrefix(rel, "routes/"), "/")
		rec.route = new(Route)
		if err = json.Unmarshal(value, rec.route); err == nil {
			_, err = rec.route.parse()
		}
		rec.Service = service
	}
	if err != nil {
		w.bad.Add(1)
		w.log.Warn("skipping a value that does not parse", "key", string(key), "err", err)
		return record{}, false
	}
	return rec, true
}

// Values returns the raw values of the keys under subtree ("rollout/",
// "flags/"), by the rest of their key: settings kept beside the
// registrations, for whoever understands them.
func (w *Watcher) Values(subtree string) map[string][]byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string][]byte{}
	for k, rec := range w.known {
		if rest, ok := strings.CutPrefix(k, w.prefix+subtree); ok && rest != "" && !rec.registration() && rec.route == nil {
			out[rest] = []byte(rec.raw)
		}
	}
	return out
}

// Announced returns the public routes each service has announced, live
// instances or not (see Registrar), by service.
func (w *Watcher) Announced() map[string][]nanobus.Route {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string][]nanobus.Route{}
	for _, rec := range w.known {
		if rec.route != nil {
			if r, err := rec.route.parse(); err == nil {
				out[rec.Service] = append(out[rec.Service], r)
			}
		}
	}
	return out
}

// Snapshot returns the known registrations, sorted by service then node.
// Routes and other slices are shared with the Watcher: do not modify them.
func (w *Watcher) Snapshot() []Registration {
	w.mu.Lock()
	out := make([]Registration, 0, len(w.known))
	for _, r := range w.known {
		if r.registration() {
			out = append(out, r.Registration)
		}
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

// Changes gets a value after the known registrations change (including
// their routes or weights). Signals coalesce and the channel is shared: one
// goroutine should wait on it and call Snapshot after each signal.
func (w *Watcher) Changes() <-chan struct{} { return w.changes }

// WatchStats describes the watcher's health.
type WatchStats struct {
	Instances int       // registrations known now
	Lists     uint64    // full lists made: 1 plus one per lost watch
	Stale     bool      // etcd unreachable: the membership may be out of date
	Outages   uint64    // times etcd was found unreachable since Watch
	LastSeen  time.Time // last successful contact with etcd
	Malformed uint64    // registrations skipped because they did not parse
}

// Stats returns the watcher's health.
func (w *Watcher) Stats() WatchStats {
	w.mu.Lock()
	n := 0
	for _, keys := range w.byPeer {
		n += len(keys)
	}
	w.mu.Unlock()
	return WatchStats{
		Instances: n, Lists: w.lists.Load(), Stale: w.stale.Load(), Outages: w.outages.Load(),
		LastSeen: time.Unix(0, w.lastSeen.Load()), Malformed: w.bad.Load(),
	}
}

// Close stops watching. The peers it added stay where they are.
func (w *Watcher) Close() {
	w.cancel()
	<-w.done
}
