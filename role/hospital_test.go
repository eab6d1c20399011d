package role

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/terminator-gw/terminator/discovery"
	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/nanobus/events"
	"github.com/terminator-gw/terminator/nanobus/nanobustest"
	"github.com/terminator-gw/terminator/services/servicetest"
	"github.com/terminator-gw/terminator/services/store"
)

// projector is a subscriber's handler that fails on the events whose body
// is poisoned, and remembers the bodies it applied, in order.
type projector struct {
	mu       sync.Mutex
	poisoned map[string]bool
	applied  []string
}

func (p *projector) handle(_ context.Context, tx events.Tx, e *events.Event) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.poisoned[string(e.Body)] {
		return fmt.Errorf("cannot project %s", e.Body)
	}
	if err := tx.Put("projection/"+e.Key, e.Body); err != nil {
		return err
	}
	p.applied = append(p.applied, string(e.Body))
	return nil
}

func (p *projector) cure(body string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.poisoned, body)
}

// appliedOf is what was applied of key's events ("<key>-<n>" bodies), in
// order.
func (p *projector) appliedOf(key string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, b := range p.applied {
		if strings.HasPrefix(b, key+"-") {
			out = append(out, b)
		}
	}
	return out
}

// eventsNode starts a bus node of service with an events.Bus over a
// Pebble store (declare declares and subscribes on it), and registers it
// in etcd with what it declared, as startService does; all go when the
// test ends.
func eventsNode(t *testing.T, cli *clientv3.Client, service string, declare func(*events.Bus) error) (*nanobus.Node, *events.Bus, *discovery.Registrar) {
	t.Helper()
	node := nanobustest.NewNode(t, nanobus.Config{Service: service})
	st, err := store.OpenPebble(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ev := servicetest.Bus(t, node, st) // closed before the store
	if err := declare(ev); err != nil {
		t.Fatal(err)
	}
	r := discovery.RegistrationOf(node)
	d := ev.Declaration()
	r.Events = &d
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	reg, err := discovery.Register(ctx, cli, r, discovery.RegisterOptions{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	return node, ev, reg
}

// hospitalRun runs the command in this process against endpoints, and
// returns its exit code and what it printed.
func hospitalRun(t *testing.T, endpoints []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errs bytes.Buffer
	args = append(args, "-etcd-endpoints", strings.Join(endpoints, ","))
	code = Hospital(nanobustest.Context(t, 60*time.Second), args, &out, &errs)
	return code, out.String(), errs.String()
}

// patientOf is the one patient of ev whose event has body, or nil.
func patientOf(t *testing.T, ev *events.Bus, body string) *events.Patient {
	t.Helper()
	ps, err := ev.Patients(nanobustest.Context(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if string(p.Event.Body) == body {
			return &p
		}
	}
	return nil
}

// The message hospital end to end: a subscriber whose handler fails on
// two events parks them (other keys flow, and the later events of their
// keys wait); `terminator hospital`, finding the subscriber through etcd,
// lists and shows them, replays one once its handler is fixed (the events
// that waited go, in order), finds a second replay a no-op it records,
// and discards the other (its waiting event goes).
func TestHospitalCLI(t *testing.T) {
	endpoints, cli := etcdFor(t)
	const topic = "thing.changed"
	pub, pubEv, _ := eventsNode(t, cli, "things", func(ev *events.Bus) error { return ev.Declare(topic, "things.change") })
	proj := &projector{poisoned: map[string]bool{"bad-1": true, "worse-1": true}}
	sub, subEv, subReg := eventsNode(t, cli, "projections", func(ev *events.Bus) error {
		// One immediate retry, one delayed one: then parked, waiting for
		// an operator.
		return ev.Subscribe(topic, "projector", proj.handle, events.From("things"), events.Retries(1), events.Delays(time.Millisecond))
	})
	nanobustest.Connect(t, sub, pub)
	subEv.Start()
	pubEv.Start()

	ctx := nanobustest.Context(t, 60*time.Second)
	publish := func(key string, n int) {
		t.Helper()
		err := pubEv.Update(ctx, func(tx events.Tx) error {
			return pubEv.Publish(ctx, tx, topic, key, fmt.Appendf(nil, "%s-%d", key, n))
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	publish("ok", 1)
	publish("bad", 1)
	publish("worse", 1)
	publish("bad", 2)
	publish("bad", 3)
	publish("worse", 2)
	publish("ok", 2)

	// Other keys flow; the failing events are parked once their delayed
	// retry failed too, and their keys' later events wait behind them.
	nanobustest.Eventually(t, "ok's events applied", func() bool { return slices.Equal(proj.appliedOf("ok"), []string{"ok-1", "ok-2"}) })
	for body, waiting := range map[string]int{"bad-1": 2, "worse-1": 1} {
		nanobustest.Eventually(t, body+" parked", func() bool {
			p := patientOf(t, subEv, body)
			return p != nil && p.State == events.StateParked && p.Waiting == waiting
		})
	}
	if got := append(proj.appliedOf("bad"), proj.appliedOf("worse")...); len(got) > 0 {
		t.Fatalf("applied %v behind a parked event", got)
	}
	bad, worse := patientOf(t, subEv, "bad-1"), patientOf(t, subEv, "worse-1")

	// The status shows the events' counters and the subscription's
	// patients.
	w, err := discovery.Watch(ctx, cli, discovery.WatchOptions{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	raw, err := json.Marshal(nodeSection(sub, nil, w, subReg, subEv).Status())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"events":{"published":0,"delivered":2,`, `"parked":2`,
		`"group":"projector","reading":true,`, `"lag":0,"patients":2`} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("status.json lacks %s: %s", want, raw)
		}
	}

	t.Run("list", func(t *testing.T) {
		code, out, errs := hospitalRun(t, endpoints, "list")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errs)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 3 || !strings.HasPrefix(lines[0], "SERVICE") {
			t.Fatalf("want a header and two patients:\n%s", out)
		}
		for _, p := range []*events.Patient{bad, worse} {
			row := ""
			for _, l := range lines {
				if strings.Contains(l, p.ID+" ") {
					row = l
				}
			}
			fields := strings.Fields(row)
			if len(fields) < 7 || fields[0] != "projections" || fields[2] != "parked" || fields[3] != "projector/things/thing.changed" ||
				fields[4] != p.Event.Key || fields[5] != "3" || fields[6] != fmt.Sprint(p.Waiting) ||
				!strings.Contains(row, "cannot project "+string(p.Event.Body)) {
				t.Errorf("%s: row %q", p.ID, row)
			}
		}
		code, out, errs = hospitalRun(t, endpoints, "list", "-json")
		var got map[string][]events.Patient
		if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil || len(got["projections"]) != 2 {
			t.Errorf("list -json: exit %d, %v: %s %s", code, err, out, errs)
		}
	})

	t.Run("show", func(t *testing.T) {
		code, out, errs := hospitalRun(t, endpoints, "show", bad.ID)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errs)
		}
		flat := strings.Join(strings.Fields(out), " ") // the columns' widths aside
		for _, want := range []string{"patient " + bad.ID, "state parked (retries exhausted: waits for an operator)",
			"attempts 3", "waiting 2 later events", "history:", "parked after 2 attempts: cannot project bad-1", "retry 1: failed: cannot project bad-1"} {
			if !strings.Contains(flat, want) {
				t.Errorf("show lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("replay", func(t *testing.T) {
		proj.cure("bad-1")
		code, out, errs := hospitalRun(t, endpoints, "replay", bad.ID, "-operator", "ann")
		if code != 0 || !strings.Contains(out, bad.ID+": replayed: the handler applied it; the 2 events of key bad that waited behind it go now") {
			t.Fatalf("exit %d: %s%s", code, out, errs)
		}
		if p := patientOf(t, subEv, "bad-1"); p.State != events.StateReplayed {
			t.Errorf("state %s, want replayed", p.State)
		}
		nanobustest.Eventually(t, "bad's waiting events applied", func() bool {
			return slices.Equal(proj.appliedOf("bad"), []string{"bad-1", "bad-2", "bad-3"})
		})

		// Again: the event was applied once; nothing is done, and the ask
		// is recorded.
		code, out, errs = hospitalRun(t, endpoints, "replay", bad.ID, "-operator", "bob")
		if code != 0 || !strings.Contains(out, "nothing to do: the event was replayed already") {
			t.Fatalf("second replay: exit %d: %s%s", code, out, errs)
		}
		if got := proj.appliedOf("bad"); len(got) != 3 {
			t.Errorf("applied %v after a second replay, want bad-1 once", got)
		}
		p := patientOf(t, subEv, "bad-1")
		last := p.History[len(p.History)-1].What
		if !strings.Contains(last, "replay asked by an operator (bob): nothing to do, the event was replayed") {
			t.Errorf("last note %q", last)
		}
		if !slices.ContainsFunc(p.History, func(n events.Note) bool { return strings.Contains(n.What, "replay asked by an operator (ann)") }) {
			t.Errorf("the first replay is not in the history: %+v", p.History)
		}
	})

	t.Run("discard", func(t *testing.T) {
		code, out, errs := hospitalRun(t, endpoints, "discard", worse.ID, "-json")
		var p events.Patient
		if err := json.Unmarshal([]byte(out), &p); code != 0 || err != nil || p.State != events.StateDiscarded {
			t.Fatalf("exit %d, %v: %s%s", code, err, out, errs)
		}
		nanobustest.Eventually(t, "worse's waiting event applied", func() bool {
			return slices.Equal(proj.appliedOf("worse"), []string{"worse-2"})
		})
		// Done with, they are listed still, with nothing waiting.
		code, out, _ = hospitalRun(t, endpoints, "list")
		for _, want := range []string{bad.ID + "  replayed ", worse.ID + "  discarded "} {
			row := ""
			for l := range strings.Lines(out) {
				if strings.Contains(l, want) {
					row = l
				}
			}
			if f := strings.Fields(row); code != 0 || len(f) < 7 || f[6] != "-" {
				t.Errorf("list: exit %d, no row with %q and nothing waiting:\n%s", code, want, out)
			}
		}
		code, out, _ = hospitalRun(t, endpoints, "list", "-open")
		if code != 0 || strings.TrimSpace(out) != "no patients (asked projections)" {
			t.Errorf("list -open after the treatments: exit %d: %s", code, out)
		}
	})

	// What /metrics shows of it: one replayed, one discarded, none left.
	t.Run("metrics", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		reg.MustRegister(newNodeCollector(sub, nil, nil, subReg, subEv))
		fams, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]float64{}
		for _, f := range fams {
			for _, m := range f.GetMetric() {
				got[f.GetName()] += m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
		for name, want := range map[string]float64{"terminator_events_parked_total": 2, "terminator_events_replayed_total": 1,
			"terminator_events_discarded_total": 1, "terminator_events_hospital_patients": 0} {
			if v, ok := got[name]; !ok || v != want {
				t.Errorf("%s = %v (shown: %v), want %v", name, v, ok, want)
			}
		}
	})

	t.Run("errors", func(t *testing.T) {
		for _, tt := range []struct {
			name string
			args []string
			code int
			want string
		}{
			{"no command", nil, 2, "usage: terminator hospital"},
			{"unknown command", []string{"heal", bad.ID}, 2, `unknown command "heal"`},
			{"no ID", []string{"show"}, 2, "want one patient ID"},
			{"two IDs", []string{"discard", bad.ID, worse.ID}, 2, "want one patient ID"},
			{"unknown flag", []string{"list", "-nope"}, 2, "flag provided but not defined: -nope"},
			{"no such patient", []string{"show", "projector@things:0:999"}, 1, "no patient projector@things:0:999 in projections"},
			{"a service without a hospital", []string{"list", "-service", "things"}, 1, "things declares a subscription: it has no hospital"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				code, out, errs := hospitalRun(t, endpoints, tt.args...)
				if code != tt.code || !strings.Contains(errs, tt.want) {
					t.Errorf("exit %d, want %d; stderr lacks %q:\n%s%s", code, tt.code, tt.want, out, errs)
				}
			})
		}
	})
}

// The services asked are those whose registrations declare subscriptions,
// each once.
func TestHospitals(t *testing.T) {
	subs := &events.Declaration{Subscribes: []events.Subscription{{Topic: "t", From: "a", Group: "g"}}}
	pubs := &events.Declaration{Publishes: []events.Publication{{Topic: "t"}}}
	regs := []discovery.Registration{{Service: "b", Events: subs}, {Service: "a", Events: pubs}, {Service: "c"},
		{Service: "b", Events: subs}, {Service: "d", Events: subs}}
	for _, tt := range []struct {
		only string
		want []string
	}{
		{"", []string{"b", "d"}},
		{"d", []string{"d"}},
		{"a", nil},
	} {
		if got := hospitals(regs, tt.only); !slices.Equal(got, tt.want) {
			t.Errorf("hospitals(%q) = %v, want %v", tt.only, got, tt.want)
		}
	}
}
