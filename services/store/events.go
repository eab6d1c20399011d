package store

import (
	"context"
	"errors"

	"github.com/terminator-gw/terminator/nanobus/events"
)

// EventLog is s as package events takes a store: a publisher's log and a
// subscriber's positions and hospital live among the service's own keys
// (under "~"), so that both commit in the transactions of its changes.
func EventLog(s Store) events.Store { return eventLog{s} }

type eventLog struct{ s Store }

func (l eventLog) Update(ctx context.Context, fn func(events.Tx) error) error {
	return l.s.Update(ctx, func(tx Tx) error { return fn(tx) })
}

func (l eventLog) Get(ctx context.Context, key string) ([]byte, error) { return l.s.Get(ctx, key) }

func (l eventLog) Scan(ctx context.Context, start, end string, limit int) ([]events.KV, error) {
	entries, err := l.s.Scan(ctx, start, end, limit)
	out := make([]events.KV, len(entries))
	for i, e := range entries {
		out[i] = events.KV{Key: e.Key, Value: e.Value}
	}
	return out, err
}

func (eventLog) NotFound(err error) bool { return errors.Is(err, ErrNotFound) }

func (l eventLog) WaitDurable(ctx context.Context) error {
	if p, ok := l.s.(*Pebble); ok {
		return p.WaitDurable(ctx)
	}
	return nil // PostgreSQL shows a commit once it is durable
}

func (l eventLog) Horizon(ctx context.Context) (uint64, bool, error) {
	if p, ok := l.s.(*Postgres); ok {
		return p.horizon(ctx)
	}
	return 0, false, nil
}
