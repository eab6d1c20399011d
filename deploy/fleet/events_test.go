package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// The event cases' load: visits and flirts to the sample profiles through
// nginx. Every one publishes an event that notifications turns into an
// item of the visited profile's feed.
const (
	visitWorkers = 3
	visitRate    = 10 // POSTs/s per worker
	flirtRate    = 5  // POSTs/s, one worker: every flirt is a new pair
)

// leaseTTL is the events package's default reader lease, which
// notifications keeps: how soon a standby instance takes over a
// subscription from one that stopped renewing it.
const leaseTTL = 3 * time.Second

// convergeIn bounds how long the feeds may take to catch up with the
// writes once a case's load has stopped.
const convergeIn = 60 * time.Second

// notifiers are the notifications containers: one reads each
// subscription, the other stands by.
var notifiers = []string{"notifications1", "notifications2"}

// subscriptions are what notifications reads: "<publisher>/<topic>", as
// the events package names its lease keys. The cases write visits and
// flirts: a takeover is watched on those two. The profile updates are
// quiet during the cases, and a reader waiting on a quiet stream does not
// renew its lease (see takeOver): their reader is logged, not asserted.
var subscriptions = []string{"visits/profile.visited", "flirts/flirt.sent", "profiles/profile.updated"}

// loaded are the subscriptions the event load keeps busy.
var loaded = subscriptions[:2]

// pair is one write's two profiles: the one visited or flirted with, and
// the one who did it.
type pair struct{ to, from string }

// ledger is what the event load sent and what the suite read of the feeds,
// kept across the cases (the feeds only grow).
type ledger struct {
	once        sync.Once
	mu          sync.Mutex
	visitsSent  map[pair]int
	visitsAcked map[pair]int
	flirtsSent  map[pair]bool
	flirtsAcked map[pair]bool
	nextFlirt   int
	feeds       map[string]*feed // by profile, made before any read: goroutines share the map, one each per feed
}

// feed is what the suite read of a profile's feed, in item order.
type feed struct{ items []feedItem }

// feedItem is the part of a notification the checks read.
type feedItem struct {
	ID    uint64 `json:"id"`
	Kind  string `json:"kind"`
	From  string `json:"from"`
	Event string `json:"event"`
}

func (f *fleet) events() *ledger {
	l := &f.ledger
	l.once.Do(func() {
		l.visitsSent, l.visitsAcked = map[pair]int{}, map[pair]int{}
		l.flirtsSent, l.flirtsAcked = map[pair]bool{}, map[pair]bool{}
		l.feeds = map[string]*feed{}
		for _, id := range f.sample {
			l.feeds[id] = &feed{}
		}
	})
	return l
}

// eventsSurviveKills: visits and flirts under load while visits1 (a
// publisher, mid-write) is killed with SIGKILL and started again, and, as
// it comes back, the notifications instance reading the visits, then the
// other one that took over, each started again once the other reads: each
// time the standby takes the visits and flirts over and the feeds keep
// growing; afterwards every feed converges with the counts of its page, no
// event twice, every acknowledged write in it.
func eventsSurviveKills(t *testing.T, f *fleet) {
	ctx := context.Background()
	f.converged(t, "feeds before the kills", time.Now())
	w := startEvents(t, f)
	hold(2 * time.Second)
	regs, err := f.registrations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	publisher := keyOf(regs, "visits1")
	f.docker(t, "kill", "-s", "KILL", f.ids["visits1"])
	t.Log("visits1 killed (SIGKILL)")
	hold(time.Second)
	f.docker(t, "start", f.ids["visits1"]) // back while the readers fail over
	reader, standby := f.visitReader(t)
	var last func() // waits for the last one killed, started again
	for _, c := range [][2]string{{reader, standby}, {standby, reader}} {
		victim, survivor := c[0], c[1]
		regs, err = f.registrations(ctx)
		if err != nil {
			t.Fatal(err)
		}
		old := keyOf(regs, victim)
		killed := time.Now()
		f.docker(t, "kill", "-s", "KILL", f.ids[victim])
		v0, _ := f.feedTotals(t) // what it applied: none comes after
		t.Logf("%s killed (SIGKILL) with %d visits in the feeds", victim, v0)
		if took, err := f.takeOver(ctx, survivor, v0, killed); err != nil {
			t.Errorf("no failover from %s: %v", victim, err)
		} else {
			t.Logf("fleet: %s took over: visits in the feeds again %.1fs after %s was killed", survivor, took.Seconds(), victim)
		}
		f.docker(t, "start", f.ids[victim])
		last = func() {
			if err := f.registeredAgain(ctx, victim, old); err != nil {
				t.Error(err)
			}
			t.Logf("fleet: %s back in %.1fs", victim, time.Since(killed).Seconds())
		}
		if victim == reader { // the next one killed is the one reading now
			last()
		}
	}
	if err := f.registeredAgain(ctx, "visits1", publisher); err != nil {
		t.Error(err)
	}
	hold(2 * time.Second)
	w.stop()
	w.report(t, "writes across kills of visits1, "+reader+" and "+standby)
	f.converged(t, "feeds after the kills", w.stopped)
	last()
}

// postgresRestarted: PostgreSQL restarted under the same load, twice: a
// fast shutdown (SIGINT: sessions ended, open transactions rolled back),
// then a crash (SIGKILL: commits in flight, recovery at start), each
// container started again at once. Writes fail while it is down (counted);
// the services and the subscription reader come back by themselves, the
// feeds grow again, and converge as above.
func postgresRestarted(t *testing.T, f *fleet) {
	ctx := context.Background()
	w := startEvents(t, f)
	hold(2 * time.Second)
	for _, sig := range []string{"INT", "KILL"} {
		before, err := f.psql(ctx, "SELECT pg_postmaster_start_time()")
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		f.docker(t, "kill", "-s", sig, f.ids["postgres"])
		err = eventually(ctx, 30*time.Second, "postgres stopped", func() (bool, string) {
			out, err := docker(ctx, "inspect", "-f", "{{.State.Running}}", f.ids["postgres"])
			return err == nil && strings.TrimSpace(out) == "false", fmt.Sprint(out, err)
		})
		if err != nil {
			t.Fatal(err)
		}
		stopped := time.Since(start)
		f.docker(t, "start", f.ids["postgres"])
		err = eventually(ctx, 60*time.Second, "postgres answering again", func() (bool, string) {
			now, err := f.psql(ctx, "SELECT pg_postmaster_start_time()")
			return err == nil && now != before, fmt.Sprint(now, err)
		})
		if err != nil {
			t.Fatal(err)
		}
		up := time.Now()
		_, n0 := f.feedTotals(t)
		err = eventually(ctx, 30*time.Second, "the feeds growing after postgres came back", func() (bool, string) {
			_, n := f.feedTotals(t)
			return n >= n0+20, fmt.Sprintf("%d items, %d when postgres came back", n, n0)
		})
		if err != nil {
			t.Error(err)
		}
		t.Logf("fleet: postgres (SIG%s) stopped in %.1fs, answering again %.1fs after the signal; the feeds grew again %.1fs later",
			sig, stopped.Seconds(), up.Sub(start).Seconds(), time.Since(up).Seconds())
	}
	hold(2 * time.Second)
	w.stop()
	w.report(t, "writes across two postgres restarts")
	f.converged(t, "feeds after postgres restarts", w.stopped)
}

// subscriberCutOff: the notifications instance reading the visits
// disconnected from the fleet's network (from PostgreSQL and the
// publishers alike) for longer than the reader lease, under load: the
// other instance takes over and the feeds keep growing during the cut;
// once it is back, the feeds converge as above, nothing twice. It runs
// right after PostgresRestarted on purpose: a standby whose lease calls
// hung on connections to the crashed server once never took over (store
// calls are bounded by their lease's TTL since).
func subscriberCutOff(t *testing.T, f *fleet) {
	ctx := context.Background()
	network := f.project + "_fleet"
	w := startEvents(t, f)
	hold(2 * time.Second)
	reader, standby := f.visitReader(t)
	cut := time.Now()
	f.docker(t, "network", "disconnect", network, f.ids[reader])
	v0, n0 := f.feedTotals(t) // what it applied: none comes after
	t.Logf("%s cut off the network with %d visits in the feeds", reader, v0)
	if took, err := f.takeOver(ctx, standby, v0, cut); err != nil {
		t.Errorf("no failover from %s while it is cut off: %v", reader, err)
	} else {
		t.Logf("fleet: %s took over: visits in the feeds again %.1fs into the cut", standby, took.Seconds())
	}
	hold(time.Until(cut.Add(leaseTTL + 5*time.Second)))
	_, n1 := f.feedTotals(t)
	// Back with the name the others dial it by.
	f.docker(t, "network", "connect", "--alias", reader, network, f.ids[reader])
	t.Logf("fleet: %s reconnected after %.1fs; the feeds grew by %d items during the cut", reader, time.Since(cut).Seconds(), n1-n0)
	hold(2 * time.Second)
	w.stop()
	w.report(t, "writes while "+reader+" was cut off")
	f.converged(t, "feeds after "+reader+" was cut off", w.stopped)
}

// registeredAgain waits until c is registered under a key other than old.
func (f *fleet) registeredAgain(ctx context.Context, c, old string) error {
	return eventually(ctx, 60*time.Second, c+" registered again", func() (bool, string) {
		regs, err := f.registrations(ctx)
		if err != nil {
			return false, err.Error()
		}
		k := keyOf(regs, c)
		return k != "" && k != old, "key " + k
	})
}

// visitReader names the notifications container that reads the visits
// now, and the other one.
func (f *fleet) visitReader(t *testing.T) (reader, standby string) {
	t.Helper()
	ctx := context.Background()
	var rs map[string]string
	err := eventually(ctx, 30*time.Second, "a notifications instance reading the visits", func() (bool, string) {
		var err error
		if rs, err = f.readers(ctx); err != nil {
			return false, err.Error()
		}
		return slices.Contains(notifiers, rs[subscriptions[0]]), fmt.Sprint(rs)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("fleet: readers: %v", rs)
	reader = rs[subscriptions[0]]
	if reader == notifiers[0] {
		return reader, notifiers[1]
	}
	return reader, notifiers[0]
}

// takeOver waits until the feeds hold enough visits past v0 (read once
// the instance that read them was killed or cut off) to tell that visits
// are applied again, which only survivor can do, then until survivor holds
// the lease of every subscription the load keeps busy; it returns how long
// after the fault (at) the visits came again. (The feeds are read through nginx, cheaply; the leases take
// two docker execs, which a loaded host makes slow.)
//
// Not the quiet subscription (profile updates): events.subscription.lead
// renews the lease only once Node.Stream has returned, which is when the
// stream's head arrives, and serveRead sends the head with its first
// chunk: on a topic with nothing new, up to readSpan later. Meanwhile the
// lease lapses, the standby takes it and waits the same way, and both
// read when an event comes (the position, checked in each apply's
// SERIALIZABLE transaction, keeps it from being applied twice).
func (f *fleet) takeOver(ctx context.Context, survivor string, v0 int, at time.Time) (time.Duration, error) {
	err := eventually(ctx, leaseTTL+15*time.Second, "visits in the feeds again", func() (bool, string) {
		v, _ := f.feedTotals(nil)
		return v >= v0+20, fmt.Sprintf("%d visits, %d at the fault", v, v0)
	})
	took := time.Since(at)
	if err != nil {
		return took, err
	}
	return took, eventually(ctx, 10*time.Second, survivor+" reading", func() (bool, string) {
		rs, err := f.readers(ctx)
		if err != nil {
			return false, err.Error()
		}
		for _, s := range loaded {
			if rs[s] != survivor {
				return false, fmt.Sprint("readers ", rs)
			}
		}
		return true, ""
	})
}

// readers names the notifications container holding each subscription's
// lease, from the leases in the store and the nodes in the registry: ""
// for a lease that has lapsed, "node <id>" for a holder not registered.
func (f *fleet) readers(ctx context.Context) (map[string]string, error) {
	out, err := f.psql(ctx, `SELECT convert_from(k, 'UTF8'), convert_from(v, 'UTF8') FROM terminator_store
		WHERE ns = 'notifications' AND convert_from(k, 'UTF8') LIKE '~sub/%/lease'`)
	if err != nil {
		return nil, err
	}
	regs, err := f.registrations(ctx)
	if err != nil {
		return nil, err
	}
	nodes := map[string]string{}
	for _, r := range regs {
		if c, ok := strings.CutPrefix(r.Addr, "tcp://"); ok && strings.HasPrefix(c, "notifications") {
			nodes[r.Node] = strings.TrimSuffix(c, ":7100")
		}
	}
	rs := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		key, val, ok := strings.Cut(line, "|")
		if !ok {
			continue
		}
		var l struct {
			Holder string `json:"holder"`
			Until  int64  `json:"until"`
		}
		if err := json.Unmarshal([]byte(val), &l); err != nil {
			return nil, fmt.Errorf("lease %s: %q: %w", key, val, err)
		}
		sub := strings.TrimSuffix(strings.TrimPrefix(key, "~sub/notifications/"), "/lease")
		switch c, ok := nodes[l.Holder]; {
		case time.Now().UnixNano() >= l.Until:
			rs[sub] = ""
		case ok:
			rs[sub] = c
		default:
			rs[sub] = "node " + l.Holder
		}
	}
	return rs, nil
}

// psql runs one query in the fleet's database and returns its rows,
// unaligned.
func (f *fleet) psql(ctx context.Context, query string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return docker(ctx, "exec", f.ids["postgres"], "psql", "-h", "/tmp", "-U", "terminator", "-d", "terminator",
		"-v", "ON_ERROR_STOP=1", "-Atc", query)
}

// eventLoad is the visits and flirts through nginx, until stopped.
type eventLoad struct {
	f       *fleet
	stopc   chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
	start   time.Time
	stopped time.Time
	visits  tally
	flirts  tally

	mu                  sync.Mutex
	firstFail, lastFail time.Time
	noPairs             int // flirts not sent: every pair of sample profiles has flirted
}

func startEvents(t *testing.T, f *fleet) *eventLoad {
	w := &eventLoad{f: f, stopc: make(chan struct{}), start: time.Now()}
	t.Cleanup(func() { w.stop() })
	l := f.events()
	n := len(f.sample)
	for range visitWorkers {
		w.every(time.Second/visitRate, func() {
			i := rand.IntN(n)
			p := pair{to: f.sample[i], from: f.sample[(i+1+rand.IntN(n-1))%n]}
			l.mu.Lock()
			l.visitsSent[p]++
			l.mu.Unlock()
			st, err := post(f.url("/profiles/"+p.to+"/visits"), fmt.Sprintf(`{"visitor":%q}`, p.from))
			w.visits.add(st, err)
			if w.acked(st, err) {
				l.mu.Lock()
				l.visitsAcked[p]++
				l.mu.Unlock()
			}
		})
	}
	w.every(time.Second/flirtRate, func() {
		// Pair k: to profile k%n, from the one k/n%(n-1)+1 after it.
		l.mu.Lock()
		k := l.nextFlirt
		l.nextFlirt++
		p := pair{to: f.sample[k%n], from: f.sample[(k%n+1+k/n%(n-1))%n]}
		if k < n*(n-1) {
			l.flirtsSent[p] = true
		}
		l.mu.Unlock()
		if k >= n*(n-1) {
			w.mu.Lock()
			w.noPairs++
			w.mu.Unlock()
			return
		}
		st, err := post(f.url("/profiles/"+p.to+"/flirts"), fmt.Sprintf(`{"from":%q,"message":"fleet %d"}`, p.from, k))
		w.flirts.add(st, err)
		if w.acked(st, err) {
			l.mu.Lock()
			l.flirtsAcked[p] = true
			l.mu.Unlock()
		}
	})
	return w
}

// every runs fn every period in a goroutine of its own until the load
// stops.
func (w *eventLoad) every(period time.Duration, fn func()) {
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		tick := time.NewTicker(period)
		defer tick.Stop()
		for {
			select {
			case <-w.stopc:
				return
			case <-tick.C:
			}
			fn()
		}
	}()
}

// acked reports whether a write was acknowledged, and notes when writes
// failed.
func (w *eventLoad) acked(status int, err error) bool {
	if err == nil && status/100 == 2 {
		return true
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	now := time.Now()
	if w.firstFail.IsZero() {
		w.firstFail = now
	}
	w.lastFail = now
	return false
}

func (w *eventLoad) stop() {
	w.once.Do(func() {
		close(w.stopc)
		w.wg.Wait()
		w.stopped = time.Now()
	})
}

// report logs what the writes saw: acknowledged and failed, and when the
// failures were, from the start of the load.
func (w *eventLoad) report(t *testing.T, what string) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	acked := w.visits.sent + w.flirts.sent - w.visits.failed() - w.flirts.failed()
	failed := w.visits.failed() + w.flirts.failed()
	window := ""
	if failed > 0 {
		window = fmt.Sprintf(" (failures from +%.1fs to +%.1fs)", w.firstFail.Sub(w.start).Seconds(), w.lastFail.Sub(w.start).Seconds())
	}
	t.Logf("fleet: %s: %.0fs, acknowledged=%d failed=%d%s; visits %v; flirts %v", what,
		w.stopped.Sub(w.start).Seconds(), acked, failed, window, &w.visits, &w.flirts)
	if w.noPairs > 0 {
		t.Logf("fleet: %d flirts not sent: every pair of sample profiles has flirted", w.noPairs)
	}
	if acked == 0 {
		t.Errorf("%s: no write was acknowledged", what)
	}
}

// feedsState is one look at every sample profile's feed and page.
type feedsState struct {
	profiles, converged int
	visits, flirts      int      // items in the feeds
	waiting             []string // why profiles have not converged yet, a few
	bad                 []string // what can never converge: duplicates, rewrites, items no write made
}

// feedTotals reads what was added to the feeds since the suite last read
// them (checking it as checkFeeds does) and returns the visits' items and
// all items. A read that fails counts what was read before.
func (f *fleet) feedTotals(t *testing.T) (visits, all int) {
	s := f.checkFeeds(false)
	if t != nil && len(s.bad) > 0 {
		t.Errorf("feeds: %s", strings.Join(s.bad, "; "))
	}
	return s.visits, s.visits + s.flirts
}

// converged waits (bounded) until every sample profile's feed holds as
// many visits and flirts as its page counts (the same projection, written
// in the same transaction), its items numbered 1..N, no event twice, and
// every acknowledged write among them; it logs how long after since that
// was.
func (f *fleet) converged(t *testing.T, what string, since time.Time) {
	t.Helper()
	var s feedsState
	err := eventually(context.Background(), convergeIn, what+" converged", func() (bool, string) {
		s = f.checkFeeds(true)
		return len(s.bad) > 0 || s.converged == s.profiles,
			fmt.Sprintf("%d of %d profiles converged, e.g. %s", s.converged, s.profiles, strings.Join(s.waiting, "; "))
	})
	switch {
	case len(s.bad) > 0:
		t.Errorf("%s: %s", what, strings.Join(s.bad, "; "))
	case err != nil:
		t.Error(err)
	default:
		t.Logf("fleet: %s: %.1fs after the load stopped: %d profiles, %d items (%d visits, %d flirts)",
			what, time.Since(since).Seconds(), s.profiles, s.visits+s.flirts, s.visits, s.flirts)
	}
	if t.Failed() {
		f.tails(t, "notifications1", "notifications2", "visits1", "visits2", "flirts1", "flirts2", "postgres")
	}
}

// checkFeeds reads every sample profile's feed, all of it (full) or what
// was added since the last read, then its page, and checks them. A full
// read is made with no writes in flight: only then is every acknowledged
// write due in the feed.
func (f *fleet) checkFeeds(full bool) feedsState {
	l := f.events()
	s := feedsState{profiles: len(f.sample)}
	var mu sync.Mutex
	parallel(f.sample, 8, func(id string) {
		c := f.checkFeed(l, id, full)
		mu.Lock()
		defer mu.Unlock()
		s.visits += c.visits
		s.flirts += c.flirts
		if c.converged {
			s.converged++
		} else if c.waiting != "" && len(s.waiting) < 3 {
			s.waiting = append(s.waiting, id+": "+c.waiting)
		}
		s.bad = append(s.bad, c.bad...)
	})
	slices.Sort(s.bad)
	if len(s.bad) > 10 {
		s.bad = append(s.bad[:10], fmt.Sprintf("and %d more", len(s.bad)-10))
	}
	return s
}

type feedCheck struct {
	converged      bool
	visits, flirts int
	waiting        string
	bad            []string
}

func (f *fleet) checkFeed(l *ledger, id string, full bool) (c feedCheck) {
	fd := l.feeds[id]
	bad := func(format string, args ...any) {
		c.bad = append(c.bad, id+": "+fmt.Sprintf(format, args...))
	}
	since := uint64(0)
	if !full && len(fd.items) > 0 {
		since = fd.items[len(fd.items)-1].ID
	}
	items, err := f.readFeed(id, since)
	if err != nil {
		c.waiting = err.Error()
		items = nil
		full = false
	}
	if full {
		if len(items) < len(fd.items) {
			bad("the feed shrank from %d items to %d", len(fd.items), len(items))
		}
		for i := range min(len(items), len(fd.items)) {
			if items[i] != fd.items[i] {
				bad("item %d was %+v, is %+v", i+1, fd.items[i], items[i])
			}
		}
		fd.items = items
	} else {
		fd.items = append(fd.items, items...)
	}
	events := map[string]uint64{}
	visits := map[string]int{}  // by visitor
	flirts := map[string]bool{} // by sender
	for i, it := range fd.items {
		if it.ID != uint64(i+1) {
			bad("item %d has ID %d", i+1, it.ID)
		}
		if first, ok := events[it.Event]; ok {
			bad("event %s twice: items %d and %d", it.Event, first, it.ID)
		}
		events[it.Event] = it.ID
		switch it.Kind {
		case "visit":
			c.visits++
			visits[it.From]++
		case "flirt":
			c.flirts++
			if flirts[it.From] {
				bad("two flirts from %s (item %d)", it.From, it.ID)
			}
			flirts[it.From] = true
		default:
			bad("item %d: kind %q", it.ID, it.Kind)
		}
	}
	if err != nil {
		return c
	}
	// The page after the feed: what it counts includes every item read.
	var page struct {
		Visits, Flirts *int
		Missing        []string
	}
	if st, err := getJSON(f.url("/profiles/"+id), &page); err != nil || st != 200 || page.Visits == nil || page.Flirts == nil {
		c.waiting = fmt.Sprintf("page: %d %v missing %v", st, err, page.Missing)
		return c
	}
	pv, pf := *page.Visits, *page.Flirts
	if c.visits > pv || c.flirts > pf {
		bad("the feed has %d visits and %d flirts, the page counts %d and %d", c.visits, c.flirts, pv, pf)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for from, n := range visits {
		if sent := l.visitsSent[pair{id, from}]; n > sent {
			bad("%d visits from %s in the feed, %d sent", n, from, sent)
		}
	}
	for from := range flirts {
		if !l.flirtsSent[pair{id, from}] {
			bad("a flirt from %s in the feed was never sent", from)
		}
	}
	if c.visits != pv || c.flirts != pf {
		c.waiting = fmt.Sprintf("the feed has %d visits and %d flirts, the page counts %d and %d", c.visits, c.flirts, pv, pf)
		return c
	}
	if !full {
		return c // writes in flight: one acknowledged after the page was read is not counted there yet
	}
	// No writes in flight: the feed has converged once every acknowledged
	// write is in it. The page's counts are the same projection as the
	// feed, so they cannot tell whether it has caught up: the ledger does.
	// (One still missing when the wait ends is reported by converged.)
	for p, n := range l.visitsAcked {
		if p.to == id && visits[p.from] < n {
			c.waiting = fmt.Sprintf("%d visits from %s acknowledged, %d in the feed (and counted)", n, p.from, visits[p.from])
			return c
		}
	}
	for p := range l.flirtsAcked {
		if p.to == id && !flirts[p.from] {
			c.waiting = fmt.Sprintf("the flirt from %s was acknowledged, is not in the feed (nor counted)", p.from)
			return c
		}
	}
	c.converged = len(c.bad) == 0
	return c
}

// readFeed reads a profile's notifications after since, page by page.
func (f *fleet) readFeed(id string, since uint64) ([]feedItem, error) {
	var all []feedItem
	for {
		var page struct {
			Items []feedItem `json:"items"`
			Last  uint64     `json:"last"`
		}
		st, err := getJSON(f.url(fmt.Sprintf("/profiles/%s/notifications?since=%d", id, since)), &page)
		if err != nil || st != 200 {
			return nil, fmt.Errorf("notifications since %d: %d %v", since, st, err)
		}
		all = append(all, page.Items...)
		if len(page.Items) < 100 || page.Last <= since {
			return all, nil
		}
		since = page.Last
	}
}

// tails logs the last lines of the containers' logs: the evidence when a
// case fails.
func (f *fleet) tails(t *testing.T, containers ...string) {
	t.Helper()
	for _, c := range containers {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := exec.CommandContext(ctx, "docker", "logs", "--tail", "40", f.ids[c]).CombinedOutput()
		cancel()
		t.Logf("fleet: the last lines of %s's log (%v):\n%s", c, err, out)
	}
}

func getJSON(url string, v any) (int, error) {
	resp, err := client.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode != 200 {
		return resp.StatusCode, fmt.Errorf("%s", strings.TrimSpace(string(b[:min(len(b), 200)])))
	}
	return resp.StatusCode, json.Unmarshal(b, v)
}

func post(url, body string) (int, error) {
	resp, err := client.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode, nil
}
