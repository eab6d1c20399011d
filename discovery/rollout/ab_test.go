package rollout_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/nanobus/policy"
)

// shop answers which variant of the experiment "checkout" the request's
// client is in, as the handler sees it.
func shop(n *nanobus.Node) error {
	return n.Handle("GET /shop", func(_ context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		return nanobus.Reply{Body: []byte("variant=" + req.Variant("checkout"))}, nil
	})
}

// An A/B split is sticky (a client's cookie always lands on one variant,
// whose version answers), the front sets the cookie for a client without
// one, the variant reaches the handler, and new clients split as the
// percentages say: with 50/50, the count of one variant among n new
// clients is Binomial(n, 0.5) (the cookie is random, its hash uniform),
// and the test accepts its exact central 99.99% interval.
func TestABSplitIsStickyAndReachesTheHandler(t *testing.T) {
	c := newCluster(t)
	front := c.start("front", "f1")
	c.service("shop", "v1", shop)
	c.service("shop", "v2", shop)
	waitInstances(t, front, "shop", "v1", "v2")
	out := c.run("rollout", "ab", "shop", "checkout", "old=v1:50", "new=v2:50", "-by", "cookie:shopper")
	if !strings.Contains(out, "ab       checkout by cookie:shopper: old=v1:50 new=v2:50") {
		t.Fatalf("ab printed:\n%s", out)
	}
	waitApplied(t, front, "shop", func(p *policy.Policy) bool { return p != nil && p.AB != nil })

	url := frontURL(front, "/shop")
	versionOf := map[string]string{"old": "v1", "new": "v2"}
	const n = 1000
	counts := map[string]int{}
	var cookie string
	for range n {
		r := get(url) // a new client: no cookie
		var set *http.Cookie
		for _, ck := range (&http.Response{Header: r.header}).Cookies() {
			if ck.Name == "shopper" {
				set = ck
			}
		}
		variant := strings.TrimPrefix(r.body, "variant=")
		if r.status != 200 || set == nil || set.Value == "" || versionOf[variant] != r.version {
			t.Fatalf("new client: %d %q from %q, Set-Cookie %v", r.status, r.body, r.version, r.header.Values("Set-Cookie"))
		}
		counts[variant]++
		cookie = set.Value
	}
	lo, hi := binomialInterval(n, 0.5, 0.9999)
	t.Logf("%d new clients: %v; 99.99%% interval of each [%d, %d]", n, counts, lo, hi)
	if counts["new"] < lo || counts["new"] > hi {
		t.Fatalf("variant new got %d of %d new clients: outside [%d, %d]", counts["new"], n, lo, hi)
	}

	first := ""
	for i := range 100 {
		r := get(url, "Cookie", "shopper="+cookie)
		if i == 0 {
			first = r.body + " " + r.version
		}
		if got := r.body + " " + r.version; r.status != 200 || got != first || len(r.header.Values("Set-Cookie")) > 0 {
			t.Fatalf("request %d with cookie %s: %d %q (first: %q), Set-Cookie %q", i, cookie, r.status, got, first, r.header.Values("Set-Cookie"))
		}
	}
	t.Logf("cookie %s: 100 of 100 on %q", cookie, first)
}
