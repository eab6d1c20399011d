package role

import (
	"encoding/json"
	"flag"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/terminator-gw/terminator/nanobus/nanobustest"
)

func TestLogFlags(t *testing.T) {
	tests := []struct {
		args    []string
		env     map[string]string
		format  string
		level   slog.Level
		wantErr string
	}{
		{args: nil, format: "text", level: slog.LevelInfo},
		{args: []string{"-log-format", "json", "-log-level", "warn"}, format: "json", level: slog.LevelWarn},
		{args: []string{"-error-log-rate", "0"}, wantErr: "-error-log-rate: out of range: want 1 to 1000000"},
		{env: map[string]string{"TERMINATOR_LOG_FORMAT": "json", "TERMINATOR_LOG_LEVEL": "DEBUG"}, format: "json", level: slog.LevelDebug},
		{args: []string{"-log-format", "xml"}, wantErr: `"xml": want text or json`},
		{args: []string{"-log-level", "loud"}, wantErr: `"loud": want debug, info, warn or error`},
		{env: map[string]string{"TERMINATOR_LOG_LEVEL": "verbose"}, wantErr: "TERMINATOR_LOG_LEVEL"},
	}
	for _, tt := range tests {
		for k, v := range tt.env {
			t.Setenv(k, v)
		}
		var c Config
		fs := flag.NewFlagSet("echo", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		c.RegisterFlags(fs, "echo")
		err := Parse(fs, tt.args)
		for k := range tt.env {
			os.Unsetenv(k) // for the next case; t.Setenv restores it at the end
		}
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%v %v: err %v, want %q", tt.args, tt.env, err, tt.wantErr)
			}
			continue
		}
		if err != nil || c.Log.Format != tt.format || c.Log.Level().Level() != tt.level {
			t.Errorf("%v %v: %v, format %q level %v; want %q %v", tt.args, tt.env, err, c.Log.Format, c.Log.Level().Level(), tt.format, tt.level)
		}
	}
}

// The JSON logger writes one object a line, from its level, which can
// change while it runs.
func TestJSONLogger(t *testing.T) {
	var logs nanobustest.Logs
	c := LogConfig{Format: "json"}
	log := c.NewLogger(&logs)
	log.Debug("hidden")
	log.Info("shown", "request_id", "r-1")
	if err := c.SetLevel("debug"); err != nil {
		t.Fatal(err)
	}
	log.Debug("now shown")
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines: %q", len(lines), lines)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &m); err != nil || m["msg"] != "shown" || m["request_id"] != "r-1" || m["level"] != "INFO" {
		t.Errorf("%v: %v", err, m)
	}
}

// A process logs its start (what listens where, its version), its
// readiness when it changes, and each step of its stop with its duration:
// each once.
func TestLifecycleLines(t *testing.T) {
	endpoints, _ := etcdFor(t)
	var logs nanobustest.Logs
	lc := LogConfig{Format: "json"}
	cfg := testConfig(t, endpoints)
	cfg.Version = "v7"
	p, err := Start(t.Context(), "echo", cfg, lc.NewLogger(&logs))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "ready logged", func() bool { return strings.Contains(logs.String(), `"msg":"ready"`) })
	p.Stop()

	var msgs []string
	byMsg := map[string][]map[string]any{}
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not JSON: %v: %s", err, line)
		}
		msg := m["msg"].(string)
		msgs = append(msgs, msg)
		byMsg[msg] = append(byMsg[msg], m)
	}
	// In this order, each once (other lines between them).
	order := []string{"admin listening", "service up", "started", "ready", "not ready", "stopping", "deregistered", "drained", "stopped"}
	at := 0
	for _, msg := range msgs {
		if at < len(order) && msg == order[at] {
			at++
		}
	}
	if at != len(order) {
		t.Errorf("lines %q: want %q in that order", msgs, order)
	}
	for _, msg := range []string{"started", "ready", "stopping", "deregistered", "drained", "stopped"} {
		if len(byMsg[msg]) != 1 {
			t.Errorf("%q logged %d times", msg, len(byMsg[msg]))
		}
	}
	if s := byMsg["started"]; len(s) == 1 && (s[0]["role"] != "echo" || s[0]["version"] != "v7" || s[0]["admin"] != p.AdminAddr()) {
		t.Errorf("started: %v", s[0])
	}
	if s := byMsg["not ready"]; len(s) == 0 || s[len(s)-1]["reason"] != "stopping" {
		t.Errorf("not ready: %v", s)
	}
	for _, msg := range []string{"deregistered", "drained", "stopped"} {
		if s := byMsg[msg]; len(s) == 1 {
			if _, ok := s[0]["took"].(float64); !ok { // slog's JSON writes a duration in nanoseconds
				t.Errorf("%s without its duration: %v", msg, s[0])
			}
		}
	}
}
