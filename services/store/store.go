// Package store is the services' durable key-value store: Pebble with every
// write synced, and JSON values.
package store

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// Store is one service's data directory.
type Store struct {
	db *pebble.DB
}

// Open opens (creating if needed) the store in dir.
func Open(dir string) (*Store, error) {
	db, err := pebble.Open(dir, &pebble.Options{Logger: quietLogger{}})
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	return &Store{db: db}, nil
}

// Close closes the store.
func (s *Store) Close() error { return s.db.Close() }

// Get decodes the value at key into v; found is false if there is none.
func (s *Store) Get(key string, v any) (found bool, err error) {
	b, closer, err := s.db.Get([]byte(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("get %s: %w", key, err)
	}
	defer closer.Close()
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("decode %s: %w", key, err)
	}
	return true, nil
}

// GetRaw returns a copy of the value at key as stored (JSON), or nil.
func (s *Store) GetRaw(key string) ([]byte, error) {
	b, closer, err := s.db.Get([]byte(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	defer closer.Close()
	return append([]byte(nil), b...), nil
}

// Batch is a set of writes applied atomically.
type Batch struct {
	b   *pebble.Batch
	err error
}

// Batch starts a batch.
func (s *Store) Batch() *Batch { return &Batch{b: s.db.NewBatch()} }

// Put sets key to v as JSON.
func (b *Batch) Put(key string, v any) {
	if b.err != nil {
		return
	}
	val, err := json.Marshal(v)
	if err != nil {
		b.err = fmt.Errorf("encode %s: %w", key, err)
		return
	}
	b.err = b.b.Set([]byte(key), val, nil)
}

// Commit applies the batch and syncs it to disk.
func (b *Batch) Commit() error {
	defer b.b.Close()
	if b.err != nil {
		return b.err
	}
	return b.b.Commit(pebble.Sync)
}

// List decodes the values of up to limit keys with prefix (0: all), in key
// order.
func List[T any](s *Store, prefix string, limit int) ([]T, error) {
	upper := append([]byte(prefix), 0xff)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte(prefix), UpperBound: upper})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	out := []T{}
	for it.First(); it.Valid() && (limit == 0 || len(out) < limit); it.Next() {
		var v T
		if err := json.Unmarshal(it.Value(), &v); err != nil {
			return nil, fmt.Errorf("decode %s: %w", it.Key(), err)
		}
		out = append(out, v)
	}
	return out, it.Error()
}

type quietLogger struct{}

func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}

// ValidID reports whether id may name a profile: 1 to 64 of [a-z0-9_-].
// Keys are built by joining IDs with '/', so an ID can never contain one.
func ValidID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for _, c := range []byte(id) {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
