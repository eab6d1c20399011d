// Package profiles is the profile service: get and put a dating profile.
package profiles

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/nanobus/events"
	"github.com/terminator-gw/terminator/services/store"
)

// Service is the name profiles registers under.
const Service = "profiles"

// Internal routes.
const (
	RouteGet = "profiles.get" // body: the ID; answers a Profile or 404
	RoutePut = "profiles.put" // body: a Profile; answers it, 201 when new
)

// Profile is one member's public profile.
type Profile struct {
	ID       string    `json:"id"`
	Name     string    `json:"name"`
	Age      int       `json:"age"`
	City     string    `json:"city"`
	Bio      string    `json:"bio"`
	PhotoURL string    `json:"photo_url"`
	Updated  time.Time `json:"updated"`
}

// Validate says what is wrong with p, or nil.
func (p *Profile) Validate() error {
	switch {
	case !store.ValidID(p.ID):
		return nanobus.Errorf(400, "id: 1 to 64 of a-z, 0-9, '-', '_'")
	case strings.TrimSpace(p.Name) == "" || utf8.RuneCountInString(p.Name) > 100:
		return nanobus.Errorf(400, "name: 1 to 100 characters")
	case p.Age < 18 || p.Age > 120:
		return nanobus.Errorf(400, "age: 18 to 120")
	case utf8.RuneCountInString(p.City) > 100:
		return nanobus.Errorf(400, "city: at most 100 characters")
	case utf8.RuneCountInString(p.Bio) > 2000:
		return nanobus.Errorf(400, "bio: at most 2000 characters")
	case p.PhotoURL != "" && !validPhotoURL(p.PhotoURL):
		return nanobus.Errorf(400, "photo_url: an http or https URL of at most 500 characters")
	}
	return nil
}

func validPhotoURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && len(s) <= 500 && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// TopicUpdated is the event of a profile created or changed: key its ID,
// body the Profile.
const TopicUpdated = "profile.updated"

// Register adds the profile service's handlers to n, storing in s and
// publishing on ev.
func Register(n *nanobus.Node, s store.Store, ev *events.Bus) error {
	if err := ev.Declare(TopicUpdated, RoutePut); err != nil {
		return err
	}
	get := n.Handle(RouteGet, func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		id := string(req.Body)
		if !store.ValidID(id) {
			return nanobus.Reply{}, nanobus.Errorf(400, "bad profile id %q", id)
		}
		// The stored JSON is the answer: no decode and encode again.
		raw, err := s.Get(ctx, "p/"+id)
		if errors.Is(err, store.ErrNotFound) {
			return nanobus.Reply{}, nanobus.Errorf(404, "no profile %s", id)
		}
		if err != nil {
			return nanobus.Reply{}, err
		}
		return nanobus.RawJSON(200, raw), nil
	}, nanobus.Idempotent())
	// A put stores the whole profile: running it twice is running it once.
	put := n.Handle(RoutePut, func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		var p Profile
		if err := json.Unmarshal(req.Body, &p); err != nil {
			return nanobus.Reply{}, nanobus.Errorf(400, "profile: %v", err)
		}
		if err := p.Validate(); err != nil {
			return nanobus.Reply{}, err
		}
		p.Updated = time.Now().UTC().Truncate(time.Millisecond)
		var existed bool
		err := ev.Update(ctx, func(tx events.Tx) error {
			var old Profile
			found, err := store.ReadJSON(tx, "p/"+p.ID, &old)
			if existed = found; err != nil {
				return err
			}
			if found {
				stored := old.Updated
				old.Updated = p.Updated
				if old == p {
					p.Updated = stored
					return nil // the same again (a retry, say): no change, no event
				}
			}
			body, err := json.Marshal(p)
			if err != nil {
				return err
			}
			if err := tx.Put("p/"+p.ID, body); err != nil {
				return err
			}
			return ev.Publish(ctx, tx, TopicUpdated, p.ID, body)
		})
		if err != nil {
			return nanobus.Reply{}, err
		}
		status := 200
		if !existed {
			status = 201
		}
		return nanobus.JSON(status, p)
	}, nanobus.Idempotent())
	return errors.Join(get, put)
}
