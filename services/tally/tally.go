// Package tally is what the visit and flirt services share: items kept per
// profile with a running count, and the bus handlers that read them.
package tally

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strconv"

	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/nanobus/events"
	"github.com/terminator-gw/terminator/services/store"
)

// Count is how many items a profile has.
type Count struct {
	Count int `json:"count"`
}

// ListRequest asks for a profile's items.
type ListRequest struct {
	Profile string `json:"profile"`
	Limit   int    `json:"limit"` // default and maximum 100
}

// Tally keeps items under "<prefix>/<profile>/<suffix>" and their number
// under "n/<profile>", and publishes each item added as an event of its
// topic, keyed by the profile, in the same transaction.
type Tally struct {
	s      store.Store
	ev     *events.Bus
	prefix string
	topic  string
}

// New returns a tally over s whose items live under prefix; each item
// added is published on ev as topic, declared as published by route.
func New(s store.Store, ev *events.Bus, prefix, topic, route string) (*Tally, error) {
	return &Tally{s: s, ev: ev, prefix: prefix, topic: topic}, ev.Declare(topic, route)
}

// Add stores item for profile, counts it and publishes it, in one synced
// transaction. With unique set, an item already under that key is left
// alone: added is false (and nothing is published).
func (t *Tally) Add(ctx context.Context, profile, suffix string, item any, unique bool) (c Count, added bool, err error) {
	key := t.prefix + "/" + profile + "/" + suffix
	body, err := json.Marshal(item)
	if err != nil {
		return Count{}, false, err
	}
	err = t.ev.Update(ctx, func(tx events.Tx) error {
		c, added = Count{}, false
		if unique {
			_, err := tx.Get(key)
			if err == nil {
				return nil
			}
			if !errors.Is(err, store.ErrNotFound) {
				return err
			}
		}
		if _, err := store.ReadJSON(tx, "n/"+profile, &c); err != nil {
			return err
		}
		c.Count++
		added = true
		if err := tx.Put(key, body); err != nil {
			return err
		}
		if err := store.WriteJSON(tx, "n/"+profile, c); err != nil {
			return err
		}
		return t.ev.Publish(ctx, tx, t.topic, profile, body)
	})
	if err != nil {
		return Count{}, false, err
	}
	return c, added, nil
}

// HandleCount serves route: body a profile ID, answer its Count.
func (t *Tally) HandleCount(n *nanobus.Node, route string) error {
	return n.Handle(route, func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		id := string(req.Body)
		if !store.ValidID(id) {
			return nanobus.Reply{}, nanobus.Errorf(400, "bad profile id %q", id)
		}
		// The stored count is the answer, as it is.
		raw, err := t.s.Get(ctx, "n/"+id)
		switch {
		case errors.Is(err, store.ErrNotFound):
			raw = []byte(`{"count":0}`)
		case err != nil:
			return nanobus.Reply{}, err
		}
		return nanobus.RawJSON(200, raw), nil
	}, nanobus.Idempotent())
}

// ParseCount reads a Count: {"count":N} as this package writes it without
// reflection, anything else through encoding/json.
func ParseCount(b []byte) (Count, error) {
	if rest, ok := bytes.CutPrefix(b, []byte(`{"count":`)); ok {
		if digits, ok := bytes.CutSuffix(rest, []byte("}")); ok {
			if n, err := strconv.Atoi(string(digits)); err == nil {
				return Count{Count: n}, nil
			}
		}
	}
	var c Count
	err := json.Unmarshal(b, &c)
	return c, err
}

// HandleList serves route: body a ListRequest, answer wrap(items) in key
// order.
func HandleList[T any](n *nanobus.Node, route string, t *Tally, wrap func([]T) any) error {
	return n.Handle(route, func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		var lr ListRequest
		if err := json.Unmarshal(req.Body, &lr); err != nil || !store.ValidID(lr.Profile) {
			return nanobus.Reply{}, nanobus.Errorf(400, "list: want {\"profile\": id, \"limit\": n}")
		}
		if lr.Limit <= 0 || lr.Limit > 100 {
			lr.Limit = 100
		}
		list, err := store.ListJSON[T](ctx, t.s, t.prefix+"/"+lr.Profile+"/", lr.Limit)
		if err != nil {
			return nanobus.Reply{}, err
		}
		return nanobus.JSON(200, wrap(list))
	}, nanobus.Idempotent())
}
