package role

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"github.com/terminator-gw/terminator/discovery/rollout"
	"github.com/terminator-gw/terminator/nanobus/histogram"
	"github.com/terminator-gw/terminator/nanobus/report"
)

func TestSeriesRing(t *testing.T) {
	var n uint64
	var h histogram.Recorder
	s := &series{name: "x", read: func() probe {
		return probe{requests: n, errors: n / 10, latency: h.Snapshot(), limit: 7}
	}}
	start := time.Now()
	s.tick(start) // the baseline: no sample
	if got := s.samples(); len(got) != 0 {
		t.Fatalf("after the baseline: %d samples, want 0", len(got))
	}
	for i := 1; i <= samplesKept+5; i++ {
		n += 100
		h.Record(time.Duration(i) * time.Millisecond)
		s.tick(start.Add(time.Duration(i) * time.Second))
	}
	got := s.samples()
	if len(got) != samplesKept {
		t.Fatalf("%d samples kept, want %d", len(got), samplesKept)
	}
	first, last := got[0], got[len(got)-1]
	if want := start.Add(6 * time.Second).UnixMilli(); first.At != want {
		t.Errorf("oldest sample at %d, want %d (the first 5 dropped)", first.At, want)
	}
	if last.Rate != 100 || last.Errors != 10 || last.Limit != 7 {
		t.Errorf("last sample %+v, want rate 100, errors 10, limit 7", last)
	}
	// The latency of that second alone: one sample of 305ms, within the
	// histogram's 12.5%.
	if last.P99 < 266 || last.P99 > 344 {
		t.Errorf("last p99 %.1fms, want about 305ms (the second's own)", last.P99)
	}
	b, _ := json.Marshal(last)
	if !strings.HasPrefix(string(b), "["+strconv.FormatInt(last.At, 10)+",100,10,") {
		t.Errorf("sample as JSON: %s", b)
	}
}

func TestAdminAdvertised(t *testing.T) {
	for _, tt := range []struct{ admin, bus, want string }{
		{"127.0.0.1:8081", "tcp://127.0.0.1:7100", "127.0.0.1:8081"},
		{"0.0.0.0:8081", "tcp://10.0.0.5:7100", "10.0.0.5:8081"},
		{"[::]:8081", "tls+tcp://10.0.0.5:7100", "10.0.0.5:8081"},
		{"0.0.0.0:8081", "garbage", "0.0.0.0:8081"},
	} {
		if got := adminAdvertised(tt.admin, tt.bus); got != tt.want {
			t.Errorf("adminAdvertised(%q, %q) = %q, want %q", tt.admin, tt.bus, got, tt.want)
		}
	}
}

// TestConsoleInChromium loads the console of a real process ("all", with
// a second version of echo in its own process) in a headless Chromium,
// after some traffic, and checks what it shows: charts with points, the
// fleet with both versions and their admin addresses, the ramp; then
// stops the ramp with the console's button and checks etcd. The action
// without the token, or without the console's header, is refused.
func TestConsoleInChromium(t *testing.T) {
	browser := findChromium()
	if browser == "" {
		t.Skip("no chromium found (apt-get install chromium; .ci/run installs it)")
	}
	endpoints, cli := etcdFor(t)
	const token = "console-test-token"
	v2cfg := testConfig(t, endpoints)
	v2cfg.Version = "v2"
	v2 := startRole(t, "echo", v2cfg)
	cfg := testConfig(t, endpoints)
	cfg.Version, cfg.Front.Listen, cfg.Admin.Token = "v1", "127.0.0.1:0", token
	p := startRole(t, "all", cfg)
	eventually(t, "readiness", func() bool { return ready(p) })

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st := rollout.NewStore(cli, "")
	if _, err := st.StartRamp(ctx, "echo", rollout.Ramp{From: "v1", To: "v2", Steps: []int{10, 50, 100},
		Every: rollout.Duration(time.Hour), Bounds: rollout.DefaultBounds}); err != nil {
		t.Fatalf("start a ramp: %v", err)
	}

	// Traffic until the front's series has a second with requests in it.
	client := &http.Client{Timeout: 5 * time.Second}
	admin := "http://" + p.AdminAddr()
	eventually(t, "a front sample with requests", func() bool {
		for range 20 {
			resp, err := client.Get("http://" + p.FrontAddr() + "/echo")
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
		var s struct {
			Series []struct {
				Name    string      `json:"name"`
				Samples [][]float64 `json:"samples"` // at, rate, errors, p50, p99, limit
			} `json:"series"`
		}
		if code, _, body := get(t, p.AdminAddr(), "/status/series.json", token); code != 200 || json.Unmarshal([]byte(body), &s) != nil {
			return false
		}
		for _, ser := range s.Series {
			for _, smp := range ser.Samples {
				if ser.Name == "front" && len(smp) == 6 && smp[1] > 0 {
					return true
				}
			}
		}
		return false
	})

	page := newDevTools(t, browser)
	page.call(t, "Network.enable", nil)
	page.call(t, "Network.setExtraHTTPHeaders", map[string]any{"headers": map[string]string{"Authorization": "Bearer " + token}})
	page.call(t, "Page.navigate", map[string]any{"url": admin + "/"})

	type view struct {
		Updated   string   `json:"updated"`
		Ready     string   `json:"ready"`
		Lines     []string `json:"lines"` // "<chart>/<series>/<points>"
		Fleet     []string `json:"fleet"` // rows' text
		Rollouts  string   `json:"rollouts"`
		StopRamp  int      `json:"stop_ramp"`
		LastError string   `json:"last_error"`
	}
	// Before the page has a body (it is still loading) the answer is {}.
	const look = `!document.body ? "{}" : JSON.stringify({
	updated: document.body.dataset.updated || "",
	ready: (document.getElementById("ready")||{}).textContent || "",
	lines: [...document.querySelectorAll("svg polyline.series[data-points]")].map(l => l.closest("svg").id + "/" + l.dataset.series + "/" + l.dataset.points),
	fleet: [...document.querySelectorAll("#fleet tr")].slice(1).map(r => r.innerText.replace(/\s+/g, " ")),
	rollouts: (document.getElementById("rollouts")||{}).innerText || "",
	stop_ramp: document.querySelectorAll("button.stop-ramp").length,
	last_error: (document.getElementById("updated")||{}).innerText || ""})`
	var v view
	consoleWaitFor(t, "the console to show charts, the fleet and the ramp", func() (bool, string) {
		if err := json.Unmarshal([]byte(page.eval(t, look)), &v); err != nil {
			return false, err.Error()
		}
		front := false
		for _, l := range v.Lines {
			if strings.HasPrefix(l, "svg-rate/front/") && !strings.HasSuffix(l, "/0") {
				front = true
			}
		}
		return v.Updated != "" && front && len(v.Fleet) > 0 && v.StopRamp > 0, fmt.Sprintf("%+v", v)
	})
	if v.Ready != "ready" {
		t.Errorf("the console says %q, want ready", v.Ready)
	}
	for _, chart := range []string{"svg-rate", "svg-errors", "svg-latency", "svg-limit"} {
		found := false
		for _, l := range v.Lines {
			found = found || strings.HasPrefix(l, chart+"/front/")
		}
		if !found {
			t.Errorf("chart %s has no line of the front: %v", chart, v.Lines)
		}
	}
	fleet := strings.Join(v.Fleet, "\n")
	for _, want := range []string{"echo v1", "echo v2", "terminator v1", "profiles v1", p.AdminAddr(), v2.AdminAddr()} {
		if !strings.Contains(fleet, want) {
			t.Errorf("the fleet does not show %q:\n%s", want, fleet)
		}
	}
	if !strings.Contains(v.Rollouts, "v1 → v2 10%") {
		t.Errorf("the rollouts do not show the ramp at 10%%:\n%s", v.Rollouts)
	}

	// Refused without the token, and without the console's header.
	for _, tt := range []struct {
		name, token, header string
		want                int
	}{
		{"no token", "", "1", http.StatusUnauthorized},
		{"wrong token", "nope", "1", http.StatusUnauthorized},
		{"no console header", token, "", http.StatusForbidden},
		{"bad service", token, "1", http.StatusBadRequest},
	} {
		svc := "echo"
		if tt.name == "bad service" {
			svc = "a/b"
		}
		req, _ := http.NewRequest("POST", admin+"/actions/ramp/stop", strings.NewReader(url.Values{"service": {svc}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if tt.token != "" {
			req.Header.Set("Authorization", "Bearer "+tt.token)
		}
		if tt.header != "" {
			req.Header.Set("X-Terminator-Console", tt.header)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("%s: ramp stop answered %d, want %d", tt.name, resp.StatusCode, tt.want)
		}
	}
	if pol, err := st.Policy(ctx, "echo"); err != nil || pol.Ramp == nil || pol.Ramp.State != rollout.RampRunning {
		t.Fatalf("after the refused actions the ramp is %+v (%v), want running", pol, err)
	}

	// The console's button, with the token the browser sends.
	page.eval(t, `document.querySelector('button.stop-ramp[data-service="echo"]').click(), "clicked"`)
	consoleWaitFor(t, "the console's action to be answered", func() (bool, string) {
		s := page.eval(t, `document.body.dataset.lastAction || ""`)
		return s != "", s
	})
	if s := page.eval(t, `document.body.dataset.lastAction + " " + document.getElementById("msg").innerText`); !strings.HasPrefix(s, "200 ") {
		t.Fatalf("the console's ramp stop: %s", s)
	}
	pol, err := st.Policy(ctx, "echo")
	if err != nil || pol.Ramp == nil || pol.Ramp.State != rollout.RampStopped || pol.Weights["v2"] != 10 {
		t.Fatalf("after the console's stop the policy is %+v (%v), want the ramp stopped at v2=10", pol, err)
	}
	// Again: nothing runs now.
	req, _ := http.NewRequest("POST", admin+"/actions/ramp/stop?service=echo", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("X-Terminator-Console", "1")
	if resp, err := client.Do(req); err != nil || resp.StatusCode != http.StatusConflict {
		t.Errorf("a second stop: %v %v, want 409", resp, err)
	} else {
		resp.Body.Close()
	}
}

func findChromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// consoleWaitFor polls cond every 100ms for 20s at most; the last thing cond
// said is in the failure.
func consoleWaitFor(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	var last string
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		var ok bool
		if ok, last = cond(); ok {
			return
		}
	}
	t.Fatalf("timed out after 20s waiting for %s; last seen: %s", what, last)
}

// devTools drives one page of a headless Chromium over the DevTools
// protocol: a command at a time, each answered within 10s.
type devTools struct {
	ws *websocket.Conn
	id int
}

func newDevTools(t *testing.T, browser string) *devTools {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--disable-extensions", "--disable-background-networking", "--remote-debugging-address=127.0.0.1",
		"--remote-debugging-port=0", "--user-data-dir="+dir, "--window-size=1400,1000", "about:blank")
	stderr := &logBuffer{} // written by exec's goroutine, read here
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start %s: %v", browser, err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	// Chromium writes the port it took into the profile directory.
	var port string
	consoleWaitFor(t, "chromium's DevToolsActivePort", func() (bool, string) {
		b, err := os.ReadFile(filepath.Join(dir, "DevToolsActivePort"))
		if err != nil {
			return false, err.Error() + "; " + stderr.String()
		}
		port, _, _ = strings.Cut(string(b), "\n")
		return port != "", string(b)
	})
	var wsURL string
	consoleWaitFor(t, "chromium's page target", func() (bool, string) {
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://127.0.0.1:" + port + "/json/list")
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		var targets []struct{ Type, WebSocketDebuggerURL string }
		if err := json.NewDecoder(resp.Body).Decode(&targets); err != nil {
			return false, err.Error()
		}
		for _, tg := range targets {
			if tg.Type == "page" && tg.WebSocketDebuggerURL != "" {
				wsURL = tg.WebSocketDebuggerURL
				return true, ""
			}
		}
		return false, fmt.Sprintf("%+v", targets)
	})
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	ws, _, err := d.Dial(wsURL, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", wsURL, err)
	}
	t.Cleanup(func() { ws.Close() })
	return &devTools{ws: ws}
}

// call sends a command and returns its result, skipping the events that
// come before it.
func (d *devTools) call(t *testing.T, method string, params any) json.RawMessage {
	t.Helper()
	d.id++
	msg := map[string]any{"id": d.id, "method": method}
	if params != nil {
		msg["params"] = params
	}
	deadline := time.Now().Add(10 * time.Second)
	d.ws.SetWriteDeadline(deadline)
	if err := d.ws.WriteJSON(msg); err != nil {
		t.Fatalf("devtools %s: %v", method, err)
	}
	d.ws.SetReadDeadline(deadline)
	for {
		var resp struct {
			ID     int             `json:"id"`
			Result json.RawMessage `json:"result"`
			Error  *struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := d.ws.ReadJSON(&resp); err != nil {
			t.Fatalf("devtools %s: %v", method, err)
		}
		if resp.ID != d.id {
			continue // an event
		}
		if resp.Error != nil {
			t.Fatalf("devtools %s: %s", method, resp.Error.Message)
		}
		return resp.Result
	}
}

// eval evaluates a JavaScript expression in the page and returns its
// value as a string ("" for undefined).
func (d *devTools) eval(t *testing.T, expr string) string {
	t.Helper()
	raw := d.call(t, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true})
	var r struct {
		Result struct {
			Value any `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text      string `json:"text"`
			Exception struct {
				Description string `json:"description"`
			} `json:"exception"`
		} `json:"exceptionDetails"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatalf("evaluate: %v", err)
	}
	if e := r.ExceptionDetails; e != nil {
		t.Fatalf("evaluate %s: %s %s", expr, e.Text, e.Exception.Description)
	}
	switch v := r.Result.Value.(type) {
	case nil:
		return ""
	case string:
		return v
	default:
		return fmt.Sprint(v)
	}
}

func TestGroupGhosts(t *testing.T) {
	at := time.Date(2026, 12, 5, 22, 0, 0, 0, time.UTC)
	diff := func(sec int, live, ghost string) report.GhostDiff {
		return report.GhostDiff{At: at.Add(time.Duration(sec) * time.Second), What: "body",
			Live: report.ShownReply{Status: 200, Body: live}, Ghost: report.ShownReply{Status: 200, Body: ghost}}
	}
	var same []report.GhostDiff
	for i := range 8 {
		same = append(same, diff(i, fmt.Sprintf(`{"id":%d,"v":1}`, i), fmt.Sprintf(`{"id":%d,"v":2}`, i)))
	}
	stats := []report.GhostStats{
		{Service: "profiles", Route: "profiles.get", Ghosted: 10, Differing: 9, Diffs: append(same, report.GhostDiff{At: at, What: "status",
			Live: report.ShownReply{Status: 200, Body: "a"}, Ghost: report.ShownReply{Status: 404, Body: "b"}})},
		{Service: "visits", Route: "visits.list", Ghosted: 1, Differing: 1, Diffs: []report.GhostDiff{diff(1, `{"id":1,"v":1}`, `{"id":1,"v":2}`)}},
	}
	got := groupGhosts(stats)
	if len(got) != 3 {
		t.Fatalf("%d groups, want 3: %+v", len(got), got)
	}
	if g := got[0]; g.Service != "profiles" || g.Count != 8 || !g.Last.Equal(at.Add(7*time.Second)) || g.Live != `200 {"id":7,"v":1}` || g.Ghost != `200 {"id":7,"v":2}` {
		t.Errorf("first group %+v, want the 8 alike on profiles, the newest (+7s) as the example", g)
	}
	if got[1].Count != 1 || got[2].Count != 1 || got[1].Service == got[2].Service && got[1].Live == got[2].Live {
		t.Errorf("the other groups %+v %+v, want one each, apart", got[1], got[2])
	}
	long := strings.Repeat("é", 100) // 200 bytes: cut at 160, between characters
	if s := shown(report.ShownReply{Status: 500, Body: long}); !utf8.ValidString(s) || !strings.HasSuffix(s, "…") {
		t.Errorf("a long body shown as %q", s)
	}
}

func TestSeriesSince(t *testing.T) {
	a := startAdmin(t, AdminConfig{Listen: "127.0.0.1:0"})
	a.console.close() // no samples of its own: the test takes them
	var n uint64
	a.console.add("front", func() probe { n += 10; return probe{requests: n} })
	start := time.UnixMilli(1_000_000)
	a.console.mu.Lock()
	for i := 1; i <= 5; i++ {
		a.console.series[0].tick(start.Add(time.Duration(i) * time.Second))
	}
	a.console.mu.Unlock()
	for _, tt := range []struct {
		query string
		code  int
		n     int
	}{
		{"", 200, 5},
		{"?since=0", 200, 5},
		{"?since=1003000", 200, 2}, // after the third
		{"?since=9999999", 200, 0},
		{"?since=soon", 400, 0},
		{"?since=-1", 400, 0},
	} {
		code, _, body := get(t, a.Addr(), "/status/series.json"+tt.query, "")
		if code != tt.code {
			t.Errorf("%s: %d %s, want %d", tt.query, code, body, tt.code)
			continue
		}
		if code != 200 {
			continue
		}
		var out struct {
			Series []struct {
				Samples [][]float64 `json:"samples"`
			} `json:"series"`
		}
		if err := json.Unmarshal([]byte(body), &out); err != nil || len(out.Series) != 1 || len(out.Series[0].Samples) != tt.n {
			t.Errorf("%s: %v %s, want %d samples", tt.query, err, body, tt.n)
		}
	}
}
