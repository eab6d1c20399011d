// Package flirts is the flirt service: send a flirt, list the flirts a
// profile received.
package flirts

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/services/store"
)

// Service is the name flirts registers under.
const Service = "flirts"

// Internal routes.
const (
	RouteSend  = "flirts.send"  // body: Flirt; answers Count (201), 409 if already sent
	RouteCount = "flirts.count" // body: profile ID; answers Count
	RouteList  = "flirts.list"  // body: ListRequest; answers Received
)

// Flirt is one member's flirt with another.
type Flirt struct {
	From    string    `json:"from"`
	To      string    `json:"to"`
	Message string    `json:"message"`
	At      time.Time `json:"at"`
}

// Count is a number of flirts received.
type Count struct {
	Count int `json:"count"`
}

// ListRequest asks for the flirts a profile received.
type ListRequest struct {
	Profile string `json:"profile"`
	Limit   int    `json:"limit"` // default and maximum 100
}

// Received are the flirts a profile received.
type Received struct {
	Flirts []Flirt `json:"flirts"`
}

// Register adds the flirt service's handlers to n, storing in s.
func Register(n *nanobus.Node, s *store.Store) {
	var mu sync.Mutex // the conflict check and the counter are read-modify-write
	n.Handle(RouteSend, func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
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
		key := "f/" + f.To + "/" + f.From
		mu.Lock()
		defer mu.Unlock()
		var old Flirt
		exists, err := s.Get(key, &old)
		if err != nil {
			return nanobus.Reply{}, err
		}
		if exists {
			return nanobus.Reply{}, nanobus.Errorf(409, "%s already flirted with %s", f.From, f.To)
		}
		var c Count
		if _, err := s.Get("n/"+f.To, &c); err != nil {
			return nanobus.Reply{}, err
		}
		c.Count++
		b := s.Batch()
		b.Put(key, f)
		b.Put("n/"+f.To, c)
		if err := b.Commit(); err != nil {
			return nanobus.Reply{}, err
		}
		return nanobus.JSON(201, c)
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
		list, err := store.List[Flirt](s, "f/"+lr.Profile+"/", lr.Limit)
		if err != nil {
			return nanobus.Reply{}, err
		}
		return nanobus.JSON(200, Received{Flirts: list})
	})
}
