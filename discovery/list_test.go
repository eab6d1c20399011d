package discovery

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/terminator-gw/terminator/nanobus/events"
)

// List reads every registration under its prefix, with its events
// declaration, sorted; a value that does not parse is left out and named.
func TestList(t *testing.T) {
	e := startEtcd(t)
	cli := client(t, e.Endpoints()...)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	decl := &events.Declaration{
		Publishes:  []events.Publication{{Topic: "profile.visited", Routes: []string{"visits.record"}}},
		Subscribes: []events.Subscription{{Topic: "flirt.sent", From: "flirts", Group: "g"}},
	}
	for _, reg := range []Registration{
		{Service: "visits", Node: "2", Addr: "tcp://127.0.0.1:2", Events: decl},
		{Service: "visits", Node: "1", Addr: "tcp://127.0.0.1:1"},
		{Service: "flirts", Node: "3", Addr: "tcp://127.0.0.1:3"},
	} {
		r, err := Register(ctx, cli, reg, RegisterOptions{TTL: ttl, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
	}
	// Another prefix's registration is not listed.
	other, err := Register(ctx, cli, Registration{Service: "x", Node: "9", Addr: "tcp://127.0.0.1:9"}, RegisterOptions{Prefix: "/other", TTL: ttl, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })

	for _, tt := range []struct {
		name, prefix string
		want         []string // service/node
	}{
		{"default prefix", "", []string{"flirts/3", "visits/1", "visits/2"}},
		{"named prefix, trailing slash", "/other/", []string{"x/9"}},
		{"nothing there", "/none", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			regs, err := List(ctx, cli, tt.prefix)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range regs {
				got = append(got, r.Service+"/"+r.Node)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("List(%q) = %q, want %q", tt.prefix, got, tt.want)
			}
		})
	}

	regs, _ := List(ctx, cli, "")
	if got := regs[2].Events; !reflect.DeepEqual(got, decl) {
		t.Errorf("visits/2 events = %+v, want %+v", got, decl)
	}

	if _, err := cli.Put(ctx, DefaultPrefix+"/services/broken/7", "{not json"); err != nil {
		t.Fatal(err)
	}
	regs, err = List(ctx, cli, "")
	if err == nil || !strings.Contains(err.Error(), "/services/broken/7") {
		t.Errorf("List with a bad value: err = %v, want it named", err)
	}
	if len(regs) != 3 {
		t.Errorf("List with a bad value: %d registrations, want the 3 good ones", len(regs))
	}
}
