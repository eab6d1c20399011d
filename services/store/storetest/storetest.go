// Package storetest is the conformance suite every store.Store
// implementation passes: what the services count on, checked the same way
// against each.
//
//	func TestConformance(t *testing.T) {
//		root := t.TempDir()
//		storetest.Run(t, storetest.Suite{Open: func(t *testing.T, name string) store.Store {
//			s, err := store.OpenPebble(filepath.Join(root, name))
//			if err != nil {
//				t.Fatal(err)
//			}
//			return s
//		}})
//	}
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/terminator-gw/terminator/services/store"
)

// Suite describes the implementation under test.
type Suite struct {
	// Open opens the store called name (1 to 64 of [a-z0-9_-]), failing t
	// if it cannot. Opening a name again after closing it must show the
	// same data; different names must not see each other's. The suite
	// closes what it opens.
	Open func(t *testing.T, name string) store.Store
	// Shared says a name may be open in several handles at once, as
	// several processes share one database (PostgreSQL): the suite then
	// also runs concurrent updates through two handles.
	Shared bool
}

// bound is the longest any single wait in the suite may take before the
// test fails instead of hanging.
const bound = 20 * time.Second

// Run runs the suite as subtests of t.
func Run(t *testing.T, s Suite) {
	tests := []struct {
		name string
		run  func(*testing.T, *Suite)
	}{
		{"GetPut", testGetPut},
		{"List", testList},
		{"Scan", testScan},
		{"Delete", testDelete},
		{"UpdateAtomic", testUpdateAtomic},
		{"ReadYourWrites", testReadYourWrites},
		{"ConcurrentIncrements", testConcurrentIncrements},
		{"Durable", testDurable},
		{"Namespaces", testNamespaces},
		{"Deadline", testDeadline},
		{"Closed", testClosed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, &s) })
	}
}

var seq struct {
	sync.Mutex
	n int
}

// name is a fresh store name for t.
func name(t *testing.T) string {
	seq.Lock()
	defer seq.Unlock()
	seq.n++
	base := strings.ToLower(t.Name())
	base = strings.Map(func(r rune) rune {
		if 'a' <= r && r <= 'z' || '0' <= r && r <= '9' {
			return r
		}
		return '-'
	}, base)
	if len(base) > 50 {
		base = base[len(base)-50:]
	}
	return fmt.Sprintf("%s-%d", base, seq.n)
}

// open opens name and closes it when t ends (closing twice is harmless:
// the second Close just reports ErrClosed).
func (s *Suite) open(t *testing.T, name string) store.Store {
	t.Helper()
	st := s.Open(t, name)
	t.Cleanup(func() { st.Close() })
	return st
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	t.Cleanup(cancel)
	return ctx
}

func put(t *testing.T, st store.Store, kv ...string) {
	t.Helper()
	err := st.Update(ctxFor(t), func(tx store.Tx) error {
		for i := 0; i < len(kv); i += 2 {
			if err := tx.Put(kv[i], []byte(kv[i+1])); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("update: %v", err)
	}
}

func mustGet(t *testing.T, st store.Store, key, want string) {
	t.Helper()
	got, err := st.Get(ctxFor(t), key)
	if err != nil {
		t.Fatalf("get %q: %v", key, err)
	}
	if string(got) != want {
		t.Fatalf("get %q = %q, want %q", key, got, want)
	}
}

func mustNotFind(t *testing.T, st store.Store, key string) {
	t.Helper()
	if v, err := st.Get(ctxFor(t), key); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("get %q = %q, %v; want ErrNotFound", key, v, err)
	}
}

func testGetPut(t *testing.T, s *Suite) {
	st := s.open(t, name(t))
	ctx := ctxFor(t)
	mustNotFind(t, st, "p/ann")
	put(t, st, "p/ann", `{"name":"Ann"}`)
	mustGet(t, st, "p/ann", `{"name":"Ann"}`)
	put(t, st, "p/ann", `{"name":"Ann B"}`)
	mustGet(t, st, "p/ann", `{"name":"Ann B"}`)

	// The value returned is the caller's to keep and change.
	v, err := st.Get(ctx, "p/ann")
	if err != nil || len(v) == 0 {
		t.Fatalf("get p/ann = %q, %v", v, err)
	}
	v[0] = 'X'
	mustGet(t, st, "p/ann", `{"name":"Ann B"}`)

	// An empty value is a value; nil is stored as empty.
	if err := st.Update(ctx, func(tx store.Tx) error { return tx.Put("empty", nil) }); err != nil {
		t.Fatal(err)
	}
	if v, err := st.Get(ctx, "empty"); err != nil || len(v) != 0 {
		t.Fatalf("get empty = %q, %v; want an empty value", v, err)
	}
	// Any bytes may be in a key or value.
	bin := "\x00k\xff\x01"
	put(t, st, bin, "\x00\xff")
	mustGet(t, st, bin, "\x00\xff")
	mustNotFind(t, st, "\x00k")
}

func testList(t *testing.T, s *Suite) {
	st := s.open(t, name(t))
	keys := []string{
		"a", "a/1", "a/10", "a/2", "a0", "B", "b", "\xc3\xa9", // byte order, not a collation: "B" < "a" < "é"
		"a\xff", "a\xff\x00", "a\xff\xff", "a\xff\xff\x01", // prefixes whose end carries over the 0xff
		"\xff", "\xff\xff", "\xff\xff\x00", // prefixes with no end at all
		"\x00", "\x00\x00",
	}
	var kv []string
	for _, k := range keys {
		kv = append(kv, k, "v"+k)
	}
	put(t, st, kv...)
	// Keys in byte order:
	all := []string{
		"\x00", "\x00\x00", "B", "a", "a/1", "a/10", "a/2", "a0",
		"a\xff", "a\xff\x00", "a\xff\xff", "a\xff\xff\x01", "b", "\xc3\xa9",
		"\xff", "\xff\xff", "\xff\xff\x00",
	}
	tests := []struct {
		prefix string
		limit  int
		want   []string
	}{
		{"", 0, all},
		{"", -1, all},
		{"", 3, all[:3]},
		{"a/", 0, []string{"a/1", "a/10", "a/2"}},
		{"a/", 2, []string{"a/1", "a/10"}},
		{"a/1", 0, []string{"a/1", "a/10"}},
		{"a", 0, all[3:12]},
		{"a\xff", 0, []string{"a\xff", "a\xff\x00", "a\xff\xff", "a\xff\xff\x01"}},
		{"a\xff\xff", 0, []string{"a\xff\xff", "a\xff\xff\x01"}},
		{"\xff", 0, []string{"\xff", "\xff\xff", "\xff\xff\x00"}},
		{"\xff\xff", 0, []string{"\xff\xff", "\xff\xff\x00"}},
		{"\xff\xff", 1, []string{"\xff\xff"}},
		{"\x00", 0, []string{"\x00", "\x00\x00"}},
		{"c", 0, nil},
		{"a/3", 5, nil},
	}
	for _, tc := range tests {
		got, err := st.List(ctxFor(t), tc.prefix, tc.limit)
		if err != nil {
			t.Fatalf("list %q %d: %v", tc.prefix, tc.limit, err)
		}
		var gotKeys []string
		for _, e := range got {
			gotKeys = append(gotKeys, e.Key)
			if string(e.Value) != "v"+e.Key {
				t.Errorf("list %q: %q has value %q", tc.prefix, e.Key, e.Value)
			}
		}
		if fmt.Sprintf("%q", gotKeys) != fmt.Sprintf("%q", tc.want) {
			t.Errorf("list %q limit %d = %q, want %q", tc.prefix, tc.limit, gotKeys, tc.want)
		}
	}
}

func testScan(t *testing.T, s *Suite) {
	st := s.open(t, name(t))
	put(t, st, "e/1", "v1", "e/2", "v2", "e/3", "v3", "e/head", "h", "f", "vf")
	tests := []struct {
		start, end string
		limit      int
		want       string
	}{
		{"e/", "e/h", 0, `["e/1" "e/2" "e/3"]`},
		{"e/2", "e/h", 0, `["e/2" "e/3"]`},
		{"e/2", "e/h", 1, `["e/2"]`},
		{"e/1\x00", "e/3", 0, `["e/2"]`}, // just after a key
		{"e/3", "", 0, `["e/3" "e/head" "f"]`},
		{"e/4", "e/h", 0, `[]`},
	}
	for _, tc := range tests {
		got, err := st.Scan(ctxFor(t), tc.start, tc.end, tc.limit)
		if err != nil {
			t.Fatalf("scan %q..%q: %v", tc.start, tc.end, err)
		}
		keys := []string{}
		for _, e := range got {
			keys = append(keys, e.Key)
		}
		if fmt.Sprintf("%q", keys) != tc.want {
			t.Errorf("scan %q..%q limit %d = %q, want %s", tc.start, tc.end, tc.limit, keys, tc.want)
		}
	}
}

func testDelete(t *testing.T, s *Suite) {
	st := s.open(t, name(t))
	put(t, st, "a", "1", "b", "2")
	err := st.Update(ctxFor(t), func(tx store.Tx) error {
		if err := tx.Delete("a"); err != nil {
			return err
		}
		if _, err := tx.Get("a"); !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("get after delete in the same transaction: %v, want ErrNotFound", err)
		}
		return tx.Delete("nothing-here")
	})
	if err != nil {
		t.Fatal(err)
	}
	mustNotFind(t, st, "a")
	mustGet(t, st, "b", "2")
	// A delete in a transaction that fails is not applied.
	err = st.Update(ctxFor(t), func(tx store.Tx) error {
		if err := tx.Delete("b"); err != nil {
			return err
		}
		return errAbort
	})
	if !errors.Is(err, errAbort) {
		t.Fatalf("update = %v, want the abort", err)
	}
	mustGet(t, st, "b", "2")
}

var errAbort = errors.New("abort on purpose")

func testUpdateAtomic(t *testing.T, s *Suite) {
	st := s.open(t, name(t))
	put(t, st, "keep", "old")
	runs := 0
	err := st.Update(ctxFor(t), func(tx store.Tx) error {
		runs++
		if err := tx.Put("keep", []byte("new")); err != nil {
			return err
		}
		if err := tx.Put("fresh", []byte("x")); err != nil {
			return err
		}
		return fmt.Errorf("halfway: %w", errAbort)
	})
	if !errors.Is(err, errAbort) {
		t.Fatalf("update = %v, want fn's error", err)
	}
	if runs != 1 {
		t.Errorf("fn ran %d times for an error of its own, want once", runs)
	}
	mustGet(t, st, "keep", "old")
	mustNotFind(t, st, "fresh")
}

func testReadYourWrites(t *testing.T, s *Suite) {
	st := s.open(t, name(t))
	put(t, st, "k", "0")
	err := st.Update(ctxFor(t), func(tx store.Tx) error {
		steps := []struct {
			put, key, want string // want "" means not found
		}{
			{"", "new", ""},
			{"1", "new", "1"},
			{"2", "new", "2"},
			{"", "k", "0"},
			{"3", "k", "3"},
		}
		for _, step := range steps {
			if step.put != "" {
				if err := tx.Put(step.key, []byte(step.put)); err != nil {
					return err
				}
			}
			v, err := tx.Get(step.key)
			switch {
			case step.want == "" && !errors.Is(err, store.ErrNotFound):
				return fmt.Errorf("tx get %q = %q, %v; want ErrNotFound", step.key, v, err)
			case step.want != "" && (err != nil || string(v) != step.want):
				return fmt.Errorf("tx get %q = %q, %v; want %q", step.key, v, err, step.want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	mustGet(t, st, "new", "2")
	mustGet(t, st, "k", "3")
}

// testConcurrentIncrements runs read-modify-write updates of one counter
// (and a second key per update, as tally.Add does) from many goroutines,
// through two handles when the store is shared: none may be lost.
func testConcurrentIncrements(t *testing.T, s *Suite) {
	n := name(t)
	handles := []store.Store{s.open(t, n)}
	if s.Shared {
		handles = append(handles, s.open(t, n))
	}
	const workers, each = 8, 25
	ctx := ctxFor(t)
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		st := handles[w%len(handles)]
		wg.Go(func() {
			for i := range each {
				err := st.Update(ctx, func(tx store.Tx) error {
					var c struct{ N int }
					if _, err := store.ReadJSON(tx, "n", &c); err != nil {
						return err
					}
					c.N++
					if err := store.WriteJSON(tx, fmt.Sprintf("item/%02d/%02d", w, i), c.N); err != nil {
						return err
					}
					return store.WriteJSON(tx, "n", c)
				})
				if err != nil {
					errs <- fmt.Errorf("worker %d, update %d: %w", w, i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	var c struct{ N int }
	if _, err := store.GetJSON(ctxFor(t), handles[0], "n", &c); err != nil {
		t.Fatal(err)
	}
	items, err := handles[len(handles)-1].List(ctxFor(t), "item/", 0)
	if err != nil {
		t.Fatal(err)
	}
	if c.N != workers*each || len(items) != workers*each {
		t.Fatalf("count %d and %d items after %d increments", c.N, len(items), workers*each)
	}
	// Every count from 1 to N was handed out exactly once.
	seen := make([]bool, workers*each+1)
	for _, e := range items {
		var v int
		if _, err := fmt.Sscan(string(e.Value), &v); err != nil || v < 1 || v > workers*each || seen[v] {
			t.Fatalf("item %s = %s: a count handed out twice or out of range", e.Key, e.Value)
		}
		seen[v] = true
	}
}

func testDurable(t *testing.T, s *Suite) {
	n := name(t)
	st := s.Open(t, n)
	put(t, st, "p/ann", "Ann", "p/bob", "Bob")
	if err := st.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	st = s.open(t, n)
	mustGet(t, st, "p/ann", "Ann")
	mustGet(t, st, "p/bob", "Bob")
}

// testNamespaces: two services with the same keys do not see each other.
func testNamespaces(t *testing.T, s *Suite) {
	a, b := s.open(t, name(t)), s.open(t, name(t))
	put(t, a, "n/ann", "a")
	put(t, b, "n/ann", "b", "n/bob", "b")
	mustGet(t, a, "n/ann", "a")
	mustGet(t, b, "n/ann", "b")
	mustNotFind(t, a, "n/bob")
	list, err := a.List(ctxFor(t), "n/", 0)
	if err != nil || len(list) != 1 || list[0].Key != "n/ann" || !bytes.Equal(list[0].Value, []byte("a")) {
		t.Fatalf("list in a = %q, %v; want only a's n/ann", list, err)
	}
}

func testDeadline(t *testing.T, s *Suite) {
	st := s.open(t, name(t))
	put(t, st, "k", "0")

	// A context already ended fails every call.
	ended, cancel := context.WithTimeout(context.Background(), -time.Second)
	defer cancel()
	calls := map[string]func() error{
		"Get":   func() error { _, err := st.Get(ended, "k"); return err },
		"List":  func() error { _, err := st.List(ended, "", 0); return err },
		"Check": func() error { return st.Check(ended) },
		"Update": func() error {
			return st.Update(ended, func(tx store.Tx) error { return tx.Put("k", []byte("late")) })
		},
	}
	for what, call := range calls {
		if err := call(); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s with an ended context = %v, want DeadlineExceeded", what, err)
		}
	}
	mustGet(t, st, "k", "0")

	// An update waiting on another that holds the key ends at its own
	// deadline, and writes nothing.
	holding, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	first := make(chan error, 1)
	go func() {
		first <- st.Update(context.Background(), func(tx store.Tx) error {
			if err := tx.Put("k", []byte("first")); err != nil {
				return err
			}
			once.Do(func() { close(holding) })
			select {
			case <-release:
				return nil
			case <-time.After(bound):
				return errors.New("never released")
			}
		})
	}()
	select {
	case <-holding:
	case err := <-first:
		t.Fatalf("first update ended early: %v", err)
	case <-time.After(bound):
		t.Fatal("first update never started")
	}
	second := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		second <- st.Update(ctx, func(tx store.Tx) error { return tx.Put("k", []byte("second")) })
	}()
	select {
	case err := <-second:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("blocked update = %v, want DeadlineExceeded", err)
		}
	case <-time.After(bound):
		t.Error("blocked update outlived its deadline")
	}
	close(release)
	select {
	case err := <-first:
		if err != nil {
			t.Fatalf("first update: %v", err)
		}
	case <-time.After(bound):
		t.Fatal("first update did not finish")
	}
	mustGet(t, st, "k", "first")
}

func testClosed(t *testing.T, s *Suite) {
	st := s.Open(t, name(t))
	ctx := ctxFor(t)
	if err := st.Check(ctx); err != nil {
		t.Fatalf("check on an open store: %v", err)
	}
	if err := st.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := st.Check(ctx); !errors.Is(err, store.ErrClosed) {
		t.Errorf("check after close = %v, want ErrClosed", err)
	}
	if _, err := st.Get(ctx, "k"); !errors.Is(err, store.ErrClosed) {
		t.Errorf("get after close = %v, want ErrClosed", err)
	}
	if _, err := st.List(ctx, "", 0); !errors.Is(err, store.ErrClosed) {
		t.Errorf("list after close = %v, want ErrClosed", err)
	}
	if err := st.Update(ctx, func(store.Tx) error { return nil }); !errors.Is(err, store.ErrClosed) {
		t.Errorf("update after close = %v, want ErrClosed", err)
	}
	if err := st.Close(); !errors.Is(err, store.ErrClosed) {
		t.Errorf("second close = %v, want ErrClosed", err)
	}
}
