package rollout_test

import (
	"regexp"
	"strconv"
	"testing"

	"github.com/terminator-gw/terminator/role"
)

// Every reply through the front says which service and version answered
// and how long the handler, the bus round trip and the front took; a
// front started with -server-timing=false says nothing.
func TestServerTimingNamesTheVersionThatAnswered(t *testing.T) {
	c := newCluster(t)
	front := c.start("front", "f1")
	hidden := c.start("front", "f1", func(cfg *role.Config) { cfg.Front.HideServerTiming = true })
	c.start("echo", "v7")
	waitInstances(t, front, "echo", "v7")
	waitInstances(t, hidden, "echo", "v7")

	r := get(frontURL(front, "/echo"))
	if r.status != 200 {
		t.Fatalf("GET /echo: %d %s", r.status, r.body)
	}
	entries := r.header.Values("Server-Timing")
	service := regexp.MustCompile(`^echo;desc="v7";dur=([0-9.]+)$`)
	front2 := regexp.MustCompile(`^bus;dur=([0-9.]+), front;dur=([0-9.]+)$`)
	var handler, bus, total float64
	for _, e := range entries {
		if m := service.FindStringSubmatch(e); m != nil {
			handler, _ = strconv.ParseFloat(m[1], 64)
		} else if m := front2.FindStringSubmatch(e); m != nil {
			bus, _ = strconv.ParseFloat(m[1], 64)
			total, _ = strconv.ParseFloat(m[2], 64)
		} else {
			t.Fatalf("unexpected Server-Timing entry %q (all: %q)", e, entries)
		}
	}
	if len(entries) != 2 || handler <= 0 || bus < handler || total < bus {
		// Each part holds the one before it: the front's time includes the
		// bus round trip, which includes the handler.
		t.Fatalf("Server-Timing %q: handler %v, bus %v, front %v ms", entries, handler, bus, total)
	}
	t.Logf("Server-Timing: %q", entries)

	if r := get(frontURL(hidden, "/echo")); r.status != 200 || len(r.header.Values("Server-Timing")) != 0 {
		t.Fatalf("-server-timing=false: %d, Server-Timing %q", r.status, r.header.Values("Server-Timing"))
	}
}
