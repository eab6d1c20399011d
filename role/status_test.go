package role

import (
	"strings"
	"testing"
	"time"

	"github.com/terminator-gw/terminator/nanobus/events"
	"github.com/terminator-gw/terminator/nanobus/report"
)

// The node section renders every table it has, with data in each: a
// template that names a field the status lacks fails only when it runs.
func TestNodePageRendersEveryTable(t *testing.T) {
	st := nodeStatus{Service: "web", Version: "v1", Addr: "tcp://127.0.0.1:1",
		Routes: []report.RouteStats{{Route: "GET /page", Requests: 3, Cancelled: 1}},
		Peers:  map[string][]report.PeerState{"profiles": {{Addr: "tcp://127.0.0.1:2", Ready: true}}},
		Ghosts: []report.GhostStats{{Service: "profiles", Route: "profiles.get", Ghosted: 1}},
		Hedges: []report.HedgeStats{{Service: "profiles", Route: "profiles.get", Calls: 100, Hedged: 5, Won: 4, P95: 3 * time.Millisecond}},
		Limit:  8,
		Events: &events.Stats{Published: 7, Parked: 1, Subscriptions: []events.SubscriptionStats{{
			Subscription: events.Subscription{Topic: "profile.visited", From: "visits", Group: "notifications"},
			Reading:      true, Position: "[0 3 0 0 0 0 0 0]", Lag: 2, Patients: 1}}}}
	var b strings.Builder
	if err := nodePage.Execute(&b, st); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"hedged route", "<td>profiles profiles.get</td><td>100</td><td>5</td><td>4</td><td>0</td><td>3ms</td>", "ghosted route", "handlers cancelled",
		"<td>7</td>", "<td>notifications / visits / profile.visited</td><td><span class=\"ok\">yes</span></td><td>[0 3 0 0 0 0 0 0]</td><td>2</td>\n<td><b class=\"bad\">1</b></td>"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("the page lacks %q:\n%s", want, b.String())
		}
	}
}
