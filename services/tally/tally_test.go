package tally_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/nanobus/nanobustest"
	"github.com/terminator-gw/terminator/services/servicetest"
	"github.com/terminator-gw/terminator/services/store"
	"github.com/terminator-gw/terminator/services/tally"
)

type item struct {
	N int `json:"n"`
}

// newTally is a tally under "x" publishing "x.added" on a node of its own.
func newTally(t *testing.T, st store.Store) *tally.Tally {
	n := nanobustest.NewNode(t, nanobus.Config{Service: "x"})
	tl, err := tally.New(st, servicetest.Bus(t, n, st), "x", "x.added", "x.add")
	if err != nil {
		t.Fatal(err)
	}
	return tl
}

func openStore(t *testing.T) *store.Pebble {
	t.Helper()
	st, err := store.OpenPebble(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func TestAdd(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	tl := newTally(t, st)
	steps := []struct {
		profile, suffix string
		unique          bool
		want            tally.Count
		added           bool
	}{
		{"p", "a", false, tally.Count{Count: 1}, true},
		{"p", "a", false, tally.Count{Count: 2}, true}, // not unique: overwritten and counted again
		{"p", "b", true, tally.Count{Count: 3}, true},
		{"p", "b", true, tally.Count{}, false}, // unique and there: left alone
		{"p", "a", true, tally.Count{}, false},
		{"q", "a", true, tally.Count{Count: 1}, true}, // counts are per profile
	}
	for i, st := range steps {
		c, added, err := tl.Add(ctx, st.profile, st.suffix, item{i}, st.unique)
		if err != nil || c != st.want || added != st.added {
			t.Errorf("step %d: Add(%s, %s, unique %v) = %+v, %v, %v; want %+v, %v", i, st.profile, st.suffix, st.unique, c, added, err, st.want, st.added)
		}
	}
	// An item that does not encode aborts the whole add: nothing counted.
	if _, _, err := tl.Add(ctx, "p", "c", func() {}, false); err == nil {
		t.Error("Add of an item that does not encode: nil error")
	}
	if c, _, _ := tl.Add(ctx, "p", "d", item{}, false); c.Count != 4 {
		t.Errorf("count after a failed add %d, want 4", c.Count)
	}
	// A done context adds nothing.
	done, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := tl.Add(done, "p", "e", item{}, false); err == nil {
		t.Error("Add with a cancelled context: nil error")
	}
}

// Concurrent adds lose nothing: every add is counted, every unique item
// is added once.
func TestConcurrentAdds(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	tl := newTally(t, st)
	const n = 32
	var wg sync.WaitGroup
	var mu sync.Mutex
	added := 0
	for i := range n {
		wg.Go(func() {
			if _, _, err := tl.Add(ctx, "p", fmt.Sprintf("%03d", i), item{i}, false); err != nil {
				t.Error(err)
			}
			// Every goroutine also adds the same unique item.
			_, ok, err := tl.Add(ctx, "u", "same", item{i}, true)
			if err != nil {
				t.Error(err)
			}
			if ok {
				mu.Lock()
				added++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	var c tally.Count
	if _, err := store.GetJSON(ctx, st, "n/p", &c); err != nil || c.Count != n {
		t.Errorf("count %d (%v), want %d", c.Count, err, n)
	}
	if items, err := st.List(ctx, "x/p/", 0); err != nil || len(items) != n {
		t.Errorf("%d items (%v), want %d", len(items), err, n)
	}
	if _, err := store.GetJSON(ctx, st, "n/u", &c); err != nil || c.Count != 1 || added != 1 {
		t.Errorf("unique item: count %d, added %d times (%v); want 1, 1", c.Count, added, err)
	}
}

type wrapped struct {
	Items []item `json:"items"`
}

func TestHandlers(t *testing.T) {
	st := openStore(t)
	tl := newTally(t, st)
	caller, svc := nanobustest.Pair(t, "t", func(n *nanobus.Node) error {
		return tally.HandleList(n, "t.list", tl, func(l []item) any { return wrapped{l} })
	})
	if err := tl.HandleCount(svc, "t.count"); err != nil {
		t.Fatal(err)
	}
	// 105 items in one write: more than a list answers.
	ctx := context.Background()
	err := st.Update(ctx, func(tx store.Tx) error {
		for i := range 105 {
			if err := store.WriteJSON(tx, fmt.Sprintf("x/p/%03d", i), item{i}); err != nil {
				return err
			}
		}
		return store.WriteJSON(tx, "n/p", tally.Count{Count: 105})
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := tl.Add(ctx, "pp", "0", item{-1}, false); err != nil { // a profile whose ID extends p's
		t.Fatal(err)
	}

	for _, r := range svc.Routes() {
		if !r.Idempotent || r.Public() {
			t.Errorf("route %+v: want internal and idempotent", r)
		}
	}
	listOf := func(profile string, limit int) string {
		b, _ := json.Marshal(tally.ListRequest{Profile: profile, Limit: limit})
		return string(b)
	}
	first := func(n int) []int {
		out := make([]int, n)
		for i := range out {
			out[i] = i
		}
		return out
	}
	tests := []struct {
		name, route, body string
		status            int
		count             int   // for t.count
		items             []int // for t.list
	}{
		{"count", "t.count", "p", 200, 105, nil},
		{"count of another", "t.count", "pp", 200, 1, nil},
		{"count of none", "t.count", "nobody", 200, 0, nil},
		{"count bad id", "t.count", "P/1", 400, 0, nil},
		{"count empty id", "t.count", "", 400, 0, nil},
		{"list limit 3", "t.list", listOf("p", 3), 200, 0, first(3)},
		{"list default limit", "t.list", listOf("p", 0), 200, 0, first(100)},
		{"list limit over 100", "t.list", listOf("p", 1000), 200, 0, first(100)},
		{"list negative limit", "t.list", listOf("p", -5), 200, 0, first(100)},
		{"list other profile", "t.list", listOf("pp", 0), 200, 0, []int{-1}},
		{"list none", "t.list", listOf("nobody", 0), 200, 0, []int{}},
		{"list not json", "t.list", "p", 400, 0, nil},
		{"list bad id", "t.list", listOf("../p", 0), 400, 0, nil},
		{"list no id", "t.list", `{"limit":3}`, 400, 0, nil},
	}
	for _, tt := range tests {
		resp, err := caller.Call(nanobustest.Context(t, 10*time.Second), "t", tt.route, []byte(tt.body))
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		status, body := resp.Status, append([]byte(nil), resp.Body...)
		resp.Release()
		if status != tt.status {
			t.Errorf("%s: status %d %s, want %d", tt.name, status, body, tt.status)
			continue
		}
		if status != 200 {
			continue
		}
		switch tt.route {
		case "t.count":
			var c tally.Count
			if err := json.Unmarshal(body, &c); err != nil || c.Count != tt.count {
				t.Errorf("%s: %s (%v), want count %d", tt.name, body, err, tt.count)
			}
		case "t.list":
			var w wrapped
			if err := json.Unmarshal(body, &w); err != nil {
				t.Fatalf("%s: %s: %v", tt.name, body, err)
			}
			got := []int{}
			for _, it := range w.Items {
				got = append(got, it.N)
			}
			if !slices.Equal(got, tt.items) {
				t.Errorf("%s: items %v, want %v", tt.name, got, tt.items)
			}
		}
	}
}

func TestParseCount(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int
		ok   bool
	}{
		{`{"count":0}`, 0, true},
		{`{"count":1234}`, 1234, true},
		{`{ "count": 7 }`, 7, true}, // not the fast path: encoding/json
		{`{"count":"x"}`, 0, false},
		{`nope`, 0, false},
	} {
		c, err := tally.ParseCount([]byte(tt.in))
		if (err == nil) != tt.ok || c.Count != tt.want {
			t.Errorf("ParseCount(%s) = %v, %v", tt.in, c, err)
		}
	}
}
