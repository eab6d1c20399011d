// Package web is the aggregator: it owns the public routes, calls the
// domain services over the bus (in parallel where the calls are
// independent) and composes the JSON pages.
package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/services/flirts"
	"github.com/terminator-gw/terminator/services/notifications"
	"github.com/terminator-gw/terminator/services/profiles"
	"github.com/terminator-gw/terminator/services/store"
	"github.com/terminator-gw/terminator/services/visits"
)

// Service is the name web registers under.
const Service = "web"

// Page is GET /profiles/{id}: the profile with its counts. When the
// counts did not come in time they are left out and named in Missing, so
// the page degrades instead of failing whole.
type Page struct {
	Profile json.RawMessage `json:"profile"`
	Visits  *int            `json:"visits,omitempty"`
	Flirts  *int            `json:"flirts,omitempty"`
	Missing []string        `json:"missing,omitempty"`
}

// Register adds the public routes to n; n must know the domain services'
// peers (discovery does that). A PUT stores the whole profile, so running
// it twice is running it once: it is declared idempotent and retried on
// another instance when one is lost mid-request, as the GETs are.
func Register(n *nanobus.Node) error {
	a := &aggregator{n: n}
	return errors.Join(
		n.Handle("GET /profiles/{id}", a.page),
		n.Handle("PUT /profiles/{id}", a.putProfile, nanobus.Idempotent()),
		n.Handle("POST /profiles/{id}/visits", a.visit),
		n.Handle("POST /profiles/{id}/flirts", a.flirt),
		n.Handle("GET /profiles/{id}/visitors", a.visitors),
		n.Handle("GET /profiles/{id}/notifications", a.notifications),
	)
}

type aggregator struct{ n *nanobus.Node }

// optionalShare is the part of the remaining time a call whose answer the
// page can do without may take: what is left covers the reply.
const optionalShare = 0.8

func (a *aggregator) page(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
	id, err := pathID(req)
	if err != nil {
		return nanobus.Reply{}, err
	}
	// Two independent calls at once: the page takes as long as the
	// slower, not their sum. The counts, which the page can do without,
	// get a share of the deadline; they are the notifications service's
	// projection of the visit and flirt events.
	idb := []byte(id)
	optional := nanobus.WithDeadline(ctx, shareOf(ctx, optionalShare))
	countsCall := a.n.Go(optional, notifications.Service, notifications.RouteCounts, idb)
	// The page is assembled by hand around the profile's JSON as the
	// profile service sent it: encoding a Page would parse it all again.
	var b []byte
	profileErr := a.call(ctx, profiles.Service, profiles.RouteGet, idb, func(_ int, profile []byte) error {
		b = append(append(make([]byte, 0, len(profile)+80), `{"profile":`...), profile...)
		return nil
	})
	var c notifications.Counts
	countsErr := use(notifications.Service, countsCall, func(_ int, body []byte) (err error) {
		c, err = notifications.ParseCounts(body)
		return err
	})
	if profileErr != nil {
		return nanobus.Reply{}, profileErr // 404 for an unknown profile, or the bus error
	}
	if countsErr != nil {
		b = append(b, `,"missing":["visits","flirts"]`...)
	} else {
		b = strconv.AppendInt(append(b, `,"visits":`...), int64(c.Visits), 10)
		b = strconv.AppendInt(append(b, `,"flirts":`...), int64(c.Flirts), 10)
	}
	return nanobus.RawJSON(200, append(b, '}')), nil
}

func (a *aggregator) putProfile(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
	id, err := pathID(req)
	if err != nil {
		return nanobus.Reply{}, err
	}
	var p profiles.Profile
	if err := decodeBody(req, &p); err != nil {
		return nanobus.Reply{}, err
	}
	p.ID = id
	body, _ := json.Marshal(p)
	return a.forward(ctx, profiles.Service, profiles.RoutePut, body)
}

func (a *aggregator) visit(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
	id, err := pathID(req)
	if err != nil {
		return nanobus.Reply{}, err
	}
	var in struct {
		Visitor string `json:"visitor"`
	}
	if err := decodeBody(req, &in); err != nil {
		return nanobus.Reply{}, err
	}
	if err := a.bothExist(ctx, id, in.Visitor); err != nil {
		return nanobus.Reply{}, err
	}
	body, _ := json.Marshal(visits.Visit{Profile: id, Visitor: in.Visitor})
	return a.forward(ctx, visits.Service, visits.RouteRecord, body)
}

func (a *aggregator) flirt(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
	id, err := pathID(req)
	if err != nil {
		return nanobus.Reply{}, err
	}
	var in struct {
		From    string `json:"from"`
		Message string `json:"message"`
	}
	if err := decodeBody(req, &in); err != nil {
		return nanobus.Reply{}, err
	}
	if err := a.bothExist(ctx, id, in.From); err != nil {
		return nanobus.Reply{}, err
	}
	body, _ := json.Marshal(flirts.Flirt{From: in.From, To: id, Message: in.Message})
	return a.forward(ctx, flirts.Service, flirts.RouteSend, body)
}

func (a *aggregator) visitors(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
	id, err := pathID(req)
	if err != nil {
		return nanobus.Reply{}, err
	}
	body, _ := json.Marshal(visits.ListRequest{Profile: id, Limit: 50})
	return a.forward(ctx, visits.Service, visits.RouteList, body)
}

// notifications is a profile's notifications after ?since= (an item ID;
// 0 or none: from the first), oldest first, as the events made them.
func (a *aggregator) notifications(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
	id, err := pathID(req)
	if err != nil {
		return nanobus.Reply{}, err
	}
	lr := notifications.ListRequest{Profile: id}
	if q, err := url.ParseQuery(string(req.Query)); err != nil {
		return nanobus.Reply{}, nanobus.Errorf(400, "query: %v", err)
	} else if since := q.Get("since"); since != "" {
		if lr.Since, err = strconv.ParseUint(since, 10, 64); err != nil {
			return nanobus.Reply{}, nanobus.Errorf(400, "since: want a notification id, got %q", since)
		}
	}
	body, _ := json.Marshal(lr)
	return a.forward(ctx, notifications.Service, notifications.RouteList, body)
}

// bothExist checks, in parallel, that the two profiles exist: 404 names
// the first that does not.
func (a *aggregator) bothExist(ctx context.Context, id, other string) error {
	if !store.ValidID(other) {
		return nanobus.Errorf(400, "bad profile id %q", other)
	}
	// Both at once; Wait for each in turn.
	first := a.n.Go(ctx, profiles.Service, profiles.RouteGet, []byte(id))
	second := a.n.Go(ctx, profiles.Service, profiles.RouteGet, []byte(other))
	return errors.Join(use(profiles.Service, first, nil), use(profiles.Service, second, nil))
}

// call makes one call and hands a 2xx reply's status and body to fn (nil:
// the reply is not needed) before the reply's frame is released; any other
// status comes back as a *nanobus.StatusError, a bus error wrapped, to be
// answered as nanobus.StatusOf says.
func (a *aggregator) call(ctx context.Context, service, route string, body []byte, fn func(int, []byte) error) error {
	return use(service, a.n.Go(ctx, service, route, body), fn)
}

// use waits for p's reply and hands it to fn as call says.
func use(service string, p *nanobus.Pending, fn func(int, []byte) error) error {
	resp, err := p.Wait()
	if err != nil {
		return fmt.Errorf("%s: %w", service, err)
	}
	defer resp.Release()
	if resp.Status/100 != 2 {
		return &nanobus.StatusError{Status: resp.Status, Message: string(resp.Body)}
	}
	if fn == nil {
		return nil
	}
	return fn(resp.Status, resp.Body)
}

// forward makes one call and answers with its reply as it is.
func (a *aggregator) forward(ctx context.Context, service, route string, body []byte) (rep nanobus.Reply, err error) {
	err = a.call(ctx, service, route, body, func(status int, b []byte) error {
		rep = nanobus.RawJSON(status, bytes.Clone(b))
		return nil
	})
	return rep, err
}

func pathID(req *nanobus.Request) (string, error) {
	id := req.PathValue("id")
	if !store.ValidID(id) {
		return "", nanobus.Errorf(400, "bad profile id %q", id)
	}
	return id, nil
}

func decodeBody(req *nanobus.Request, v any) error {
	if err := json.Unmarshal(req.Body, v); err != nil {
		return nanobus.Errorf(400, "body: %v", err)
	}
	return nil
}

// shareOf is the deadline that leaves (1-share) of ctx's remaining time.
func shareOf(ctx context.Context, share float64) time.Time {
	now := time.Now() // once: a reading costs 60-100 ns on a VM
	dl, ok := ctx.Deadline()
	if !ok {
		return now.Add(time.Second)
	}
	return now.Add(time.Duration(float64(dl.Sub(now)) * share))
}
