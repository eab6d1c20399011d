package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/terminator-gw/terminator/discovery/embedded"
	"github.com/terminator-gw/terminator/services/store/pgtest"
)

// The events' fault cases with real processes: every role a process of
// the built binary with its own data, on an etcd in the test process;
// visits and then notifications killed with SIGKILL under load and
// started again on their data; then a second notifications on an empty
// store, which replays the publishers' logs from the start. The numbers
// (writes per fault window, events, times to converge) are logged.

// Sizes of the run: a few seconds of load from a few writers over a
// handful of profiles, so that every profile's feed runs to a few pages.
const (
	faultProfiles = 20
	faultWorkers  = 4
	faultLoad     = 8 * time.Second
	// faultConverge bounds each wait for the feeds to catch up.
	faultConverge = 30 * time.Second
)

// fleet is the roles of one terminator as processes of the binary, each
// on free loopback ports, with its own -data directory (and -store when
// the services share a PostgreSQL), on one etcd.
type fleet struct {
	t      *testing.T
	bin    string
	etcd   string // client URL
	store  string // "" for Pebble under each -data; else a postgres:// URL
	dir    string
	client *http.Client

	mu    sync.Mutex
	procs []*proc // every process started, for their logs on failure
	seq   map[string]int
}

// proc is one run of a role.
type proc struct {
	f             *fleet
	role, name    string // name: "visits#2", the role's second run
	data          string
	admin, public string
	logFile       string
	cmd           *exec.Cmd
	exited        chan struct{}
	waitErr       error // read after exited is closed
}

// newFleet starts the etcd in the test process; the processes started
// later are killed when the test ends (before the etcd stops), and their
// logs' tails printed if it failed.
func newFleet(t *testing.T, bin, store string) *fleet {
	t.Helper()
	e, err := embedded.Start(embedded.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("embedded etcd: %v", err)
	}
	t.Cleanup(e.Close)
	f := &fleet{t: t, bin: bin, etcd: e.Endpoints()[0], store: store, dir: t.TempDir(), seq: map[string]int{},
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 2 * faultWorkers}}}
	t.Cleanup(func() {
		f.mu.Lock()
		procs := slices.Clone(f.procs)
		f.mu.Unlock()
		for _, p := range procs {
			p.kill()
		}
		if t.Failed() {
			for _, p := range procs {
				t.Logf("--- %s (%s), last lines:\n%s", p.name, p.logFile, p.tail(40))
			}
		}
		f.client.CloseIdleConnections()
	})
	return f
}

// start runs role on data (a directory of its own; stateful roles keep
// their Pebble store there) and waits until it is ready: 30 s at most.
func (f *fleet) start(role, data string, extra ...string) *proc {
	f.t.Helper()
	f.mu.Lock()
	f.seq[role]++
	p := &proc{f: f, role: role, name: fmt.Sprintf("%s#%d", role, f.seq[role]), data: data, admin: freeAddr(f.t),
		exited: make(chan struct{})}
	f.procs = append(f.procs, p)
	f.mu.Unlock()
	p.logFile = filepath.Join(f.dir, strings.ReplaceAll(p.name, "#", "-")+".log")
	args := []string{role, "-etcd-endpoints", f.etcd, "-admin", p.admin, "-ttl", "2s"}
	if role == "front" {
		p.public = freeAddr(f.t)
		args = append(args, "-listen", p.public)
	} else if role != "web" {
		args = append(args, "-data", data)
		if f.store != "" {
			args = append(args, "-store", f.store)
		}
	}
	args = append(args, extra...)
	out, err := os.Create(p.logFile)
	if err != nil {
		f.t.Fatal(err)
	}
	defer out.Close() // the process has its own copy
	p.cmd = exec.Command(f.bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = out, out
	if err := p.cmd.Start(); err != nil {
		f.t.Fatalf("start %s: %v", p.name, err)
	}
	go func() { p.waitErr = p.cmd.Wait(); close(p.exited) }()
	for end := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if code, _, _ := get("http://" + p.admin + "/readyz"); code == 200 {
			return p
		}
		select {
		case <-p.exited:
			f.t.Fatalf("%s exited while starting (%v):\n%s", p.name, p.waitErr, p.tail(40))
		default:
		}
		if time.Now().After(end) {
			f.t.Fatalf("%s not ready in 30s:\n%s", p.name, p.tail(40))
		}
	}
}

// kill9 kills p with SIGKILL and waits for it to be gone.
func (p *proc) kill9() {
	p.f.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		p.f.t.Fatalf("kill -9 %s (pid %d): %v", p.name, p.cmd.Process.Pid, err)
	}
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		p.f.t.Fatalf("%s (pid %d) still there 10s after SIGKILL", p.name, p.cmd.Process.Pid)
	}
}

// stop sends SIGTERM and wants exit code 0 within 30 s.
func (p *proc) stop() {
	p.f.t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		if p.waitErr != nil {
			p.f.t.Fatalf("%s: exit: %v (want code 0)\n%s", p.name, p.waitErr, p.tail(40))
		}
	case <-time.After(30 * time.Second):
		p.f.t.Fatalf("%s did not exit within 30s of SIGTERM\n%s", p.name, p.tail(40))
	}
}

// kill ends p if it still runs: the test's cleanup.
func (p *proc) kill() {
	select {
	case <-p.exited:
	default:
		p.cmd.Process.Kill()
		<-p.exited
	}
}

func (p *proc) tail(n int) string {
	b, _ := os.ReadFile(p.logFile)
	lines := strings.SplitAfter(string(b), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "")
}

// count is how many lines of p's log contain s.
func (p *proc) count(s string) int {
	b, _ := os.ReadFile(p.logFile)
	return strings.Count(string(b), s)
}

// do sends one request through the front: its status (0 when no answer
// came) and body.
func (f *fleet) do(front *proc, method, path, body string) (int, []byte) {
	req, err := http.NewRequest(method, "http://"+front.public+path, strings.NewReader(body))
	if err != nil {
		return 0, nil
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// feedItem is a notification as GET /profiles/{id}/notifications shows it.
type feedItem struct {
	ID       uint64 `json:"id"`
	Kind     string `json:"kind"`
	From     string `json:"from"`
	FromName string `json:"from_name"`
	Event    string `json:"event"`
}

// feed reads a profile's whole feed, page by page (since=last).
func (f *fleet) feed(front *proc, profile string) ([]feedItem, error) {
	var all []feedItem
	since := uint64(0)
	for {
		code, body := f.do(front, "GET", fmt.Sprintf("/profiles/%s/notifications?since=%d", profile, since), "")
		if code != 200 {
			return nil, fmt.Errorf("notifications of %s since %d: %d %s", profile, since, code, body)
		}
		var page struct {
			Items []feedItem `json:"items"`
			Last  uint64     `json:"last"`
		}
		if err := json.Unmarshal(body, &page); err != nil {
			return nil, fmt.Errorf("notifications of %s since %d: %w: %s", profile, since, err, body)
		}
		all = append(all, page.Items...)
		if len(page.Items) == 0 {
			return all, nil
		}
		since = page.Last
	}
}

// counts are a profile's page counts: what the visits and flirts services
// stored, the source of truth.
type counts struct{ Visits, Flirts int }

func (f *fleet) counts(front *proc, profile string) (counts, error) {
	code, body := f.do(front, "GET", "/profiles/"+profile, "")
	var page struct {
		Visits  *int     `json:"visits"`
		Flirts  *int     `json:"flirts"`
		Missing []string `json:"missing"`
	}
	if code != 200 {
		return counts{}, fmt.Errorf("page of %s: %d %s", profile, code, body)
	}
	if err := json.Unmarshal(body, &page); err != nil || page.Visits == nil || page.Flirts == nil {
		return counts{}, fmt.Errorf("page of %s: counts missing (%v): %s", profile, err, body)
	}
	return counts{*page.Visits, *page.Flirts}, nil
}

// acked is a write the front acknowledged: who, and the count the service
// answered, the write's rank among the profile's visits (or flirts).
type acked struct {
	from string
	n    int
}

// window is a stretch of the load between faults, with its numbers.
type window struct {
	name                                string
	attempted, acked, failed, refused   atomic.Int64 // refused: a flirt already sent (409)
	visitsAcked, flirtsAcked, noAnswers atomic.Int64 // noAnswers: failed without an HTTP status
	began, ended                        time.Time
	firstFailure                        atomic.Pointer[string] // the first failed write's answer
}

// load is the writers: visits, and some flirts, across the profiles.
type load struct {
	f        *fleet
	front    *proc
	profiles []string
	windows  []*window
	cur      atomic.Pointer[window]
	stop     chan struct{}
	wg       sync.WaitGroup

	mu     sync.Mutex
	visits map[string][]acked // by profile visited
	flirts map[string][]acked // by profile flirted with
	// lastVisitAck is when a visit was last acknowledged: the visits
	// service is back when one is acknowledged after its restart.
	lastVisitAck atomic.Int64
}

func (l *load) enter(name string) *window {
	w := &window{name: name, began: time.Now()}
	if prev := l.cur.Load(); prev != nil {
		prev.ended = w.began
	}
	l.windows = append(l.windows, w)
	l.cur.Store(w)
	return w
}

func (l *load) run(workers int) {
	for i := range workers {
		l.wg.Go(func() { l.write(rand.New(rand.NewPCG(uint64(i), 42))) })
	}
}

func (l *load) write(r *rand.Rand) {
	for {
		select {
		case <-l.stop:
			return
		default:
		}
		to := l.profiles[r.IntN(len(l.profiles))]
		from := to
		for from == to {
			from = l.profiles[r.IntN(len(l.profiles))]
		}
		flirt := r.IntN(5) == 0
		var code int
		var body []byte
		if flirt {
			code, body = l.f.do(l.front, "POST", "/profiles/"+to+"/flirts", `{"from":"`+from+`","message":"hi"}`)
		} else {
			code, body = l.f.do(l.front, "POST", "/profiles/"+to+"/visits", `{"visitor":"`+from+`"}`)
		}
		w := l.cur.Load() // a write counts where it ends: one cut by a fault in the fault's window
		w.attempted.Add(1)
		var c struct {
			Count int `json:"count"`
		}
		switch {
		case code == 409 && flirt:
			w.refused.Add(1) // sent before: by this run, maybe unacknowledged
			continue
		case code/100 != 2 || json.Unmarshal(body, &c) != nil || c.Count < 1:
			w.failed.Add(1)
			what := fmt.Sprintf("%d %s", code, bytes.TrimSpace(body))
			w.firstFailure.CompareAndSwap(nil, &what)
			if code == 0 {
				w.noAnswers.Add(1)
			}
			continue
		}
		w.acked.Add(1)
		l.mu.Lock()
		if flirt {
			w.flirtsAcked.Add(1)
			l.flirts[to] = append(l.flirts[to], acked{from, c.Count})
		} else {
			w.visitsAcked.Add(1)
			l.visits[to] = append(l.visits[to], acked{from, c.Count})
			l.lastVisitAck.Store(time.Now().UnixNano())
		}
		l.mu.Unlock()
	}
}

// waitAcked waits (bounded) until n more writes are acknowledged in the
// current window: the faults come while writes flow.
func (l *load) waitAcked(t *testing.T, n int64) {
	t.Helper()
	w := l.cur.Load()
	start := w.acked.Load()
	for end := time.Now().Add(faultConverge); w.acked.Load() < start+n; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("window %q: fewer than %d writes acknowledged in %v", w.name, n, faultConverge)
		}
	}
}

// waitFor polls cond every 50 ms until it holds or timeout passes; it
// returns how long it took and the last reason cond gave for not holding.
func waitFor(timeout time.Duration, cond func() (bool, string)) (time.Duration, bool, string) {
	start := time.Now()
	for {
		ok, why := cond()
		if ok {
			return time.Since(start), true, ""
		}
		if time.Since(start) > timeout {
			return time.Since(start), false, why
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// converged reports whether every profile's feed has as many items as
// its page counts and at least as many of each kind as l acknowledged (the
// counts are the feed's own projection: only the writes' answers tell
// whether it has caught up), and returns the feeds and counts it read.
func (f *fleet) converged(front *proc, profiles []string, l *load) (map[string][]feedItem, map[string]counts, bool, string) {
	feeds, cs := map[string][]feedItem{}, map[string]counts{}
	l.mu.Lock()
	acks := map[string][2]int{}
	for _, p := range profiles {
		acks[p] = [2]int{len(l.visits[p]), len(l.flirts[p])}
	}
	l.mu.Unlock()
	for _, p := range profiles {
		c, err := f.counts(front, p)
		if err != nil {
			return nil, nil, false, err.Error()
		}
		items, err := f.feed(front, p)
		if err != nil {
			return nil, nil, false, err.Error()
		}
		if len(items) != c.Visits+c.Flirts {
			return nil, nil, false, fmt.Sprintf("%s: %d notifications, page counts %d visits + %d flirts", p, len(items), c.Visits, c.Flirts)
		}
		if a := acks[p]; c.Visits < a[0] || c.Flirts < a[1] {
			return nil, nil, false, fmt.Sprintf("%s: page counts %d visits and %d flirts, %d and %d acknowledged", p, c.Visits, c.Flirts, a[0], a[1])
		}
		feeds[p], cs[p] = items, c
	}
	return feeds, cs, true, ""
}

// checkFeeds asserts what the events promise of one projection: every
// acknowledged visit and flirt is in its profile's feed (at its rank: the
// n-th visit acknowledged with count n is the feed's n-th visit, from the
// same visitor), no event twice, items numbered 1..N, and as many items
// of each kind as the page counts.
func checkFeeds(t *testing.T, feeds map[string][]feedItem, cs map[string]counts, l *load) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range l.profiles {
		items, c := feeds[p], cs[p]
		seen := map[string]uint64{}
		var byKind = map[string][]feedItem{}
		for i, it := range items {
			if it.ID != uint64(i+1) {
				t.Errorf("%s: item %d has id %d, want %d (ids 1..N in order)", p, i, it.ID, i+1)
			}
			if prev, dup := seen[it.Event]; dup {
				t.Errorf("%s: event %s twice in the feed: items %d and %d", p, it.Event, prev, it.ID)
			}
			seen[it.Event] = it.ID
			byKind[it.Kind] = append(byKind[it.Kind], it)
			if want := map[string]string{"visit": "visits:", "flirt": "flirts:"}[it.Kind]; want == "" || !strings.HasPrefix(it.Event, want) {
				t.Errorf("%s: item %d: kind %q from event %s", p, it.ID, it.Kind, it.Event)
			}
		}
		if len(byKind["visit"]) != c.Visits || len(byKind["flirt"]) != c.Flirts {
			t.Errorf("%s: feed has %d visits and %d flirts, the page counts %d and %d",
				p, len(byKind["visit"]), len(byKind["flirt"]), c.Visits, c.Flirts)
		}
		for kind, acks := range map[string][]acked{"visit": l.visits[p], "flirt": l.flirts[p]} {
			have := byKind[kind]
			ranks := map[int]bool{}
			for _, a := range acks {
				if ranks[a.n] {
					t.Errorf("%s: two %ss acknowledged with count %d", p, kind, a.n)
				}
				ranks[a.n] = true
			}
			if len(acks) > len(have) {
				t.Errorf("%s: %d %ss acknowledged, %d in the feed and the page counts", p, len(acks), kind, len(have))
			}
			for _, a := range acks {
				if a.n > len(have) {
					t.Errorf("%s: acknowledged %s #%d from %s is not in the feed (%d %ss there): lost", p, kind, a.n, a.from, len(have), kind)
				} else if it := have[a.n-1]; it.From != a.from {
					t.Errorf("%s: acknowledged %s #%d from %s, the feed's %s #%d is from %s (%s)", p, kind, a.n, a.from, kind, a.n, it.From, it.Event)
				}
			}
		}
	}
}

// sameFeeds compares a replayed projection with the first: per profile,
// the visits in the same order and the flirts in the same order (kind,
// from, name, event). Visits and flirts come from two publishers over two
// streams, and a feed numbers items in the order applied: interleaving
// says how the two kinds' interleaving differs ("" when it does not).
func sameFeeds(profiles []string, want, got map[string][]feedItem) (kindOrder bool, interleaving, why string) {
	strip := func(items []feedItem, kind string) []feedItem {
		var out []feedItem
		for _, it := range items {
			if kind == "" || it.Kind == kind {
				it.ID = 0
				out = append(out, it)
			}
		}
		return out
	}
	differ, example := 0, ""
	for _, p := range profiles {
		for _, kind := range []string{"visit", "flirt"} {
			if w, g := strip(want[p], kind), strip(got[p], kind); !slices.Equal(w, g) {
				return false, "", fmt.Sprintf("%s: the %ss differ (first %d, replayed %d; first difference at %d)", p, kind, len(w), len(g), firstDiff(w, g))
			}
		}
		if !slices.Equal(strip(want[p], ""), strip(got[p], "")) {
			differ++
			if example == "" {
				i := firstDiff(want[p], got[p])
				example = fmt.Sprintf("%s's item %d is a %s (%s) in the first, a %s (%s) in the replay", p, i,
					want[p][i-1].Kind, want[p][i-1].Event, got[p][i-1].Kind, got[p][i-1].Event)
			}
		}
	}
	if differ > 0 {
		interleaving = fmt.Sprintf("differs in %d of %d feeds, e.g. %s", differ, len(profiles), example)
	}
	return true, interleaving, ""
}

func firstDiff(a, b []feedItem) int {
	for i := range min(len(a), len(b)) {
		x, y := a[i], b[i]
		x.ID, y.ID = 0, 0
		if x != y {
			return i + 1
		}
	}
	return min(len(a), len(b)) + 1
}

// fault is one fault the load runs through: do causes it and brings the
// part back (a process killed and started again on its data, a database
// restarted).
type fault struct {
	name string
	do   func()
}

// faultRun is one run of the fleet: its processes by role, and where
// each keeps its data.
type faultRun struct {
	f     *fleet
	procs map[string]*proc
	data  func(role string) string
	// notifications is the -data and -store of a notifications process
	// whose store is empty: it replays the publishers' logs.
	replayStore func() (data string, extra []string)
}

// startFleet starts the stateful roles at once, then the aggregator that
// calls them, then the front.
func startFleet(t *testing.T, f *fleet) *faultRun {
	t.Helper()
	begin := time.Now()
	r := &faultRun{f: f, procs: map[string]*proc{}, data: func(role string) string { return filepath.Join(f.dir, "data-"+role) }}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, role := range []string{"profiles", "visits", "flirts", "notifications"} {
		wg.Go(func() {
			p := f.start(role, r.data(role))
			mu.Lock()
			r.procs[role] = p
			mu.Unlock()
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	r.procs["web"] = f.start("web", "")
	r.procs["front"] = f.start("front", "")
	t.Logf("fleet up in %v: etcd in the test process; logs and data in %s", time.Since(begin).Round(time.Millisecond), f.dir)
	return r
}

// restart kills role with SIGKILL and starts it again on its data.
func (r *faultRun) restart(role string) {
	r.procs[role].kill9()
	r.procs[role] = r.f.start(role, r.data(role))
}

// runFaults drives the load through the faults, then checks the feeds
// against the page counts and every acknowledged write, and replays the
// events into a notifications with an empty store.
func runFaults(t *testing.T, r *faultRun, faults ...fault) {
	f, front := r.f, r.procs["front"]
	var profiles []string
	for i := range faultProfiles {
		id := fmt.Sprintf("p%02d", i)
		profiles = append(profiles, id)
		body := fmt.Sprintf(`{"name":"Name %d","age":30,"city":"Lyon"}`, i)
		if _, ok, why := waitFor(10*time.Second, func() (bool, string) {
			code, b := f.do(front, "PUT", "/profiles/"+id, body)
			return code/100 == 2, fmt.Sprint(code, " ", string(b))
		}); !ok {
			t.Fatalf("PUT /profiles/%s: %s", id, why)
		}
	}

	l := &load{f: f, front: front, profiles: profiles, stop: make(chan struct{}),
		visits: map[string][]acked{}, flirts: map[string][]acked{}}
	l.enter("steady")
	loadStart := time.Now()
	l.run(faultWorkers)
	stopped := false
	stopLoad := func() {
		if !stopped {
			stopped = true
			close(l.stop)
			l.wg.Wait()
			l.cur.Load().ended = time.Now()
		}
	}
	defer stopLoad()
	l.waitAcked(t, 200)

	// Each fault while writes are in flight; it is over once a write is
	// acknowledged after it, and a feed has caught up with what was
	// acknowledged to its profile by then.
	var recoveries []string
	firstNotifications := r.procs["notifications"]
	for _, fl := range faults {
		l.enter(fl.name + ", until back")
		began := time.Now()
		fl.do()
		done := time.Now()
		took, ok, why := waitFor(faultConverge, func() (bool, string) {
			return l.lastVisitAck.Load() > done.UnixNano(), "no visit acknowledged"
		})
		if !ok {
			t.Fatalf("%s: %s within %v of the restart", fl.name, why, faultConverge)
		}
		writesBack := done.Sub(began) + took
		l.mu.Lock()
		target := len(l.visits[profiles[0]])
		l.mu.Unlock()
		took, ok, why = waitFor(faultConverge, func() (bool, string) {
			items, err := f.feed(front, profiles[0])
			if err != nil {
				return false, err.Error()
			}
			n := 0
			for _, it := range items {
				if it.Kind == "visit" {
					n++
				}
			}
			return n >= target, fmt.Sprintf("%d of %d visits", n, target)
		})
		if !ok {
			t.Fatalf("%s: %s's feed did not catch up in %v: %s", fl.name, profiles[0], faultConverge, why)
		}
		recoveries = append(recoveries, fmt.Sprintf("%s: restarted in %v, a visit acknowledged again %v after the fault, %s's feed caught up with it %v after that",
			fl.name, done.Sub(began).Round(time.Millisecond), writesBack.Round(time.Millisecond), profiles[0], took.Round(time.Millisecond)))
		l.enter("after " + fl.name)
		l.waitAcked(t, 200)
	}
	for time.Since(loadStart) < faultLoad {
		l.waitAcked(t, 50)
	}
	stopLoad()
	loadTime := time.Since(loadStart)

	// Every feed catches up with the counts, and holds every write.
	convergeTime, ok, why := waitFor(faultConverge, func() (bool, string) {
		_, _, ok, why := f.converged(front, profiles, l)
		return ok, why
	})
	if !ok {
		t.Fatalf("feeds did not converge to the page counts in %v: %s", faultConverge, why)
	}
	feeds, cs, _, _ := f.converged(front, profiles, l)
	checkFeeds(t, feeds, cs, l)

	var visits, flirts, items int
	for _, p := range profiles {
		visits, flirts, items = visits+cs[p].Visits, flirts+cs[p].Flirts, items+len(feeds[p])
	}
	var ackedVisits, ackedFlirts int64
	t.Logf("load: %d writers, %v", faultWorkers, loadTime.Round(time.Millisecond))
	t.Logf("%-42s %9s %9s %7s %7s %8s %6s %10s", "window", "duration", "attempted", "acked", "failed", "no-reply", "409", "acked v/f")
	for _, w := range l.windows {
		t.Logf("%-42s %9v %9d %7d %7d %8d %6d %5d/%d", w.name, w.ended.Sub(w.began).Round(time.Millisecond), w.attempted.Load(),
			w.acked.Load(), w.failed.Load(), w.noAnswers.Load(), w.refused.Load(), w.visitsAcked.Load(), w.flirtsAcked.Load())
		if ff := w.firstFailure.Load(); ff != nil {
			t.Logf("    first failure: %.200s", *ff)
		}
		ackedVisits += w.visitsAcked.Load()
		ackedFlirts += w.flirtsAcked.Load()
	}
	t.Logf("stored (page counts): %d visits, %d flirts; events published: %d (+%d profile.updated); acknowledged %d visits, %d flirts; "+
		"stored without an acknowledgment: %d visits, %d flirts", visits, flirts, visits+flirts, len(profiles),
		ackedVisits, ackedFlirts, int64(visits)-ackedVisits, int64(flirts)-ackedFlirts)
	t.Logf("feeds: %d items; acknowledged writes lost: 0, events twice in a feed: 0 (checked per item)", items)
	for _, rec := range recoveries {
		t.Logf("%s", rec)
	}
	t.Logf("all feeds equal to the page counts %v after the load", convergeTime.Round(time.Millisecond))
	t.Logf("streams opened again by notifications (log lines \"reading again\"): first process %d, last %d",
		firstNotifications.count("reading again"), r.procs["notifications"].count("reading again"))

	// A replay from the start: a new notifications on an empty store reads
	// every publisher's log from the beginning, once the one before is
	// gone (the aggregator then reaches the new one).
	r.procs["notifications"].stop()
	replayStart := time.Now()
	data, extra := r.data("notifications-replay"), []string(nil)
	if r.replayStore != nil {
		data, extra = r.replayStore()
	}
	r.procs["notifications"] = f.start("notifications", data, extra...)
	var interleaving string
	_, ok, why = waitFor(faultConverge, func() (bool, string) {
		got, _, ok, why := f.converged(front, profiles, l)
		if !ok {
			return false, why
		}
		var kindOrder bool
		kindOrder, interleaving, why = sameFeeds(profiles, feeds, got)
		return kindOrder, why
	})
	if !ok {
		t.Fatalf("the replayed feeds did not come to equal the first in %v: %s", faultConverge, why)
	}
	if interleaving == "" {
		interleaving = "the same"
	}
	t.Logf("replay from an empty store: %d events into %d feed items, equal to the first projection (per profile, the visits and the flirts "+
		"each in the same order) %v after the start; how visits and flirts interleave in a feed: %s",
		visits+flirts, items, time.Since(replayStart).Round(time.Millisecond), interleaving)
}

// A visit is written with its count and its event in one transaction;
// notifications projects the events into feeds in its own store. Kill -9
// the visits process mid-write and the notifications process mid-handle,
// under load, each started again on its data: no acknowledged write is
// missing from the feeds, none is there twice, and a new notifications
// with an empty store replays the publishers' logs into the same feeds.
func TestEventsSurviveKills(t *testing.T) {
	r := startFleet(t, newFleet(t, buildBinary(t), ""))
	runFaults(t, r,
		fault{"visits kill -9", func() { r.restart("visits") }},
		fault{"notifications kill -9", func() { r.restart("notifications") }},
	)
}

// The same with every stateful role on one PostgreSQL, which crashes
// (immediate shutdown) and comes back under load, on its data and port;
// then notifications is killed with SIGKILL. The replay reads into a
// notifications on a new, empty database.
func TestEventsSurvivePostgresRestart(t *testing.T) {
	bin := buildBinary(t)
	pg, err := pgtest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Stop() }) // after the processes: cleanups run last first
	newDB := func() string {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		url, err := pg.CreateDatabase(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return url
	}
	r := startFleet(t, newFleet(t, bin, newDB()))
	r.replayStore = func() (string, []string) {
		return r.data("notifications-replay"), []string{"-store", newDB()} // the last -store wins
	}
	runFaults(t, r,
		fault{"PostgreSQL restart", func() {
			if err := pg.Restart(); err != nil {
				t.Fatalf("restart PostgreSQL: %v", err)
			}
		}},
		fault{"notifications kill -9", func() { r.restart("notifications") }},
	)
}
