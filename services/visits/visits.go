// Package visits is the visit service: record a visit to a profile, count
// and list recent visitors.
package visits

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/services/store"
)

// Service is the name visits registers under.
const Service = "visits"

// Internal routes.
const (
	RouteRecord = "visits.record" // body: Visit; answers Count
	RouteCount  = "visits.count"  // body: profile ID; answers Count
	RouteList   = "visits.list"   // body: ListRequest; answers Visitors
)

// Visit is one member looking at another's profile.
type Visit struct {
	Profile string    `json:"profile"`
	Visitor string    `json:"visitor"`
	At      time.Time `json:"at"`
}

// Count is a number of visits.
type Count struct {
	Count int `json:"count"`
}

// ListRequest asks for the most recent visitors of a profile.
type ListRequest struct {
	Profile string `json:"profile"`
	Limit   int    `json:"limit"` // default and maximum 100
}

// Visitors are the most recent visits, newest first.
type Visitors struct {
	Visits []Visit `json:"visits"`
}

// Register adds the visit service's handlers to n, storing in s.
func Register(n *nanobus.Node, s *store.Store) {
	var mu sync.Mutex // counters are read-modify-write
	n.Handle(RouteRecord, func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		var v Visit
		if err := json.Unmarshal(req.Body, &v); err != nil {
			return nanobus.Reply{}, nanobus.Errorf(400, "visit: %v", err)
		}
		if !store.ValidID(v.Profile) || !store.ValidID(v.Visitor) {
			return nanobus.Reply{}, nanobus.Errorf(400, "visit: bad profile or visitor id")
		}
		if v.Profile == v.Visitor {
			return nanobus.Reply{}, nanobus.Errorf(400, "visit: a profile does not visit itself")
		}
		v.At = time.Now().UTC()
		mu.Lock()
		defer mu.Unlock()
		var c Count
		if _, err := s.Get("n/"+v.Profile, &c); err != nil {
			return nanobus.Reply{}, err
		}
		c.Count++
		b := s.Batch()
		b.Put(visitKey(v), v)
		b.Put("n/"+v.Profile, c)
		if err := b.Commit(); err != nil {
			return nanobus.Reply{}, err
		}
		return nanobus.JSON(200, c)
	})
	n.Handle(RouteCount, func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		id := string(req.Body)
		if !store.ValidID(id) {
			return nanobus.Reply{}, nanobus.Errorf(400, "bad profile id %q", id)
		}
		var c Count
		if _, err := s.Get("n/"+id, &c); err != nil {
			return nanobus.Reply{}, err
		}
		return nanobus.JSON(200, c)
	})
	n.Handle(RouteList, func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		var lr ListRequest
		if err := json.Unmarshal(req.Body, &lr); err != nil || !store.ValidID(lr.Profile) {
			return nanobus.Reply{}, nanobus.Errorf(400, "list: want {\"profile\": id, \"limit\": n}")
		}
		if lr.Limit <= 0 || lr.Limit > 100 {
			lr.Limit = 100
		}
		list, err := store.List[Visit](s, "v/"+lr.Profile+"/", lr.Limit)
		if err != nil {
			return nanobus.Reply{}, err
		}
		return nanobus.JSON(200, Visitors{Visits: list})
	})
}

// visitKey orders a profile's visits newest first: the time is inverted.
func visitKey(v Visit) string {
	return fmt.Sprintf("v/%s/%019d/%s", v.Profile, math.MaxInt64-v.At.UnixNano(), strings.ToLower(v.Visitor))
}
