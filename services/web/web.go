// Package web is the aggregator: it owns the public routes, calls the
// domain services over the bus (in parallel where the calls are
// independent) and composes the JSON pages.
package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/services/flirts"
	"github.com/terminator-gw/terminator/services/profiles"
	"github.com/terminator-gw/terminator/services/store"
	"github.com/terminator-gw/terminator/services/tally"
	"github.com/terminator-gw/terminator/services/visits"
)

// Service is the name web registers under.
const Service = "web"

// Page is GET /profiles/{id}: the profile with its counts. A count whose
// service did not answer in time is left out and named in Missing, so the
// page degrades instead of failing whole.
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
	// Three independent calls at once: the page takes as long as the
	// slowest, not their sum. The counts go in goroutines; the profile,
	// which the page cannot do without, on this one.
	optional := nanobus.WithDeadline(ctx, shareOf(ctx, optionalShare))
	var visitCount, flirtCount tally.Count
	var visitsErr, flirtsErr error
	var wg sync.WaitGroup
	wg.Go(func() { visitCount, visitsErr = a.count(optional, visits.Service, visits.RouteCount, id) })
	wg.Go(func() { flirtCount, flirtsErr = a.count(optional, flirts.Service, flirts.RouteCount, id) })
	_, profile, profileErr := a.callRaw(ctx, profiles.Service, profiles.RouteGet, []byte(id))
	wg.Wait()
	if profileErr != nil {
		return nanobus.Reply{}, profileErr // 404 for an unknown profile, or the bus error
	}
	// The page is assembled by hand around the profile's JSON as the
	// profile service sent it: encoding a Page would parse it all again.
	b := make([]byte, 0, len(profile)+80)
	b = append(append(b, `{"profile":`...), profile...)
	var missing []string
	if visitsErr == nil {
		b = strconv.AppendInt(append(b, `,"visits":`...), int64(visitCount.Count), 10)
	} else {
		missing = append(missing, `"visits"`)
	}
	if flirtsErr == nil {
		b = strconv.AppendInt(append(b, `,"flirts":`...), int64(flirtCount.Count), 10)
	} else {
		missing = append(missing, `"flirts"`)
	}
	if len(missing) > 0 {
		b = append(append(append(b, `,"missing":[`...), strings.Join(missing, ",")...), ']')
	}
	rep := nanobus.Reply{Body: append(b, '}')}
	rep.Header.Add("Content-Type", "application/json")
	return rep, nil
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

// bothExist checks, in parallel, that the two profiles exist: 404 names
// the first that does not.
func (a *aggregator) bothExist(ctx context.Context, id, other string) error {
	if !store.ValidID(other) {
		return nanobus.Errorf(400, "bad profile id %q", other)
	}
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i, p := range []string{id, other} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, errs[i] = a.callRaw(ctx, profiles.Service, profiles.RouteGet, []byte(p))
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// count asks service for profile id's count.
func (a *aggregator) count(ctx context.Context, service, route, id string) (tally.Count, error) {
	_, raw, err := a.callRaw(ctx, service, route, []byte(id))
	if err != nil {
		return tally.Count{}, err
	}
	return tally.ParseCount(raw)
}

// callRaw is call with the 2xx reply's status and body as they came (the
// body copied out of the frame, which is released on return).
func (a *aggregator) callRaw(ctx context.Context, service, route string, body []byte) (int, []byte, error) {
	resp, err := a.n.Call(ctx, service, route, body)
	if err != nil {
		return 0, nil, fmt.Errorf("%s: %w", service, err) // answered as nanobus.StatusOf says
	}
	defer resp.Release()
	if resp.Status/100 != 2 {
		return 0, nil, &nanobus.StatusError{Status: resp.Status, Message: string(resp.Body)}
	}
	return resp.Status, append([]byte(nil), resp.Body...), nil
}

// forward makes one call and answers with its reply as it is.
func (a *aggregator) forward(ctx context.Context, service, route string, body []byte) (nanobus.Reply, error) {
	status, raw, err := a.callRaw(ctx, service, route, body)
	if err != nil {
		return nanobus.Reply{}, err
	}
	rep := nanobus.Reply{Status: status, Body: raw}
	rep.Header.Add("Content-Type", "application/json")
	return rep, nil
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
	dl, ok := ctx.Deadline()
	if !ok {
		return time.Now().Add(time.Second)
	}
	return time.Now().Add(time.Duration(float64(time.Until(dl)) * share))
}
