package role

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/terminator-gw/terminator/discovery"
	"github.com/terminator-gw/terminator/nanobus/events"
)

// graphFleet registers, in a fresh etcd, what the sample app declares:
// visits publishing profile.visited from visits.record (two instances),
// notifications reading it and flirt.sent, which nobody publishes, and
// profiles with no events. It returns the etcd's endpoints.
func graphFleet(t *testing.T) []string {
	t.Helper()
	endpoints, cli := etcdFor(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	visits := &events.Declaration{Publishes: []events.Publication{{Topic: "profile.visited", Routes: []string{"visits.record"}}}}
	for _, reg := range []discovery.Registration{
		{Service: "visits", Node: "v1", Addr: "tcp://127.0.0.1:1", Routes: []discovery.Route{{Route: "visits.record"}}, Events: visits},
		{Service: "visits", Node: "v2", Addr: "tcp://127.0.0.1:2", Routes: []discovery.Route{{Route: "visits.record"}}, Events: visits},
		{Service: "notifications", Node: "n1", Addr: "tcp://127.0.0.1:3", Events: &events.Declaration{Subscribes: []events.Subscription{
			{Topic: "profile.visited", From: "visits", Group: "notifications"},
			{Topic: "flirt.sent", From: "flirts", Group: "notifications"},
		}}},
		{Service: "profiles", Node: "p1", Addr: "tcp://127.0.0.1:4", Routes: []discovery.Route{{Route: "profiles.put"}}},
	} {
		r, err := discovery.Register(ctx, cli, reg, discovery.RegisterOptions{Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
	}
	return endpoints
}

// runGraph runs `terminator graph args` with env set.
func runGraph(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	var out, errb bytes.Buffer
	code = Graph(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestGraphCommand(t *testing.T) {
	endpoints := graphFleet(t)
	tested := filepath.Join(t.TempDir(), "tested.json")
	if err := os.WriteFile(tested, []byte(`[{"from":"route:visits:visits.record","to":"topic:profile.visited"}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	eps := strings.Join(endpoints, ",")
	for _, tt := range []struct {
		name         string
		env          map[string]string
		args         []string
		stdout       []string // in the DOT
		stderr       []string // in the summary
		notInStdout  []string
		wantUntested bool
	}{
		{
			name: "declarations only",
			args: []string{"-etcd-endpoints", eps},
			stdout: []string{
				`"route:visits:visits.record" -> "topic:profile.visited";`,
				`"topic:profile.visited" -> "group:notifications:notifications";`,
				`"topic:flirt.sent" [label="flirt.sent\n(no publisher)"`,
				`"topic:flirt.sent" -> "group:notifications:notifications" [color=orange, style=dashed`,
				`label="from flirts?"`,
				`label="notifications: notifications"`,
				"legend [",
			},
			stderr: []string{
				"4 registrations of 3 services; 3 declare events",
				"cycles: 0",
				"unconsumed topics: 0",
				"notifications: group notifications reads flirt.sent from flirts",
			},
			notInStdout: []string{"untested", "profiles"},
		},
		{
			name: "tested edges, flags from the environment",
			env:  map[string]string{"ETCD_ENDPOINTS": eps, "TERMINATOR_GRAPH_TESTED": tested},
			stdout: []string{
				`"route:visits:visits.record" -> "topic:profile.visited";`,
				`"topic:profile.visited" -> "group:notifications:notifications" [color=red, fontcolor=red, tooltip="no test exercised it"];`,
				"untested edges: 1",
			},
			stderr: []string{"untested edges: 1 of 2", "  topic:profile.visited -> group:notifications:notifications"},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runGraph(t, tt.env, tt.args...)
			if code != 0 {
				t.Fatalf("exit %d; stderr:\n%s", code, stderr)
			}
			for _, want := range tt.stdout {
				if !strings.Contains(stdout, want) {
					t.Errorf("DOT has no %s\n%s", want, stdout)
				}
			}
			for _, not := range tt.notInStdout {
				if strings.Contains(stdout, not) {
					t.Errorf("DOT has %q\n%s", not, stdout)
				}
			}
			for _, want := range tt.stderr {
				if !strings.Contains(stderr, want) {
					t.Errorf("summary has no %q:\n%s", want, stderr)
				}
			}
		})
	}

	t.Run("svg", func(t *testing.T) {
		if _, err := exec.LookPath("dot"); err != nil {
			t.Skip("graphviz's dot is not installed")
		}
		svg := filepath.Join(t.TempDir(), "cascade.svg")
		code, _, stderr := runGraph(t, nil, "-etcd-endpoints", eps, "-svg", svg)
		if code != 0 {
			t.Fatalf("exit %d; stderr:\n%s", code, stderr)
		}
		b, err := os.ReadFile(svg)
		if err != nil || !bytes.Contains(b, []byte("<svg")) || !bytes.Contains(b, []byte("profile.visited")) {
			t.Errorf("%s: %v, %.300s", svg, err, b)
		}
	})
}

// What cannot work fails at once, saying why, before etcd is asked.
func TestGraphCommandFails(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	noTo := filepath.Join(dir, "noto.json")
	os.WriteFile(bad, []byte(`{"from":"a"}`), 0o600)
	os.WriteFile(noTo, []byte(`[{"from":"a"}]`), 0o600)
	unreachable := "http://" + freeAddr(t) // nothing listens
	for _, tt := range []struct {
		name string
		env  map[string]string
		args []string
		code int
		want string
	}{
		{"no dot", map[string]string{"PATH": dir}, []string{"-etcd-endpoints", unreachable, "-svg", filepath.Join(dir, "x.svg")}, 1, "install the package graphviz"},
		{"tested missing", nil, []string{"-etcd-endpoints", unreachable, "-tested", filepath.Join(dir, "none.json")}, 1, "-tested: open"},
		{"tested not an array", nil, []string{"-etcd-endpoints", unreachable, "-tested", bad}, 1, "want a JSON array"},
		{"tested edge without to", nil, []string{"-etcd-endpoints", unreachable, "-tested", noTo}, 1, `edge 0 has no "from" or no "to"`},
		{"unknown flag", nil, []string{"-nope"}, 2, "flag provided but not defined: -nope"},
		{"bad environment", map[string]string{"ETCD_DIAL_TIMEOUT": "forever"}, nil, 2, "ETCD_DIAL_TIMEOUT"},
		{"arguments", nil, []string{"extra"}, 2, "unexpected arguments"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runGraph(t, tt.env, tt.args...)
			if code != tt.code || !strings.Contains(stderr, tt.want) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, stderr, tt.code, tt.want)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
		})
	}
}

func TestGraphHelp(t *testing.T) {
	code, _, stderr := runGraph(t, nil, "-h")
	if code != 0 {
		t.Errorf("-h: exit %d", code)
	}
	for _, want := range []string{"usage: terminator graph", "-svg", "(env TERMINATOR_GRAPH_SVG)", "-tested", "(env TERMINATOR_GRAPH_TESTED)", "(env ETCD_ENDPOINTS)", "graphviz"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("-h has no %q:\n%s", want, stderr)
		}
	}
}

// An etcd that does not answer ends the command with the cause when its
// context does.
func TestGraphCommandUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	err := RunGraph(ctx, GraphConfig{Etcd: discovery.ClientConfig{Endpoints: []string{"http://" + freeAddr(t)}}, Stdout: &stdout, Stderr: &stderr})
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("RunGraph = %v, want the cause", err)
	}
	if stdout.Len() > 0 {
		t.Errorf("stdout %q, want nothing", stdout.String())
	}
}
