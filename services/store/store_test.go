package store_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/terminator-gw/terminator/services/store"
	"github.com/terminator-gw/terminator/services/store/pgtest"
	"github.com/terminator-gw/terminator/services/store/storetest"
)

// childDirEnv, when set, makes the test binary a second process that
// opens the Pebble store in that directory and reports what it got.
const childDirEnv = "STORE_TEST_SECOND_PROCESS_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(childDirEnv); dir != "" {
		_, err := store.OpenPebble(dir)
		fmt.Printf("open: %v\n", err)
		os.Exit(0)
	}
	pgtest.Main(m)
}

func TestPebble(t *testing.T) {
	root := t.TempDir()
	storetest.Run(t, storetest.Suite{Open: func(t *testing.T, name string) store.Store {
		s, err := store.OpenPebble(filepath.Join(root, name))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}})
}

func TestPostgres(t *testing.T) {
	url := pgtest.NewDatabase(t)
	storetest.Run(t, storetest.Suite{Shared: true, Open: func(t *testing.T, name string) store.Store {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, err := store.OpenPostgres(ctx, url, name)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}})
}

// TestPebbleSecondProcess: a second process on a data directory is
// refused, with a message that says what to do instead.
func TestPebbleSecondProcess(t *testing.T) {
	dir := t.TempDir()
	s, err := store.OpenPebble(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childDirEnv+"="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("second process: %v\n%s", err, out)
	}
	msg := string(out)
	for _, want := range []string{"in use by another process", "own -data directory", "-store postgres://"} {
		if !strings.Contains(msg, want) {
			t.Errorf("second process got %q, want it to say %q", strings.TrimSpace(msg), want)
		}
	}

	// In the same process a second open is refused too.
	if again, err := store.OpenPebble(dir); err == nil {
		again.Close()
		t.Error("second open in the same process succeeded")
	}
}

func TestOpen(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dir := t.TempDir()
	s, err := store.Open(ctx, dir, "profiles")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.(*store.Pebble); !ok {
		t.Errorf("Open(dir) = %T, want *store.Pebble", s)
	}
	s.Close()
	if _, err := os.Stat(filepath.Join(dir, "profiles")); err != nil {
		t.Errorf("Pebble store not in dir/namespace: %v", err)
	}

	url := pgtest.NewDatabase(t)
	for _, spec := range []string{url, "postgresql" + strings.TrimPrefix(url, "postgres")} {
		s, err := store.Open(ctx, spec, "profiles")
		if err != nil {
			t.Fatalf("open %s: %v", spec, err)
		}
		if _, ok := s.(*store.Postgres); !ok {
			t.Errorf("Open(%s) = %T, want *store.Postgres", spec, s)
		}
		s.Close()
	}

	for _, ns := range []string{"", "..", "a/b", "Profiles"} {
		if s, err := store.Open(ctx, dir, ns); err == nil {
			s.Close()
			t.Errorf("Open with namespace %q succeeded", ns)
		}
	}
	if s, err := store.Open(ctx, "postgres://127.0.0.1:1/x?connect_timeout=5", "profiles"); err == nil {
		s.Close()
		t.Error("Open of an unreachable PostgreSQL succeeded")
	}
}

// TestPostgresInstancesStartTogether: instances starting at once on an
// empty database all get the schema, and it is recorded once.
func TestPostgresInstancesStartTogether(t *testing.T) {
	url := pgtest.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const instances = 6
	var wg sync.WaitGroup
	stores := make([]*store.Postgres, instances)
	errs := make([]error, instances)
	for i := range instances {
		wg.Go(func() { stores[i], errs[i] = store.OpenPostgres(ctx, url, "profiles") })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("instance %d: %v", i, err)
		}
		defer stores[i].Close()
	}
	if err := stores[0].Update(ctx, func(tx store.Tx) error { return tx.Put("k", []byte("v")) }); err != nil {
		t.Fatal(err)
	}
	if v, err := stores[instances-1].Get(ctx, "k"); err != nil || string(v) != "v" {
		t.Fatalf("get through another instance = %q, %v", v, err)
	}
}

// TestPostgresRetry: a transaction that loses a conflict runs again; any
// other error from fn ends it at once; retries are bounded.
func TestPostgresRetry(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := store.OpenPostgres(ctx, pgtest.NewDatabase(t), "retry")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	conflict := func(code string) error {
		return fmt.Errorf("put: %w", &pgconn.PgError{Code: code, Message: "injected"})
	}
	tests := []struct {
		name     string
		failures int    // runs of fn that fail before one succeeds
		code     string // SQLSTATE of the failures
		wantRuns int
		wantErr  bool
	}{
		{"serialization failure", 2, "40001", 3, false},
		{"deadlock", 1, "40P01", 2, false},
		{"other SQL error", 1, "23505", 1, true},
		{"always conflicting", 1000, "40001", store.MaxUpdateTries, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			runs := 0
			key := strings.ReplaceAll(tc.name, " ", "-")
			err := s.Update(ctx, func(tx store.Tx) error {
				runs++
				if err := tx.Put(key, []byte(fmt.Sprint(runs))); err != nil {
					return err
				}
				if runs <= tc.failures {
					return conflict(tc.code)
				}
				return nil
			})
			if runs != tc.wantRuns || (err != nil) != tc.wantErr {
				t.Fatalf("fn ran %d times, update = %v; want %d runs, error %v", runs, err, tc.wantRuns, tc.wantErr)
			}
			var pgErr *pgconn.PgError
			if tc.wantErr && (!errors.As(err, &pgErr) || pgErr.Code != tc.code) {
				t.Errorf("update = %v, want the SQLSTATE %s error", err, tc.code)
			}
			v, gerr := s.Get(ctx, key)
			switch {
			case tc.wantErr && !errors.Is(gerr, store.ErrNotFound):
				t.Errorf("a failed update left %q = %q", key, v)
			case !tc.wantErr && string(v) != fmt.Sprint(tc.wantRuns):
				t.Errorf("%q = %q, %v; want the last run's %d", key, v, gerr, tc.wantRuns)
			}
		})
	}
}
