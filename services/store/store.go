package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
)

// ErrNotFound is what Get returns for a key with no value.
var ErrNotFound = errors.New("store: not found")

// ErrClosed is what a store's methods return after Close.
var ErrClosed = errors.New("store: closed")

// Open opens namespace's store as spec says: a "postgres://" or
// "postgresql://" URL opens PostgreSQL (every namespace shares the
// database, each sees only its own keys); anything else is a data
// directory, and the Pebble store lives in filepath.Join(spec, namespace).
// namespace is a service name: 1 to 64 of [a-z0-9_-].
func Open(ctx context.Context, spec, namespace string) (Store, error) {
	if !ValidID(namespace) {
		return nil, fmt.Errorf("open store: bad namespace %q: want 1 to 64 of a-z, 0-9, '-', '_'", namespace)
	}
	if strings.HasPrefix(spec, "postgres://") || strings.HasPrefix(spec, "postgresql://") {
		p, err := OpenPostgres(ctx, spec, namespace)
		if err != nil {
			return nil, err // not a typed nil inside the interface
		}
		return p, nil
	}
	p, err := OpenPebble(filepath.Join(spec, namespace))
	if err != nil {
		return nil, err
	}
	return p, nil
}

// Store is one service's data. Its methods are safe for concurrent use;
// each fails with the context's error once ctx has ended (its deadline
// bounds every wait), and with ErrClosed after Close.
type Store interface {
	// Get returns a copy of the value at key, or ErrNotFound.
	Get(ctx context.Context, key string) ([]byte, error)
	// List returns up to limit entries whose keys start with prefix, in
	// byte order of their keys; limit <= 0 means no limit.
	List(ctx context.Context, prefix string, limit int) ([]Entry, error)
	// Scan returns up to limit entries with start <= key < end, in byte
	// order of their keys; an empty end means no upper bound, limit <= 0
	// no limit.
	Scan(ctx context.Context, start, end string, limit int) ([]Entry, error)
	// Update runs fn in a transaction and commits its writes durably, all
	// or none. fn may run more than once (after a conflict with another
	// writer); an error from fn aborts the transaction and is returned.
	Update(ctx context.Context, fn func(Tx) error) error
	// Check reports whether the store can serve: what readiness shows.
	Check(ctx context.Context) error
	// Close waits for calls in progress, then releases the store.
	Close() error
}

// Tx is a transaction's view: its reads see its own writes.
type Tx interface {
	Get(key string) ([]byte, error) // ErrNotFound when there is no value
	Put(key string, value []byte) error
	Delete(key string) error // deleting a key with no value is no error
}

// Entry is one key and its value.
type Entry struct {
	Key   string
	Value []byte
}

// GetJSON decodes the value at key into v; found is false when there is none.
func GetJSON(ctx context.Context, s Store, key string, v any) (found bool, err error) {
	return decode(key, v)(s.Get(ctx, key))
}

// ReadJSON is GetJSON inside a transaction.
func ReadJSON(tx Tx, key string, v any) (found bool, err error) {
	return decode(key, v)(tx.Get(key))
}

func decode(key string, v any) func([]byte, error) (bool, error) {
	return func(b []byte, err error) (bool, error) {
		if errors.Is(err, ErrNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if err := json.Unmarshal(b, v); err != nil {
			return false, fmt.Errorf("decode %s: %w", key, err)
		}
		return true, nil
	}
}

// WriteJSON puts v, encoded as JSON, at key.
func WriteJSON(tx Tx, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	return tx.Put(key, b)
}

// ListJSON decodes up to limit values under prefix, in key order.
func ListJSON[T any](ctx context.Context, s Store, prefix string, limit int) ([]T, error) {
	entries, err := s.List(ctx, prefix, limit)
	if err != nil {
		return nil, err
	}
	out := make([]T, 0, len(entries))
	for _, e := range entries {
		var v T
		if err := json.Unmarshal(e.Value, &v); err != nil {
			return nil, fmt.Errorf("decode %s: %w", e.Key, err)
		}
		out = append(out, v)
	}
	return out, nil
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
