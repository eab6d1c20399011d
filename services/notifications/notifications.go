// Package notifications is the notification service: projections of the
// other services' events, kept in its own store. Who visited a profile and
// who flirted with it become a feed per profile (its items numbered in the
// order the events were applied) and counts; profile changes keep the names
// the feed shows. Each projection commits with the subscription's position
// (package events), so an event is applied once however often it comes.
package notifications

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/nanobus/events"
	"github.com/terminator-gw/terminator/services/flirts"
	"github.com/terminator-gw/terminator/services/profiles"
	"github.com/terminator-gw/terminator/services/store"
	"github.com/terminator-gw/terminator/services/visits"
)

// Service is the name notifications registers under; Group is its
// subscriptions' group.
const (
	Service = "notifications"
	Group   = "notifications"
)

// Internal routes.
const (
	RouteCounts = "notifications.counts" // body: profile ID; answers Counts
	RouteList   = "notifications.list"   // body: ListRequest; answers Feed
)

// Counts are a profile's visits and flirts received, as the events told.
type Counts struct {
	Visits int `json:"visits"`
	Flirts int `json:"flirts"`
}

// Item is one notification: someone (From) visited or flirted with a
// profile.
type Item struct {
	ID       uint64    `json:"id"`   // 1, 2, 3... per profile, in the order applied
	Kind     string    `json:"kind"` // "visit" or "flirt"
	From     string    `json:"from"` // the other profile's ID
	FromName string    `json:"from_name,omitempty"`
	Message  string    `json:"message,omitempty"` // a flirt's
	At       time.Time `json:"at"`
	Event    string    `json:"event"` // the event's ID
}

// ListRequest asks for a profile's notifications after Since, oldest
// first.
type ListRequest struct {
	Profile string `json:"profile"`
	Since   uint64 `json:"since"`
	Limit   int    `json:"limit"` // default and maximum 100
}

// Feed is a page of notifications and where the next one starts.
type Feed struct {
	Items []Item `json:"items"`
	Last  uint64 `json:"last"` // the ID of the newest item: ask again with since=last
}

// Keys in the store.
func countsKey(profile string) string          { return "c/" + profile }
func headKey(profile string) string            { return "h/" + profile }
func itemKey(profile string, id uint64) string { return fmt.Sprintf("i/%s/%016x", profile, id) }
func nameKey(profile string) string            { return "n/" + profile }

// Register subscribes the projections on ev, reading from visits, flirts
// and profiles, and adds the routes that read them to n.
func Register(n *nanobus.Node, s store.Store, ev *events.Bus) error {
	p := &projector{s: s}
	return errors.Join(
		ev.Subscribe(visits.TopicVisited, Group, p.visited, events.From(visits.Service)),
		ev.Subscribe(flirts.TopicSent, Group, p.flirted, events.From(flirts.Service)),
		ev.Subscribe(profiles.TopicUpdated, Group, p.renamed, events.From(profiles.Service)),
		n.Handle(RouteCounts, p.counts, nanobus.Idempotent()),
		n.Handle(RouteList, p.list, nanobus.Idempotent()),
	)
}

type projector struct{ s store.Store }

func (p *projector) visited(_ context.Context, tx events.Tx, e *events.Event) error {
	var v visits.Visit
	if err := json.Unmarshal(e.Body, &v); err != nil {
		return fmt.Errorf("visit %s: %w", e.ID, err)
	}
	return p.add(tx, v.Profile, Item{Kind: "visit", From: v.Visitor, At: v.At, Event: e.ID}, func(c *Counts) { c.Visits++ })
}

func (p *projector) flirted(_ context.Context, tx events.Tx, e *events.Event) error {
	var f flirts.Flirt
	if err := json.Unmarshal(e.Body, &f); err != nil {
		return fmt.Errorf("flirt %s: %w", e.ID, err)
	}
	return p.add(tx, f.To, Item{Kind: "flirt", From: f.From, Message: f.Message, At: f.At, Event: e.ID}, func(c *Counts) { c.Flirts++ })
}

// add appends it to profile's feed and counts it, in tx.
func (p *projector) add(tx events.Tx, profile string, it Item, count func(*Counts)) error {
	if !store.ValidID(profile) || !store.ValidID(it.From) {
		return fmt.Errorf("event %s: bad profile ids %q, %q", it.Event, profile, it.From)
	}
	var c Counts
	if _, err := store.ReadJSON(tx, countsKey(profile), &c); err != nil {
		return err
	}
	count(&c)
	head := uint64(0)
	if raw, err := tx.Get(headKey(profile)); err == nil {
		if head, err = strconv.ParseUint(string(raw), 10, 64); err != nil {
			return fmt.Errorf("feed head of %s: %w", profile, err)
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	it.ID = head + 1
	if err := store.WriteJSON(tx, itemKey(profile, it.ID), it); err != nil {
		return err
	}
	if err := tx.Put(headKey(profile), strconv.AppendUint(nil, it.ID, 10)); err != nil {
		return err
	}
	return store.WriteJSON(tx, countsKey(profile), c)
}

func (p *projector) renamed(_ context.Context, tx events.Tx, e *events.Event) error {
	var pr profiles.Profile
	if err := json.Unmarshal(e.Body, &pr); err != nil {
		return fmt.Errorf("profile %s: %w", e.ID, err)
	}
	if !store.ValidID(pr.ID) {
		return fmt.Errorf("profile %s: bad id %q", e.ID, pr.ID)
	}
	return tx.Put(nameKey(pr.ID), []byte(pr.Name))
}

// counts answers the stored counts as they are: the page asks for them on
// every view, so they are not decoded and encoded again.
func (p *projector) counts(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
	id := string(req.Body)
	if !store.ValidID(id) {
		return nanobus.Reply{}, nanobus.Errorf(400, "bad profile id %q", id)
	}
	raw, err := p.s.Get(ctx, countsKey(id))
	switch {
	case errors.Is(err, store.ErrNotFound):
		raw = noCounts
	case err != nil:
		return nanobus.Reply{}, err
	}
	return nanobus.RawJSON(200, raw), nil
}

// noCounts is the answer for a profile no event has counted yet.
var noCounts = []byte(`{"visits":0,"flirts":0}`)

// ParseCounts reads Counts: {"visits":N,"flirts":M} as this package writes
// them without reflection, anything else through encoding/json.
func ParseCounts(b []byte) (Counts, error) {
	if rest, ok := bytes.CutPrefix(b, []byte(`{"visits":`)); ok {
		if v, f, ok := bytes.Cut(rest, []byte(`,"flirts":`)); ok {
			if f, ok := bytes.CutSuffix(f, []byte("}")); ok {
				vn, vok := jsonInt(v)
				fn, fok := jsonInt(f)
				if vok && fok {
					return Counts{Visits: vn, Flirts: fn}, nil
				}
			}
		}
	}
	var c Counts
	err := json.Unmarshal(b, &c)
	return c, err
}

// jsonInt reads b as a JSON integer (no '+', no leading zero), as
// encoding/json would.
func jsonInt(b []byte) (int, bool) {
	digits := bytes.TrimPrefix(b, []byte("-"))
	if len(digits) == 0 || digits[0] == '0' && len(digits) > 1 {
		return 0, false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(string(b))
	return n, err == nil
}

func (p *projector) list(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
	var lr ListRequest
	if err := json.Unmarshal(req.Body, &lr); err != nil || !store.ValidID(lr.Profile) {
		return nanobus.Reply{}, nanobus.Errorf(400, "list: want {\"profile\": id, \"since\": n, \"limit\": n}")
	}
	if lr.Limit <= 0 || lr.Limit > 100 {
		lr.Limit = 100
	}
	entries, err := p.s.Scan(ctx, itemKey(lr.Profile, lr.Since+1), "i/"+lr.Profile+"0", lr.Limit) // '0' follows '/'
	if err != nil {
		return nanobus.Reply{}, err
	}
	f := Feed{Items: make([]Item, 0, len(entries)), Last: lr.Since}
	names := map[string]string{}
	for _, e := range entries {
		var it Item
		if err := json.Unmarshal(e.Value, &it); err != nil {
			return nanobus.Reply{}, fmt.Errorf("feed item %s: %w", e.Key, err)
		}
		name, ok := names[it.From]
		if !ok {
			raw, err := p.s.Get(ctx, nameKey(it.From))
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return nanobus.Reply{}, err
			}
			name = string(raw)
			names[it.From] = name
		}
		it.FromName = name
		f.Items = append(f.Items, it)
		f.Last = it.ID
	}
	return nanobus.JSON(200, f)
}
