// Package flirts is the flirt service: send a flirt, list the flirts a
// profile received.
package flirts

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/nanobus/events"
	"github.com/terminator-gw/terminator/services/store"
	"github.com/terminator-gw/terminator/services/tally"
)

// Service is the name flirts registers under.
const Service = "flirts"

// Internal routes.
const (
	RouteSend  = "flirts.send"  // body: Flirt; answers Count (201), 409 if already sent
	RouteCount = "flirts.count" // body: profile ID; answers Count
	RouteList  = "flirts.list"  // body: ListRequest; answers Received
)

// TopicSent is the event of a flirt sent: key the profile flirted with,
// body the Flirt.
const TopicSent = "flirt.sent"

// Flirt is one member's flirt with another.
type Flirt struct {
	From    string    `json:"from"`
	To      string    `json:"to"`
	Message string    `json:"message"`
	At      time.Time `json:"at"`
}

// Count is a number of flirts received.
type Count = tally.Count

// ListRequest asks for the flirts a profile received.
type ListRequest = tally.ListRequest

// Received are the flirts a profile received.
type Received struct {
	Flirts []Flirt `json:"flirts"`
}

// Register adds the flirt service's handlers to n, storing in s and
// publishing on ev.
func Register(n *nanobus.Node, s store.Store, ev *events.Bus) error {
	t, err := tally.New(s, ev, "f", TopicSent, RouteSend)
	if err != nil {
		return err
	}
	add := n.Handle(RouteSend, func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		var f Flirt
		if err := json.Unmarshal(req.Body, &f); err != nil {
			return nanobus.Reply{}, nanobus.Errorf(400, "flirt: %v", err)
		}
		switch {
		case !store.ValidID(f.From) || !store.ValidID(f.To):
			return nanobus.Reply{}, nanobus.Errorf(400, "flirt: bad from or to id")
		case f.From == f.To:
			return nanobus.Reply{}, nanobus.Errorf(400, "flirt: not with oneself")
		case utf8.RuneCountInString(f.Message) > 500:
			return nanobus.Reply{}, nanobus.Errorf(400, "flirt: message at most 500 characters")
		}
		f.Message = strings.TrimSpace(f.Message)
		f.At = time.Now().UTC()
		c, added, err := t.Add(ctx, f.To, f.From, f, true) // one flirt per pair
		if err != nil {
			return nanobus.Reply{}, err
		}
		if !added {
			return nanobus.Reply{}, nanobus.Errorf(409, "%s already flirted with %s", f.From, f.To)
		}
		return nanobus.JSON(201, c)
	})
	return errors.Join(add, t.HandleCount(n, RouteCount),
		tally.HandleList(n, RouteList, t, func(l []Flirt) any { return Received{Flirts: l} }))
}
