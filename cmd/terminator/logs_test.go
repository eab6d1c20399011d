package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// `terminator all -log-format json` writes every log line as a JSON
// object: a 5xx from the echo service is an ERROR line at the service and
// at the front with the client's request ID, and the start and each stop
// step are logged once.
func TestBinaryLogsJSON(t *testing.T) {
	bin := buildBinary(t)
	in := start(t, bin, t.TempDir(), "http://"+freeAddr(t), "http://"+freeAddr(t), "-log-format", "json")
	req, _ := http.NewRequest("GET", "http://"+in.public+"/echo?status=503", nil)
	req.Header.Set("X-Request-Id", "bin-5xx")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("X-Request-Id") != "bin-5xx" {
		t.Fatalf("status %d, request ID %q", resp.StatusCode, resp.Header.Get("X-Request-Id"))
	}
	in.stop()

	count := map[string]int{}
	var errs []map[string]any
	for _, line := range strings.Split(in.logs(), "\n") {
		if !strings.HasPrefix(line, "{") {
			continue // the welcome text, on stdout
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %v: %s", err, line)
		}
		count[m["msg"].(string)]++
		if m["level"] == "ERROR" && m["request_id"] == "bin-5xx" {
			errs = append(errs, m)
		}
	}
	var front, service bool
	for _, m := range errs {
		front = front || m["msg"] == "request" && m["status"] == float64(503) && m["service"] == "echo" && m["route"] == "GET /echo"
		service = service || m["msg"] == "request failed" && m["node"] == "echo" && m["status"] == float64(503)
	}
	if !front || !service {
		t.Errorf("ERROR lines of bin-5xx: %v; want the front's and the echo service's\n%s", errs, in.logs())
	}
	for _, msg := range []string{"started", "stopping", "stopped"} {
		if count[msg] != 1 {
			t.Errorf("%q logged %d times, want once\n%s", msg, count[msg], in.logs())
		}
	}
	if count["ready"] == 0 || count["deregistered"] == 0 || count["drained"] == 0 {
		t.Errorf("lines: %v", count)
	}
}
