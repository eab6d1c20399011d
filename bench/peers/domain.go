package peers

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/terminator-gw/terminator/services/notifications"
	"github.com/terminator-gw/terminator/services/profiles"
	"github.com/terminator-gw/terminator/services/store"
)

// Roles a peers process can play. The domain roles are named as the
// terminator's services are, and open the same store directories.
const (
	RoleWeb      = "web"
	RoleProfiles = profiles.Service
	RoleCounts   = notifications.Service // the counts, the events' projection
)

// DomainRoles are the services the page calls, in the order it calls them.
var DomainRoles = []string{RoleProfiles, RoleCounts}

// routeOf is the one route of each domain service the page uses: the NATS
// subject, and the first path segment over HTTP.
var routeOf = map[string]string{
	RoleProfiles: profiles.RouteGet,
	RoleCounts:   notifications.RouteCounts,
}

// StatusError is a domain service's refusal: the status the page answers
// with and its message.
type StatusError struct {
	Status  int
	Message string
}

func (e *StatusError) Error() string { return fmt.Sprintf("%d %s", e.Status, e.Message) }

// Domain answers the page's reads for one domain role from its store, with
// the work the terminator's services do for the same call.
type Domain struct {
	role string
	s    store.Store
}

// OpenDomain opens the store of role under dir (dir/<role>), as the
// terminator's service of that name does. Close it when done.
func OpenDomain(role, dir string) (*Domain, error) {
	if _, ok := routeOf[role]; !ok {
		return nil, fmt.Errorf("peers: %q is not a domain role (want one of %v)", role, DomainRoles)
	}
	s, err := store.OpenPebble(filepath.Join(dir, role))
	if err != nil {
		return nil, err
	}
	return &Domain{role: role, s: s}, nil
}

// Role is the domain service this answers for.
func (d *Domain) Role() string { return d.role }

// Close closes the store.
func (d *Domain) Close() error { return d.s.Close() }

// Answer serves the role's route for profile id: the profile's stored JSON
// (profiles), or {"visits":n,"flirts":m} (notifications). Refusals are
// *StatusError.
func (d *Domain) Answer(ctx context.Context, id string) ([]byte, error) {
	if !store.ValidID(id) {
		return nil, &StatusError{400, fmt.Sprintf("bad profile id %q", id)}
	}
	if d.role == RoleProfiles {
		// The stored JSON is the answer, as in services/profiles.
		raw, err := d.s.Get(ctx, "p/"+id)
		if errors.Is(err, store.ErrNotFound) {
			return nil, &StatusError{404, "no profile " + id}
		}
		return raw, err
	}
	// The stored counts are the answer, as in services/notifications.
	raw, err := d.s.Get(ctx, "c/"+id)
	if errors.Is(err, store.ErrNotFound) {
		return []byte(`{"visits":0,"flirts":0}`), nil
	}
	return raw, err
}
