package events_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/nanobus/events"
	"github.com/terminator-gw/terminator/nanobus/nanobustest"
	"github.com/terminator-gw/terminator/services/store"
	"github.com/terminator-gw/terminator/services/store/pgtest"
	"github.com/terminator-gw/terminator/wire"
)

const topic = "thing.happened"

// publisher is a service with a store that publishes topic.
type publisher struct {
	node *nanobus.Node
	bus  *events.Bus
	st   store.Store
}

// startPublisher runs an instance of the publisher over a Pebble store in
// dir.
func startPublisher(t *testing.T, dir string) *publisher {
	t.Helper()
	st, err := store.OpenPebble(dir)
	if err != nil {
		t.Fatal(err)
	}
	return startPublisherOn(t, st)
}

// startPublisherOn runs an instance of the publisher over st, which it
// closes when it stops.
func startPublisherOn(t *testing.T, st store.Store) *publisher {
	t.Helper()
	n := nanobustest.NewNode(t, nanobus.Config{Service: "pub", Logger: nanobustest.Quiet})
	bus, err := events.New(n, events.Config{Store: store.EventLog(st), PollInterval: 10 * time.Millisecond, Logger: nanobustest.Quiet})
	if err != nil {
		t.Fatal(err)
	}
	if err := bus.Declare(topic, "pub.do"); err != nil {
		t.Fatal(err)
	}
	err = n.Handle("pub.do", func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		key, body, _ := strings.Cut(string(req.Body), "=")
		return nanobus.Reply{Status: 204}, bus.Update(ctx, func(tx events.Tx) error {
			if err := tx.Put("state/"+key, []byte(body)); err != nil {
				return err
			}
			return bus.Publish(ctx, tx, topic, key, []byte(body))
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	p := &publisher{node: n, bus: bus, st: st}
	t.Cleanup(p.stop)
	return p
}

func (p *publisher) stop() {
	p.bus.Close()
	p.node.Close()
	p.st.Close()
}

// publish publishes body under key, outside any request.
func (p *publisher) publish(t *testing.T, key, body string) {
	t.Helper()
	err := p.bus.Update(nanobustest.Context(t, 10*time.Second), func(tx events.Tx) error {
		return p.bus.Publish(context.Background(), tx, topic, key, []byte(body))
	})
	if err != nil {
		t.Fatal(err)
	}
}

// subscriber is one instance of a group whose projection records, per
// key, the bodies applied in order, and counts applications per event ID.
type subscriber struct {
	node *nanobus.Node
	bus  *events.Bus
	st   store.Store
	fail atomic.Pointer[string] // fail every event whose body this is
}

func startSubscriber(t *testing.T, st store.Store, group string, pub *publisher, opts ...events.Option) *subscriber {
	t.Helper()
	return startSubscriberOf(t, st, group, []*publisher{pub}, opts...)
}

// startSubscriberOf is startSubscriber reaching every instance of the
// publisher.
func startSubscriberOf(t *testing.T, st store.Store, group string, pubs []*publisher, opts ...events.Option) *subscriber {
	t.Helper()
	n := nanobustest.NewNode(t, nanobus.Config{Service: "sub-" + group, Logger: nanobustest.Quiet})
	bus, err := events.New(n, events.Config{Store: store.EventLog(st), Logger: nanobustest.Quiet})
	if err != nil {
		t.Fatal(err)
	}
	s := &subscriber{node: n, bus: bus, st: st}
	opts = append([]events.Option{events.From("pub"), events.Retries(1), events.Delays(time.Hour), events.LeaseTTL(300 * time.Millisecond)}, opts...)
	err = bus.Subscribe(topic, group, func(ctx context.Context, tx events.Tx, e *events.Event) error {
		if f := s.fail.Load(); f != nil && string(e.Body) == *f {
			return fmt.Errorf("refused %s on purpose", e.Body)
		}
		applied := 0
		if raw, err := tx.Get("applied/" + e.ID); err == nil {
			applied, _ = strconv.Atoi(string(raw))
		}
		if err := tx.Put("applied/"+e.ID, []byte(strconv.Itoa(applied+1))); err != nil {
			return err
		}
		if err := tx.Put("cause/"+string(e.Body), []byte(e.Correlation+" "+e.Causation)); err != nil {
			return err
		}
		var list []string
		if _, err := store.ReadJSON(tx, "key/"+e.Key, &list); err != nil {
			return err
		}
		return store.WriteJSON(tx, "key/"+e.Key, append(list, string(e.Body)))
	}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	for _, pub := range pubs {
		nanobustest.Connect(t, n, pub.node)
	}
	bus.Start()
	t.Cleanup(func() { bus.Close() })
	return s
}

func (s *subscriber) stop() {
	s.bus.Close()
	s.node.Close()
}

// projection returns the bodies applied per key, and fails the test on an
// event applied more than once.
func projection(t *testing.T, st store.Store) map[string][]string {
	t.Helper()
	ctx := nanobustest.Context(t, 10*time.Second)
	applied, err := st.List(ctx, "applied/", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range applied {
		if string(e.Value) != "1" {
			t.Errorf("event %s applied %s times", strings.TrimPrefix(e.Key, "applied/"), e.Value)
		}
	}
	keys, err := st.List(ctx, "key/", 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, e := range keys {
		var list []string
		if err := json.Unmarshal(e.Value, &list); err != nil {
			t.Fatal(err)
		}
		out[strings.TrimPrefix(e.Key, "key/")] = list
	}
	return out
}

func openStore(t *testing.T, dir string) *store.Pebble {
	t.Helper()
	st, err := store.OpenPebble(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// want is what n events numbered per key give, bodies "<key>-<i>".
func want(keys []string, n int) map[string][]string {
	out := map[string][]string{}
	for i := range n {
		k := keys[i%len(keys)]
		out[k] = append(out[k], fmt.Sprintf("%s-%d", k, i))
	}
	return out
}

func publishAll(t *testing.T, pub *publisher, keys []string, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		k := keys[i%len(keys)]
		pub.publish(t, k, fmt.Sprintf("%s-%d", k, i))
	}
}

func waitFor(t *testing.T, what string, st store.Store, wantProj map[string][]string) {
	t.Helper()
	nanobustest.Eventually(t, what, func() bool { return fmt.Sprint(projectionQuiet(st)) == fmt.Sprint(wantProj) })
	if got := projection(t, st); fmt.Sprint(got) != fmt.Sprint(wantProj) {
		t.Fatalf("%s: projection %v, want %v", what, got, wantProj)
	}
}

func projectionQuiet(st store.Store) map[string][]string {
	keys, _ := st.List(context.Background(), "key/", 0)
	out := map[string][]string{}
	for _, e := range keys {
		var list []string
		_ = json.Unmarshal(e.Value, &list)
		out[strings.TrimPrefix(e.Key, "key/")] = list
	}
	return out
}

// Every event reaches every group once, in order per key, whether it was
// published before the subscriber started or after.
func TestEveryGroupGetsEveryEventInOrder(t *testing.T) {
	pub := startPublisher(t, t.TempDir())
	keys := []string{"a", "b", "c", "d", "e"}
	publishAll(t, pub, keys, 0, 50)
	stA, stB := openStore(t, t.TempDir()), openStore(t, t.TempDir())
	startSubscriber(t, stA, "alpha", pub)
	startSubscriber(t, stB, "beta", pub)
	publishAll(t, pub, keys, 50, 120)
	waitFor(t, "group alpha", stA, want(keys, 120))
	waitFor(t, "group beta", stB, want(keys, 120))
}

// An event exists if and only if its change commits: a transaction that
// fails after publishing publishes nothing, and a ghost request publishes
// nothing either.
func TestPublishedWithTheChangeOnly(t *testing.T) {
	pub := startPublisher(t, t.TempDir())
	st := openStore(t, t.TempDir())
	startSubscriber(t, st, "g", pub)
	errAbort := errors.New("abort")
	err := pub.bus.Update(nanobustest.Context(t, 5*time.Second), func(tx events.Tx) error {
		if err := pub.bus.Publish(context.Background(), tx, topic, "k", []byte("rolled back")); err != nil {
			return err
		}
		return errAbort
	})
	if !errors.Is(err, errAbort) {
		t.Fatalf("update: %v", err)
	}
	caller := nanobustest.NewNode(t, nanobus.Config{Logger: nanobustest.Quiet})
	nanobustest.Connect(t, caller, pub.node)
	ctx := nanobustest.Context(t, 5*time.Second)
	ghost := &wire.Request{Route: []byte("pub.do"), Flags: wire.FlagGhost, Body: []byte("k=ghost")}
	if resp, err := caller.Do(ctx, "pub", ghost); err != nil || resp.Status != 204 {
		t.Fatalf("ghost request: %v", err)
	}
	real := &wire.Request{Route: []byte("pub.do"), Body: []byte("k=real")}
	real.Header.Add("X-Request-Id", "req-42")
	if resp, err := caller.Do(ctx, "pub", real); err != nil || resp.Status != 204 {
		t.Fatalf("request: %v", err)
	}
	waitFor(t, "the real event", st, map[string][]string{"k": {"real"}})
	// Its correlation is the request's X-Request-Id, its causation the
	// bus request.
	if cause, err := st.Get(ctx, "cause/real"); err != nil || !strings.HasPrefix(string(cause), "req-42 req:") {
		t.Errorf("correlation and causation %q %v, want the request ID and the bus request", cause, err)
	}
	if err := pub.bus.Publish(ctx, nil, "not.declared", "k", nil); !errors.Is(err, events.ErrUndeclared) {
		t.Errorf("undeclared topic: %v, want ErrUndeclared", err)
	}
}

// A subscriber stopped mid-stream and started again on its store resumes
// from its committed position: nothing lost, nothing applied twice. So
// does one whose publisher restarts.
func TestRestartsLoseNothing(t *testing.T) {
	pubDir := t.TempDir()
	pub := startPublisher(t, pubDir)
	subDir := t.TempDir()
	st, err := store.OpenPebble(subDir)
	if err != nil {
		t.Fatal(err)
	}
	sub := startSubscriber(t, st, "g", pub)
	keys := []string{"a", "b", "c"}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the publisher keeps publishing through both restarts
		defer wg.Done()
		publishAll(t, pub, keys, 0, 100)
	}()
	nanobustest.Eventually(t, "some events applied", func() bool { return len(projectionQuiet(st)["a"]) >= 5 })
	sub.stop()
	st.Close()
	st2 := openStore(t, subDir)
	startSubscriber(t, st2, "g", pub)
	wg.Wait()
	waitFor(t, "after the subscriber's restart", st2, want(keys, 100))

	// The publisher now: stopped, opened again on its directory (a new
	// node, a new address), and published to.
	pub.stop()
	pub2 := startPublisher(t, pubDir)
	sub2 := startSubscriber(t, openStore(t, t.TempDir()), "late", pub2) // reads the whole log from the start
	publishAll(t, pub2, keys, 100, 130)
	waitFor(t, "a new group, from the publisher's log", sub2.st, want(keys, 130))
}

// Two instances of a group: one reads; when it stops, the other takes the
// lease and goes on from the committed position, and no event is applied
// twice.
func TestGroupFailsOver(t *testing.T) {
	pub := startPublisher(t, t.TempDir())
	st := openStore(t, t.TempDir()) // the group's shared store
	first := startSubscriber(t, st, "g", pub)
	second := startSubscriber(t, st, "g", pub)
	keys := []string{"x", "y"}
	publishAll(t, pub, keys, 0, 20)
	waitFor(t, "the first batch", st, want(keys, 20))
	reading := func(s *subscriber) bool {
		subs := s.bus.Stats().Subscriptions
		return len(subs) == 1 && subs[0].Reading
	}
	if reading(first) == reading(second) {
		t.Fatalf("reading: first %v, second %v: want exactly one", reading(first), reading(second))
	}
	leader, standby := first, second
	if reading(second) {
		leader, standby = second, first
	}
	leader.stop()
	publishAll(t, pub, keys, 20, 40)
	waitFor(t, "after failover", st, want(keys, 40))
	if !reading(standby) {
		t.Error("the standby instance is not reading")
	}
}

// A handler failing for one key parks that key's event in the hospital;
// the key's later events wait behind it while other keys flow. A replay
// applies it and then the ones that waited, in order; a second replay does
// nothing; a discard drops one and lets its key flow.
func TestHospital(t *testing.T) {
	pub := startPublisher(t, t.TempDir())
	st := openStore(t, t.TempDir())
	sub := startSubscriber(t, st, "g", pub)
	poison := "bad-1"
	sub.fail.Store(&poison)
	pub.publish(t, "good", "good-0")
	pub.publish(t, "bad", "bad-1") // fails: parked
	pub.publish(t, "bad", "bad-2") // waits behind it
	pub.publish(t, "good", "good-3")
	pub.publish(t, "bad", "bad-4")
	pub.publish(t, "good", "good-5")
	waitFor(t, "the good key flows", st, map[string][]string{"good": {"good-0", "good-3", "good-5"}})

	caller := nanobustest.NewNode(t, nanobus.Config{Logger: nanobustest.Quiet})
	nanobustest.Connect(t, caller, sub.node)
	ask := func(op, id string) (int, events.Patient) {
		t.Helper()
		body, _ := json.Marshal(events.HospitalRequest{Op: op, ID: id})
		resp, err := caller.Call(nanobustest.Context(t, 10*time.Second), sub.node.Service(), events.RouteHospital, body)
		if err != nil {
			t.Fatalf("%s %s: %v", op, id, err)
		}
		defer resp.Release()
		var p events.Patient
		if op != "list" && resp.Status/100 == 2 {
			if err := json.Unmarshal(resp.Body, &p); err != nil {
				t.Fatalf("%s %s: %s: %v", op, id, resp.Body, err)
			}
		}
		return resp.Status, p
	}
	var patients []events.Patient
	nanobustest.Eventually(t, "the patient listed", func() bool {
		var err error
		patients, err = sub.bus.Patients(context.Background())
		return err == nil && len(patients) == 1 && patients[0].Waiting == 2
	})
	p := patients[0]
	if p.State != events.StateRetrying || p.Event.Key != "bad" || p.Attempts != 2 || !strings.Contains(p.LastError, "on purpose") || p.Handler != "g/pub/"+topic {
		t.Errorf("patient %+v", p)
	}
	if status, shown := ask("show", p.ID); status != 200 || shown.ID != p.ID || len(shown.History) == 0 {
		t.Errorf("show: %d %+v", status, shown)
	}
	if status, _ := ask("show", "g@pub:0:999"); status != 404 {
		t.Errorf("show of no patient: %d, want 404", status)
	}

	sub.fail.Store(nil) // the handler is fixed
	status, replayed := ask("replay", p.ID)
	if status != 200 || replayed.State != events.StateReplayed {
		t.Fatalf("replay: %d %+v", status, replayed)
	}
	waitFor(t, "the parked key, in order", st, map[string][]string{
		"good": {"good-0", "good-3", "good-5"}, "bad": {"bad-1", "bad-2", "bad-4"}})
	status, again := ask("replay", p.ID)
	if status != 200 || again.State != events.StateReplayed || !strings.Contains(again.History[len(again.History)-1].What, "nothing to do") {
		t.Errorf("second replay: %d %+v", status, again)
	}
	waitFor(t, "nothing applied twice", st, map[string][]string{
		"good": {"good-0", "good-3", "good-5"}, "bad": {"bad-1", "bad-2", "bad-4"}})

	// Discard: the next poisoned event is dropped, and its key flows on.
	poison = "bad-6"
	sub.fail.Store(&poison)
	pub.publish(t, "bad", "bad-6")
	pub.publish(t, "bad", "bad-7")
	var second events.Patient
	nanobustest.Eventually(t, "the second patient", func() bool {
		ps, _ := sub.bus.Patients(context.Background())
		for _, q := range ps {
			if q.Event.Body != nil && string(q.Event.Body) == "bad-6" && q.Waiting == 1 {
				second = q
				return true
			}
		}
		return false
	})
	status, discarded := ask("discard", second.ID)
	if status != 200 || discarded.State != events.StateDiscarded {
		t.Fatalf("discard: %d %+v", status, discarded)
	}
	waitFor(t, "the key after the discard", st, map[string][]string{
		"good": {"good-0", "good-3", "good-5"}, "bad": {"bad-1", "bad-2", "bad-4", "bad-7"}})
	s := sub.bus.Stats()
	if s.Parked != 2 || s.Healed != 1 {
		t.Errorf("stats %+v: want 2 parked, 1 healed", s)
	}
}

// A parked event is retried later by itself, with backoff; once the
// handler succeeds it is healed and its key flows again.
func TestDelayedRetriesHeal(t *testing.T) {
	pub := startPublisher(t, t.TempDir())
	st := openStore(t, t.TempDir())
	sub := startSubscriber(t, st, "g", pub, events.Delays(20*time.Millisecond, 20*time.Millisecond, time.Hour))
	poison := "k-0"
	sub.fail.Store(&poison)
	pub.publish(t, "k", "k-0")
	pub.publish(t, "k", "k-1")
	nanobustest.Eventually(t, "a delayed retry failed", func() bool {
		ps, _ := sub.bus.Patients(context.Background())
		return len(ps) == 1 && ps[0].Attempts >= 3 && strings.Contains(ps[0].LastError, "on purpose") &&
			strings.Contains(ps[0].History[len(ps[0].History)-1].What, ": failed")
	})
	sub.fail.Store(nil)
	waitFor(t, "healed, then the rest", st, map[string][]string{"k": {"k-0", "k-1"}})
	ps, err := sub.bus.Patients(context.Background())
	if err != nil || len(ps) != 1 || ps[0].State != events.StateHealed {
		t.Fatalf("patients %+v %v: want one healed", ps, err)
	}
}

// Events older than the retention are deleted, and a group whose position
// they were is told how many it missed (on PostgreSQL, whose log is
// numbered by transaction, at least one per partition), then gets what
// follows.
func TestRetentionTellsTheGap(t *testing.T) {
	for _, tc := range []struct {
		name  string
		open  func(t *testing.T) store.Store
		exact bool
	}{
		{"pebble", func(t *testing.T) store.Store { return openStore(t, t.TempDir()) }, true},
		{"postgres", func(t *testing.T) store.Store {
			if testing.Short() {
				t.Skip("starts a PostgreSQL")
			}
			return openPostgres(t, pgtest.NewDatabase(t), "pub")
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := tc.open(t)
			n := nanobustest.NewNode(t, nanobus.Config{Service: "pub", Logger: nanobustest.Quiet})
			bus, err := events.New(n, events.Config{Store: store.EventLog(st), Retention: 200 * time.Millisecond, PollInterval: 10 * time.Millisecond, Logger: nanobustest.Quiet})
			if err != nil {
				t.Fatal(err)
			}
			if err := bus.Declare(topic); err != nil {
				t.Fatal(err)
			}
			pub := &publisher{node: n, bus: bus, st: st}
			t.Cleanup(pub.stop)
			publishAll(t, pub, []string{"a", "b", "c"}, 0, 12)
			bus.Start()
			nanobustest.Eventually(t, "the log pruned", func() bool { return bus.Stats().Pruned == 12 })
			sub := startSubscriber(t, openStore(t, t.TempDir()), "late", pub)
			nanobustest.Eventually(t, "the gap told", func() bool {
				if g := sub.bus.Stats().Gaps; !tc.exact {
					return g > 0
				} else {
					return g == 12
				}
			})
			pub.publish(t, "a", "a-new")
			waitFor(t, "what follows the gap", sub.st, map[string][]string{"a": {"a-new"}})
		})
	}
}
