// Package visits is the visit service: record a visit to a profile, count
// and list recent visitors.
package visits

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/nanobus/events"
	"github.com/terminator-gw/terminator/services/store"
	"github.com/terminator-gw/terminator/services/tally"
)

// Service is the name visits registers under.
const Service = "visits"

// Internal routes.
const (
	RouteRecord = "visits.record" // body: Visit; answers Count
	RouteCount  = "visits.count"  // body: profile ID; answers Count
	RouteList   = "visits.list"   // body: ListRequest; answers Visitors
)

// TopicVisited is the event of a visit recorded: key the profile visited,
// body the Visit.
const TopicVisited = "profile.visited"

// Visit is one member looking at another's profile.
type Visit struct {
	Profile string    `json:"profile"`
	Visitor string    `json:"visitor"`
	At      time.Time `json:"at"`
}

// Count is a number of visits.
type Count = tally.Count

// ListRequest asks for the most recent visitors of a profile.
type ListRequest = tally.ListRequest

// Visitors are the most recent visits, newest first.
type Visitors struct {
	Visits []Visit `json:"visits"`
}

// Register adds the visit service's handlers to n, storing in s and
// publishing on ev.
func Register(n *nanobus.Node, s store.Store, ev *events.Bus) error {
	t, err := tally.New(s, ev, "v", TopicVisited, RouteRecord)
	if err != nil {
		return err
	}
	add := n.Handle(RouteRecord, func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
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
		// Newest first: the time in the key is inverted.
		c, _, err := t.Add(ctx, v.Profile, fmt.Sprintf("%019d/%s", math.MaxInt64-v.At.UnixNano(), v.Visitor), v, false)
		if err != nil {
			return nanobus.Reply{}, err
		}
		return nanobus.JSON(200, c)
	})
	return errors.Join(add, t.HandleCount(n, RouteCount),
		tally.HandleList(n, RouteList, t, func(l []Visit) any { return Visitors{Visits: l} }))
}
