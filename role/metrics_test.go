package role

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape reads /metrics of the admin listener at addr with the text
// parser Prometheus uses.
func scrape(t *testing.T, addr, token string) map[string]*dto.MetricFamily {
	t.Helper()
	status, h, body := get(t, addr, "/metrics", token)
	if status != 200 {
		t.Fatalf("/metrics: %d %.300s", status, body)
	}
	if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("/metrics Content-Type %q, want the text format", ct)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v\n%.2000s", err, body)
	}
	return fams
}

// seriesOf finds the one series of family name whose labels include want.
func seriesOf(t *testing.T, fams map[string]*dto.MetricFamily, name string, want map[string]string) *dto.Metric {
	t.Helper()
	f := fams[name]
	if f == nil {
		t.Fatalf("no %s in /metrics", name)
	}
	var found []*dto.Metric
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		ok := true
		for k, v := range want {
			ok = ok && labels[k] == v
		}
		if ok {
			found = append(found, m)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d series of %s with labels %v, want 1: %v", len(found), name, want, f.GetMetric())
	}
	return found[0]
}

// Real traffic through a real front and its services ("all", on a real
// etcd), then /metrics over HTTP, parsed as Prometheus parses it: the
// route's answers and latency at the front, the bus's counters and the
// services' handlers, each node told apart, and the hospital.
func TestMetricsAfterTraffic(t *testing.T) {
	endpoints, _ := etcdFor(t)
	cfg := testConfig(t, endpoints)
	cfg.Front.Listen = "127.0.0.1:0"
	p := startRole(t, "all", cfg)
	eventually(t, "readiness", func() bool { return ready(p) })

	client := &http.Client{Timeout: 5 * time.Second}
	statuses := map[int]int{}
	getEcho := func() int {
		resp, err := client.Get("http://" + p.FrontAddr() + "/echo")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		statuses[resp.StatusCode]++
		return resp.StatusCode
	}
	eventually(t, "GET /echo answered 200", func() bool { return getEcho() == 200 })
	const more = 25
	for range more {
		getEcho()
	}
	if resp, err := client.Get("http://" + p.FrontAddr() + "/no/such/route"); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
	}

	fams := scrape(t, p.AdminAddr(), "")
	value := func(name string, labels map[string]string) float64 {
		m := seriesOf(t, fams, name, labels)
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		}
		t.Fatalf("%s %v is neither a counter nor a gauge", name, labels)
		return 0
	}
	echo := map[string]string{"route": "GET /echo", "service": "echo"}
	if got := value("terminator_http_requests_total", map[string]string{"route": "GET /echo", "class": "2xx"}); got != float64(statuses[200]) {
		t.Errorf("terminator_http_requests_total for GET /echo 2xx = %v, want the %d 200s the client got (all: %v)", got, statuses[200], statuses)
	}
	// Every answer the route gave (404s came before the front knew it).
	answered := 0
	for code, n := range statuses {
		if code != 404 {
			answered += n
		}
	}
	h := seriesOf(t, fams, "terminator_http_request_duration_seconds", echo).GetHistogram()
	if h.GetSampleCount() != uint64(answered) || h.GetSampleSum() <= 0 {
		t.Errorf("latency histogram of GET /echo: count %d sum %v, want %d answers and a positive sum", h.GetSampleCount(), h.GetSampleSum(), answered)
	}
	buckets := h.GetBucket() // the text format's +Inf bucket included
	if len(buckets) != len(latencyBounds)+1 || buckets[len(buckets)-2].GetCumulativeCount() != uint64(answered) {
		t.Errorf("latency buckets %v: want %d and +Inf, the last under 30s holding every answer", buckets, len(latencyBounds))
	}
	for i := 1; i < len(buckets); i++ {
		if buckets[i].GetCumulativeCount() < buckets[i-1].GetCumulativeCount() || buckets[i].GetUpperBound() <= buckets[i-1].GetUpperBound() {
			t.Errorf("latency buckets not cumulative: %v", buckets)
		}
	}
	if got := value("terminator_http_refused_total", map[string]string{"reason": "no_route"}); got < 1 {
		t.Errorf("terminator_http_refused_total{reason=no_route} = %v, want the 404 counted", got)
	}
	for _, m := range fams["terminator_http_refused_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "reason" && strings.HasPrefix(l.GetValue(), "access_log") {
				t.Errorf("access log lines counted as refusals: %v", m)
			}
		}
	}
	if got := value("terminator_http_access_log_lines_total", map[string]string{"outcome": "written"}); got < 1 {
		t.Errorf("terminator_http_access_log_lines_total{outcome=written} = %v, want the 404's line", got)
	}
	if got := value("terminator_http_limit", nil); got <= 0 {
		t.Errorf("terminator_http_limit = %v, want the admission limit", got)
	}
	if got := value("terminator_bus_calls_total", map[string]string{"node": "terminator"}); got < float64(statuses[200]) {
		t.Errorf("the front node's terminator_bus_calls_total = %v, want at least %d", got, statuses[200])
	}
	if got := value("terminator_handler_requests_total", map[string]string{"node": "echo", "route": "GET /echo"}); got < float64(statuses[200]) {
		t.Errorf("echo's terminator_handler_requests_total = %v, want at least %d", got, statuses[200])
	}
	if hh := seriesOf(t, fams, "terminator_handler_duration_seconds", map[string]string{"node": "echo", "route": "GET /echo"}).GetHistogram(); hh.GetSampleCount() < uint64(statuses[200]) {
		t.Errorf("echo's handler histogram counts %d, want at least %d", hh.GetSampleCount(), statuses[200])
	}
	if got := value("terminator_bus_dropped_total", map[string]string{"node": "echo", "reason": "malformed"}); got != 0 {
		t.Errorf("echo dropped %v malformed frames, want 0", got)
	}
	if got := value("terminator_bus_instances", map[string]string{"node": "terminator", "service": "echo", "state": "connected"}); got != 1 {
		t.Errorf("the front sees %v connected echo instances, want 1", got)
	}
	if got := value("terminator_registered", map[string]string{"node": "echo"}); got != 1 {
		t.Errorf("terminator_registered{node=echo} = %v, want 1", got)
	}
	// Each node of the process reports apart.
	var nodes []string
	for _, m := range fams["terminator_node_info"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "node" {
				nodes = append(nodes, l.GetValue())
			}
		}
	}
	slices.Sort(nodes)
	if want := []string{"echo", "flirts", "notifications", "profiles", "terminator", "visits", "web"}; !slices.Equal(nodes, want) {
		t.Errorf("terminator_node_info nodes %v, want %v", nodes, want)
	}
	// The hospital: notifications subscribes, nothing is parked.
	f := fams["terminator_events_hospital_patients"]
	if f == nil || len(f.GetMetric()) == 0 {
		t.Fatal("no terminator_events_hospital_patients in /metrics")
	}
	for _, m := range f.GetMetric() {
		if m.GetGauge().GetValue() != 0 {
			t.Errorf("hospital patients %v: want 0", m)
		}
	}
	if _, ok := fams["go_goroutines"]; !ok {
		t.Error("no Go runtime metrics")
	}
	if _, ok := fams["etcd_server_has_leader"]; ok {
		t.Error("/metrics shows the embedded etcd's metrics from the global registry: want the process's own only")
	}

	// What the shipped dashboard and alert rules query exists in a real
	// scrape (families without data, such as ghosts, are not used there).
	for _, file := range []string{"../deploy/grafana/terminator.json", "../deploy/prometheus/alerts.yml"} {
		names := queriedMetrics(t, file)
		if len(names) == 0 {
			t.Errorf("%s queries no terminator metric", file)
		}
		for _, name := range names {
			if fams[name] == nil {
				t.Errorf("%s queries %s, which /metrics does not have", file, name)
			}
		}
	}
}

var metricName = regexp.MustCompile(`\bterminator_[a-z_]+`)

// queriedMetrics lists the metric families file's queries name (a
// histogram's _bucket, _sum and _count series by their family). The
// dashboard must be valid JSON with a query in every panel.
func queriedMetrics(t *testing.T, file string) []string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var exprs []string
	if strings.HasSuffix(file, ".json") {
		var dash struct {
			Title  string `json:"title"`
			Panels []struct {
				Title   string `json:"title"`
				Type    string `json:"type"`
				Targets []struct {
					Expr string `json:"expr"`
				} `json:"targets"`
			} `json:"panels"`
		}
		if err := json.Unmarshal(b, &dash); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if dash.Title == "" || len(dash.Panels) == 0 {
			t.Fatalf("%s: no title or no panels", file)
		}
		for _, p := range dash.Panels {
			if p.Type == "row" {
				continue
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s: panel %q has no query", file, p.Title)
			}
			for _, tg := range p.Targets {
				exprs = append(exprs, tg.Expr)
			}
		}
	} else {
		exprs = []string{string(b)}
	}
	var out []string
	for _, e := range exprs {
		for _, name := range metricName.FindAllString(e, -1) {
			if strings.HasSuffix(name, "_bucket") || strings.HasSuffix(name, "_count") || strings.HasSuffix(name, "_sum") {
				name = name[:strings.LastIndexByte(name, '_')]
			}
			if !slices.Contains(out, name) {
				out = append(out, name)
			}
		}
	}
	return out
}

// /metrics is guarded as status.json is: open on a loopback listener
// without a token; with the admin token set (as it must be off loopback),
// refused without a token, open with the admin token or the scrape token,
// and the scrape token opens nothing else.
func TestMetricsGuard(t *testing.T) {
	dir := t.TempDir()
	scrapeFile := dir + "/scrape"
	if err := os.WriteFile(scrapeFile, []byte("scrape-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	open := startAdmin(t, AdminConfig{Listen: "127.0.0.1:0"})
	if status, _, body := get(t, open.Addr(), "/metrics", ""); status != 200 || !strings.Contains(body, "terminator_admin_connections ") {
		t.Errorf("/metrics on loopback without a token: %d %.200s, want 200 with the admin's metrics", status, body)
	}
	guarded := startAdmin(t, AdminConfig{Listen: "127.0.0.1:0", Token: "admin-token", MetricsTokenFile: scrapeFile})
	for _, tt := range []struct {
		name, path, bearer string
		basic              []string
		want               int
	}{
		{"no token", "/metrics", "", nil, 401},
		{"wrong token", "/metrics", "nope", nil, 401},
		{"admin token", "/metrics", "admin-token", nil, 200},
		{"scrape token", "/metrics", "scrape-token", nil, 200},
		{"scrape token, basic auth", "/metrics", "", []string{"prometheus", "scrape-token"}, 200},
		{"scrape token on status.json", "/status.json", "scrape-token", nil, 401},
		{"scrape token on pprof", "/debug/pprof/", "scrape-token", nil, 401},
	} {
		status, h, _ := get(t, guarded.Addr(), tt.path, tt.bearer, tt.basic...)
		if status != tt.want {
			t.Errorf("%s: %s answered %d, want %d", tt.name, tt.path, status, tt.want)
		}
		if status == 401 && h.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: 401 without WWW-Authenticate", tt.name)
		}
	}
	if _, err := NewAdmin(AdminConfig{Listen: "0.0.0.0:0", MetricsToken: "scrape-only"}, quiet); err == nil {
		t.Error("an admin listener off loopback with only a scrape token started: want the admin token required")
	}
	if _, err := NewAdmin(AdminConfig{Listen: "127.0.0.1:0", MetricsTokenFile: dir + "/missing"}, quiet); err == nil ||
		!strings.Contains(err.Error(), "metrics token") {
		t.Errorf("a missing -metrics-token-file: %v, want an error naming the metrics token", err)
	}
}

// The scrape token comes from its flags or their environment variables,
// in every role.
func TestMetricsTokenFlags(t *testing.T) {
	t.Setenv("TERMINATOR_METRICS_TOKEN", "from-env")
	t.Setenv("TERMINATOR_METRICS_TOKEN_FILE", "/run/secrets/scrape")
	for _, role := range []string{"all", "front", "echo"} {
		fs, c, out := flags(role)
		if err := Parse(fs, nil); err != nil {
			t.Fatalf("%s: %v", role, err)
		}
		if c.Admin.MetricsToken != "from-env" || c.Admin.MetricsTokenFile != "/run/secrets/scrape" {
			t.Errorf("%s: metrics token %q, file %q, want them from the environment", role, c.Admin.MetricsToken, c.Admin.MetricsTokenFile)
		}
		fs.PrintDefaults()
		if help := out.String(); !strings.Contains(help, "TERMINATOR_METRICS_TOKEN_FILE") || strings.Contains(help, "from-env") {
			t.Errorf("%s -h: want the scrape token's variables named and its value never shown:\n%s", role, help)
		}
	}
}
