package profiles_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/services/profiles"
	"github.com/terminator-gw/terminator/services/servicetest"
	"github.com/terminator-gw/terminator/services/store"
	"github.com/terminator-gw/terminator/services/store/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func newNode(t *testing.T, service string) *nanobus.Node {
	t.Helper()
	n, err := nanobus.NewNode(nanobus.Config{Service: service, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// caller returns a node that reaches profiles only through instance.
func caller(t *testing.T, ctx context.Context, instance *nanobus.Node) *nanobus.Node {
	t.Helper()
	c := newNode(t, "")
	c.AddPeer(nanobus.Peer{Service: profiles.Service, Addr: instance.Addr()})
	if err := c.WaitReady(ctx, profiles.Service); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestInstancesShareOnePostgres: two profiles instances over one
// PostgreSQL serve the same data, as a fleet's instances (or two versions
// in a rollout) do: a profile put through one is read through the other.
func TestInstancesShareOnePostgres(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	url := pgtest.NewDatabase(t)
	var instances [2]*nanobus.Node
	for i := range instances {
		st, err := store.Open(ctx, url, profiles.Service)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() }) // after the node's: cleanups run last first
		instances[i] = newNode(t, profiles.Service)
		profiles.Register(instances[i], st, servicetest.Bus(t, instances[i], st))
	}
	viaA, viaB := caller(t, ctx, instances[0]), caller(t, ctx, instances[1])

	put, err := viaA.Call(ctx, profiles.Service, profiles.RoutePut,
		[]byte(`{"id":"ann","name":"Ann","age":31,"city":"Lyon"}`))
	if err != nil {
		t.Fatal(err)
	}
	if put.Status != 201 {
		t.Fatalf("put through A: status %d: %s", put.Status, put.Body)
	}
	put.Release()

	get, err := viaB.Call(ctx, profiles.Service, profiles.RouteGet, []byte("ann"))
	if err != nil {
		t.Fatal(err)
	}
	defer get.Release()
	var p profiles.Profile
	if get.Status != 200 || json.Unmarshal(get.Body, &p) != nil || p.Name != "Ann" || p.City != "Lyon" {
		t.Fatalf("get through B: status %d: %s", get.Status, get.Body)
	}
}
