package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// prometheusScrapes: the fleet's Prometheus has every terminator process
// (fronts and services, their admin listeners) as a target, each up (it
// scrapes with the scrape token), and what it scraped answers a query: the
// suite's own requests through the fronts.
func prometheusScrapes(t *testing.T, f *fleet) {
	ctx := context.Background()
	addr, err := f.published(ctx, "prometheus", 9090)
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + addr
	var last []promTarget
	err = eventually(ctx, 60*time.Second, "every terminator process up in Prometheus", func() (bool, string) {
		var resp struct {
			Status string `json:"status"`
			Data   struct {
				ActiveTargets []promTarget `json:"activeTargets"`
			} `json:"data"`
		}
		if _, err := getJSON(base+"/api/v1/targets?state=active", &resp); err != nil {
			return false, err.Error()
		}
		last = resp.Data.ActiveTargets
		var missing, down []string
		for _, c := range terminators {
			i := slices.IndexFunc(last, func(tg promTarget) bool { return tg.Labels["instance"] == c+":8081" })
			switch {
			case i < 0:
				missing = append(missing, c)
			case last[i].Health != "up":
				down = append(down, fmt.Sprintf("%s: %s %s", c, last[i].Health, last[i].LastError))
			}
		}
		return len(missing)+len(down) == 0, fmt.Sprintf("not targets: %v; not up: %v", missing, down)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("fleet: Prometheus scrapes %d targets, every terminator process up", len(last))

	// The sample profiles the suite PUT went through the fronts.
	q := base + "/api/v1/query?query=" + url.QueryEscape(`sum(terminator_http_requests_total{job="terminator",class="2xx"})`)
	err = eventually(ctx, 30*time.Second, "Prometheus has the fronts' request counts", func() (bool, string) {
		var resp struct {
			Data struct {
				Result []struct {
					Value []any `json:"value"`
				} `json:"result"`
			} `json:"data"`
		}
		if _, err := getJSON(q, &resp); err != nil {
			return false, err.Error()
		}
		if len(resp.Data.Result) != 1 || len(resp.Data.Result[0].Value) != 2 {
			b, _ := json.Marshal(resp)
			return false, string(b)
		}
		v, _ := resp.Data.Result[0].Value[1].(string)
		return v != "" && v != "0" && !strings.HasPrefix(v, "NaN"), "sum " + v
	})
	if err != nil {
		t.Error(err)
	}
	dashboardQueries(t, base)
}

// dashboardQueries runs every query of the shipped Grafana dashboard
// against the fleet's Prometheus, its variables as Grafana would fill
// them for "all": each must be valid PromQL over what the fleet exports,
// and the request rate per route must have data.
func dashboardQueries(t *testing.T, base string) {
	raw, err := os.ReadFile("../grafana/terminator.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("the dashboard: %v", err)
	}
	fill := strings.NewReplacer(`$__rate_interval`, "1m", `$job`, ".*", `$instance`, ".*")
	var queries, withData int
	for _, p := range dash.Panels {
		for _, target := range p.Targets {
			if target.Expr == "" {
				continue
			}
			queries++
			optional := queries > 1
			var n int
			err := eventually(context.Background(), 30*time.Second, "panel "+p.Title, func() (bool, string) {
				var resp struct {
					Data struct {
						Result []json.RawMessage `json:"result"`
					} `json:"data"`
				}
				if _, err := getJSON(base+"/api/v1/query?query="+url.QueryEscape(fill.Replace(target.Expr)), &resp); err != nil {
					return false, err.Error()
				}
				n = len(resp.Data.Result)
				// The first query (requests per route) must show the suite's
				// requests; the others may be empty on a quiet fleet.
				return optional || n > 0, fmt.Sprintf("%d series", n)
			})
			if err != nil {
				t.Errorf("dashboard panel %q: %s: %v", p.Title, target.Expr, err)
			}
			if n > 0 {
				withData++
			}
		}
	}
	t.Logf("fleet: the dashboard's %d queries are valid against the fleet's Prometheus, %d with data", queries, withData)
}

type promTarget struct {
	Labels    map[string]string `json:"labels"`
	Health    string            `json:"health"`
	LastError string            `json:"lastError"`
}
