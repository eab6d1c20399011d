package terminator_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/nanobus/nanobustest"
	"github.com/terminator-gw/terminator/terminator"
)

// jsonLines parses every line of logs as a JSON object: a line that does
// not parse fails the test.
func jsonLines(t *testing.T, logs *nanobustest.Logs) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %v\n%s", err, line)
		}
		out = append(out, m)
	}
	return out
}

// withID is the lines of logs at level about request id.
func withID(lines []map[string]any, level, id string) []map[string]any {
	var out []map[string]any
	for _, l := range lines {
		if l["level"] == level && l["request_id"] == id {
			out = append(out, l)
		}
	}
	return out
}

func jsonLogger(logs *nanobustest.Logs) *slog.Logger {
	return slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// A handler's 500 two hops down is an ERROR line at the service that
// failed, at the service that called it, and at the front, all with the
// client's request ID: the call the first service made inherited it. A
// call that fails (its deadline passes) is a WARN line at its caller with
// the ID, and the 504 an ERROR at the front.
func TestErrorLoggedAtEveryHop(t *testing.T) {
	var deepLogs, webLogs, frontLogs nanobustest.Logs
	deep := nanobustest.NewNode(t, nanobus.Config{Service: "deep", Logger: jsonLogger(&deepLogs)})
	must(t, deep.Handle("deep.fail", func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		return nanobus.Reply{}, errors.New("disk on fire")
	}))
	must(t, deep.Handle("deep.slow", func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		<-ctx.Done()
		return nanobus.Reply{}, ctx.Err()
	}))
	web := nanobustest.NewNode(t, nanobus.Config{Service: "web", Logger: jsonLogger(&webLogs)})
	nanobustest.Connect(t, web, deep)
	must(t, web.Handle("GET /page/{what}", func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		ctx = nanobus.WithDeadline(ctx, time.Now().Add(100*time.Millisecond))
		resp, err := web.Call(ctx, "deep", "deep."+req.PathValue("what"), nil)
		if err != nil {
			return nanobus.Reply{}, err // a bus error: the status it means (a 504 for the deadline)
		}
		defer resp.Release()
		return nanobus.Reply{}, nanobus.Errorf(resp.Status, "deep answered %d", resp.Status)
	}))
	r, _ := nanobus.ParseRoute("GET /page/{what}")
	srv, _ := frontLog(t, terminator.Config{}, jsonLogger(&frontLogs), []terminator.Route{{Route: r, Service: "web"}}, web)

	cases := []struct {
		what, id              string
		status                int
		deepLevel, deepMsg    string // the deepest hop's line ("" for none)
		webLevel, webMsg, err string
	}{
		{"fail", "page-500", 500, "ERROR", "request failed", "ERROR", "request failed", "deep answered 500"},
		{"slow", "page-504", 504, "", "", "WARN", "call failed", "deadline passed"},
	}
	for _, c := range cases {
		resp, body := get(t, "http://"+srv.Addr()+"/page/"+c.what, map[string]string{"X-Request-Id": c.id})
		if resp.StatusCode != c.status {
			t.Fatalf("%s: status %d (%s), want %d", c.what, resp.StatusCode, body, c.status)
		}
	}
	for _, c := range cases {
		eventually(t, "the front's line for "+c.id, func() bool { return len(withID(jsonLines(t, &frontLogs), "ERROR", c.id)) == 1 })
		front := withID(jsonLines(t, &frontLogs), "ERROR", c.id)[0]
		if front["msg"] != "request" || front["status"] != float64(c.status) || front["route"] != "GET /page/{what}" ||
			front["service"] != "web" || front["method"] != "GET" || front["path"] != "/page/"+c.what {
			t.Errorf("%s: the front's line: %v", c.id, front)
		}
		if c.deepLevel != "" {
			lines := withID(jsonLines(t, &deepLogs), c.deepLevel, c.id)
			if len(lines) != 1 || lines[0]["msg"] != c.deepMsg || lines[0]["err"] != "disk on fire" || lines[0]["route"] != "deep."+c.what {
				t.Errorf("%s: the deep service's lines: %v\nall:\n%s", c.id, lines, deepLogs.String())
			}
		}
		var web []map[string]any
		for _, l := range withID(jsonLines(t, &webLogs), c.webLevel, c.id) {
			if l["msg"] == c.webMsg {
				web = append(web, l)
			}
		}
		if len(web) != 1 || !strings.Contains(fmt.Sprint(web[0]["err"]), c.err) {
			t.Errorf("%s: the web service's %s lines: %v\nall:\n%s", c.id, c.webMsg, web, webLogs.String())
		}
	}
	// The 504 is an ERROR at web too: its handler answered it.
	if lines := withID(jsonLines(t, &webLogs), "ERROR", "page-504"); len(lines) != 1 || lines[0]["status"] != float64(504) {
		t.Errorf("web's 504: %v", lines)
	}
}

// The access log writes at most -access-log-rate lines a second of the
// requests that went well, and counts the rest; it never leaves out an
// error (ERROR) or a slow request (WARN). Every line is JSON with the
// documented keys.
func TestAccessLogSampling(t *testing.T) {
	svc := echoService(t, "echo", nil)
	must(t, svc.Handle("GET /fail", func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		return nanobus.Reply{}, errors.New("broken")
	}))
	must(t, svc.Handle("GET /pause", func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		time.Sleep(250 * time.Millisecond)
		return nanobus.Reply{Body: []byte("late")}, nil
	}))
	routes := echoRoutes("echo")
	for _, k := range []string{"GET /fail", "GET /pause"} {
		r, _ := nanobus.ParseRoute(k)
		routes = append(routes, terminator.Route{Route: r, Service: "echo"})
	}
	var logs nanobustest.Logs
	srv, _ := frontLog(t, terminator.Config{AccessLogRate: 2, SlowRequest: 200 * time.Millisecond}, jsonLogger(&logs), routes, svc)

	const ok, failed, slow = 60, 7, 3
	began := time.Now()
	for i := range ok {
		if resp, _ := get(t, "http://"+srv.Addr()+"/echo", nil); resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if i%(ok/failed) == 0 && i/(ok/failed) < failed {
			if resp, _ := get(t, "http://"+srv.Addr()+"/fail", map[string]string{"X-Request-Id": fmt.Sprint("fail-", i)}); resp.StatusCode != 500 {
				t.Fatalf("status %d", resp.StatusCode)
			}
		}
	}
	for range slow {
		if resp, _ := get(t, "http://"+srv.Addr()+"/pause", nil); resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	seconds := int(time.Since(began)/time.Second) + 1

	var info, errs, warns, slowEchoes int
	lines := jsonLines(t, &logs)
	for _, l := range lines {
		if l["msg"] != "request" {
			continue
		}
		for _, k := range []string{"time", "request_id", "method", "path", "route", "status", "service", "version",
			"bus_s", "total_s", "bytes_in", "bytes_out", "client"} {
			if _, has := l[k]; !has {
				t.Errorf("access line without %q: %v", k, l)
			}
		}
		switch l["level"] {
		case "INFO":
			info++
		case "ERROR":
			errs++
			if l["status"] != float64(500) || !strings.HasPrefix(fmt.Sprint(l["request_id"]), "fail-") || l["path"] != "/fail" {
				t.Errorf("error line: %v", l)
			}
		case "WARN":
			if l["path"] == "/echo" { // slow on a loaded machine: written all the same
				slowEchoes++
				continue
			}
			warns++
			if l["path"] != "/pause" || l["total_s"].(float64) < 0.2 {
				t.Errorf("slow line: %v", l)
			}
		}
	}
	if errs != failed || warns != slow {
		t.Errorf("%d error lines, %d slow lines; want every one: %d and %d", errs, warns, failed, slow)
	}
	st := srv.Status().HTTP
	if info < 1 || info > 2*seconds+2 {
		t.Errorf("%d info lines in %d seconds at 2 a second", info, seconds)
	}
	if got := st["access_log_sampled_out"]; got+uint64(info+slowEchoes) != ok {
		t.Errorf("%d sampled out + %d written + %d slow, want %d", got, info, slowEchoes, ok)
	}
	if got := st["access_log_written"]; got != uint64(info+errs+warns+slowEchoes) {
		t.Errorf("access_log_written %d, want %d", got, info+errs+warns+slowEchoes)
	}
}

// The access line counts the body read (bytes_in) and the body written
// (bytes_out), and a request fasthttp could not read gets its line too.
func TestAccessLogBytesAndRefusals(t *testing.T) {
	svc := echoService(t, "echo", nil)
	var logs nanobustest.Logs
	srv, _ := frontLog(t, terminator.Config{MaxHeaderBytes: 1024}, jsonLogger(&logs), echoRoutes("echo"), svc)
	resp, body := do(t, "POST", "http://"+srv.Addr()+"/echo", "twelve bytes", map[string]string{"X-Request-Id": "post-1"})
	if resp.StatusCode != 200 {
		t.Fatalf("POST: %d", resp.StatusCode)
	}
	resp, _ = get(t, "http://"+srv.Addr()+"/echo", map[string]string{"X-Request-Id": "big-1", "X-Big": strings.Repeat("x", 2048)})
	if resp.StatusCode != 431 {
		t.Fatalf("big head: %d", resp.StatusCode)
	}
	byID := map[string]map[string]any{}
	for _, l := range jsonLines(t, &logs) {
		if l["msg"] == "request" {
			byID[fmt.Sprint(l["request_id"])] = l
		}
	}
	if l := byID["post-1"]; l == nil || l["bytes_in"] != float64(12) || l["bytes_out"] != float64(len(body)) || l["method"] != "POST" {
		t.Errorf("POST's line: %v (body %d bytes)", l, len(body))
	}
	var refused map[string]any
	for _, l := range byID {
		if l["status"] == float64(431) {
			refused = l
		}
	}
	if refused == nil || refused["level"] != "INFO" {
		t.Errorf("431's line: %v\n%s", refused, logs.String())
	}
}
