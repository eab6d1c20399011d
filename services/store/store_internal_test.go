package store

// What the shared conformance suite (storetest) does not cover: ValidID,
// the JSON helpers, and what only Pebble does (its key ranges, its lock on
// the data directory, its data on disk across a reopen).

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

func openPebble(t *testing.T, dir string) *Pebble {
	t.Helper()
	p, err := OpenPebble(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func put(t *testing.T, s Store, kv ...string) {
	t.Helper()
	err := s.Update(context.Background(), func(tx Tx) error {
		for i := 0; i < len(kv); i += 2 {
			if err := tx.Put(kv[i], []byte(kv[i+1])); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestValidID(t *testing.T) {
	for id, want := range map[string]bool{
		"1": true, "alice": true, "a-b_c-9": true, strings.Repeat("x", 64): true,
		"":                      false,
		strings.Repeat("x", 65): false,
		"Alice":                 false, // upper case
		"a/b":                   false, // keys join IDs with '/'
		"a b":                   false,
		"a.b":                   false,
		"é":                     false,
		"a\x00":                 false,
		"../x":                  false,
	} {
		if got := ValidID(id); got != want {
			t.Errorf("ValidID(%q) = %v, want %v", id, got, want)
		}
	}
}

type doc struct {
	Name string `json:"name"`
	N    int    `json:"n"`
}

func TestJSONHelpers(t *testing.T) {
	ctx := context.Background()
	s := openPebble(t, t.TempDir())
	err := s.Update(ctx, func(tx Tx) error {
		if err := WriteJSON(tx, "d/1", doc{"one", 1}); err != nil {
			return err
		}
		// A transaction reads its own write.
		var d doc
		if found, err := ReadJSON(tx, "d/1", &d); err != nil || !found || d != (doc{"one", 1}) {
			t.Errorf("ReadJSON in the writing tx = %v, %v, %+v", found, err, d)
		}
		if found, err := ReadJSON(tx, "d/none", &d); err != nil || found {
			t.Errorf("ReadJSON(missing) = %v, %v; want false, nil", found, err)
		}
		return WriteJSON(tx, "d/2", doc{"two", 2})
	})
	if err != nil {
		t.Fatal(err)
	}
	put(t, s, "d/3", "{not json", "e/1", `{"name":"other"}`)

	var d doc
	if found, err := GetJSON(ctx, s, "d/2", &d); err != nil || !found || d != (doc{"two", 2}) {
		t.Errorf("GetJSON(d/2) = %v, %v, %+v", found, err, d)
	}
	if found, err := GetJSON(ctx, s, "d/none", &d); err != nil || found {
		t.Errorf("GetJSON(missing) = %v, %v; want false, nil", found, err)
	}
	// A value that does not decode is an error naming its key.
	if _, err := GetJSON(ctx, s, "d/3", &d); err == nil || !strings.Contains(err.Error(), "d/3") {
		t.Errorf("GetJSON(bad json) = %v, want an error naming d/3", err)
	}
	err = s.Update(ctx, func(tx Tx) error {
		_, err := ReadJSON(tx, "d/3", &d)
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "d/3") {
		t.Errorf("ReadJSON(bad json) = %v, want an error naming d/3", err)
	}
	if _, err := ListJSON[doc](ctx, s, "d/", 0); err == nil || !strings.Contains(err.Error(), "d/3") {
		t.Errorf("ListJSON over a bad value = %v, want an error naming d/3", err)
	}
	got, err := ListJSON[doc](ctx, s, "d/", 2)
	if err != nil || len(got) != 2 || got[0] != (doc{"one", 1}) || got[1] != (doc{"two", 2}) {
		t.Errorf("ListJSON(d/, 2) = %+v, %v", got, err)
	}
	if got, err := ListJSON[doc](ctx, s, "none/", 0); err != nil || got == nil || len(got) != 0 {
		t.Errorf("ListJSON(empty prefix) = %#v, %v; want an empty non-nil list", got, err)
	}
	// A value that does not encode is an error naming its key, and
	// aborts the transaction.
	err = s.Update(ctx, func(tx Tx) error { return WriteJSON(tx, "d/9", func() {}) })
	if err == nil || !strings.Contains(err.Error(), "d/9") {
		t.Errorf("WriteJSON(func) = %v, want an error naming d/9", err)
	}
	if _, err := s.Get(ctx, "d/9"); !errors.Is(err, ErrNotFound) {
		t.Errorf("after a failed WriteJSON, Get(d/9) = %v, want ErrNotFound", err)
	}
}

func TestPrefixEnd(t *testing.T) {
	for prefix, want := range map[string]string{
		"a":          "b",
		"p/":         "p0",
		"a\xff":      "b",
		"a\xff\xff":  "b",
		"\xff":       "",
		"\xff\xff":   "",
		"":           "",
		"n/42\x00zz": "n/42\x00z{",
	} {
		if got := string(prefixEnd(prefix)); got != want {
			t.Errorf("prefixEnd(%q) = %q, want %q", prefix, got, want)
		}
	}
}

// Keys at the edges of a prefix's range: bytes 0x00 and 0xff, and the
// next prefix, are listed where they belong.
func TestPebbleListEdges(t *testing.T) {
	s := openPebble(t, t.TempDir())
	put(t, s, "a", "0", "a\x00", "1", "a\xff", "2", "a\xff\xff", "3", "b", "4", "\xff", "5", "\xff\x01", "6")
	for _, tt := range []struct {
		prefix string
		want   string
	}{
		{"a", "a a\x00 a\xff a\xff\xff"},
		{"a\xff", "a\xff a\xff\xff"},
		{"\xff", "\xff \xff\x01"},
		{"", "a a\x00 a\xff a\xff\xff b \xff \xff\x01"},
		{"c", ""},
	} {
		entries, err := s.List(context.Background(), tt.prefix, 0)
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, e := range entries {
			keys = append(keys, e.Key)
		}
		if got := strings.Join(keys, " "); got != tt.want {
			t.Errorf("List(%q) = %q, want %q", tt.prefix, got, tt.want)
		}
	}
}

// Synced writes are on disk: a store opened again on the same directory
// has them.
func TestPebbleReopenKeepsData(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenPebble(dir)
	if err != nil {
		t.Fatal(err)
	}
	put(t, s, "k/1", "one", "k/2", "two")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openPebble(t, dir)
	entries, err := s.List(context.Background(), "k/", 0)
	if err != nil || len(entries) != 2 || string(entries[0].Value) != "one" || string(entries[1].Value) != "two" {
		t.Fatalf("after reopen: %+v, %v", entries, err)
	}
}

func TestPebbleOpenErrors(t *testing.T) {
	file := t.TempDir() + "/file"
	if err := os.WriteFile(file, []byte("not a store"), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := OpenPebble(file); err == nil {
		s.Close()
		t.Fatal("OpenPebble on a regular file succeeded")
	} else if !strings.Contains(err.Error(), file) {
		t.Errorf("error %q does not name the path", err)
	}
}

// Readiness asks Check; a store that is closed must say so, not panic
// (the admin listener can ask while the process stops).
func TestPebbleCheckAfterClose(t *testing.T) {
	s, err := OpenPebble(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Check(context.Background()); err != nil {
		t.Fatalf("Check on an open store: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Check(ctx); err == nil {
		t.Error("Check on a closed store: nil")
	}
	if _, err := s.Get(ctx, "k"); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("Get on a closed store: %v", err)
	}
	if _, err := s.List(ctx, "", 0); err == nil {
		t.Error("List on a closed store: nil")
	}
	if err := s.Update(ctx, func(Tx) error { return nil }); err == nil {
		t.Error("Update on a closed store: nil")
	}
	if err := s.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close: %v, want ErrClosed", err)
	}
}

// The read cache never serves a value older than the last Update that
// returned, however reads race the writes.
func TestPebbleCacheFollowsWrites(t *testing.T) {
	s := openPebble(t, t.TempDir())
	ctx := context.Background()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 { // readers racing to fill the cache with what they read
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
					_, _ = s.Get(ctx, "k")
				}
			}
		})
	}
	defer func() { close(stop); wg.Wait() }()
	for i := range 300 {
		want := strconv.Itoa(i)
		if err := s.Update(ctx, func(tx Tx) error { return tx.Put("k", []byte(want)) }); err != nil {
			t.Fatal(err)
		}
		got, err := s.Get(ctx, "k")
		if err != nil || string(got) != want {
			t.Fatalf("after writing %s, read %q, %v", want, got, err)
		}
	}
}
