package compose

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// fleetSh runs fleet.sh with args, as an operator would, and returns its
// stdout and stderr. It needs compose (the plugin or docker-compose), which
// .ci/run installs; no Docker daemon.
func fleetSh(t *testing.T, args ...string) (string, string) {
	t.Helper()
	cmd := exec.Command("bash", append([]string{"fleet.sh"}, args...)...)
	cmd.Env = append(os.Environ(), "TERMINATOR_ADMIN_TOKEN=compose-test-token", "FLEET_PROJECT=terminator-compose-test")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("fleet.sh %s: %v (compose is needed: apt-get install docker-compose)\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), stderr.String()
}

// services splits compose's resolved configuration into its services'
// blocks, by name.
func services(config string) map[string]string {
	out := map[string]string{}
	in, name := false, ""
	for _, line := range strings.SplitAfter(config, "\n") {
		switch {
		case strings.TrimSpace(line) == "":
		case !strings.HasPrefix(line, " "):
			in, name = strings.TrimSpace(line) == "services:", ""
		case in && strings.HasPrefix(line, "  ") && !strings.HasPrefix(line, "   ") && strings.HasSuffix(strings.TrimSpace(line), ":"):
			name = strings.TrimSuffix(strings.TrimSpace(line), ":")
		case in && name != "":
			out[name] += line
		}
	}
	return out
}

// fleet.sh says which compose it runs; compose resolves the file; every
// terminator container but the one-shot seed is healthy only once its
// admin /readyz answers 200, asked by the binary itself (the image has no
// shell or curl); nginx waits for the fronts' health.
func TestComposeHealthchecks(t *testing.T) {
	config, stderr := fleetSh(t, "compose", "config")
	if !strings.Contains(stderr, "fleet.sh: using docker compose (plugin") && !strings.Contains(stderr, "fleet.sh: using docker-compose ") {
		t.Errorf("fleet.sh does not say which compose it runs:\n%s", stderr)
	}
	svcs := services(config)
	terminators := 0
	for name, block := range svcs {
		if !strings.Contains(block, "terminator-gw/terminator") || name == "seed" {
			continue
		}
		terminators++
		if !strings.Contains(block, "- /terminator\n      - probe\n") || !strings.Contains(block, "- http://127.0.0.1:8081/readyz\n") {
			t.Errorf("%s: no healthcheck running /terminator probe against the admin /readyz:\n%s", name, block)
		}
	}
	if terminators != 14 { // 2 fronts, 2 each of web, profiles, visits, flirts, notifications, echo
		t.Errorf("%d terminator services found, want 14:\n%s", terminators, config)
	}
	if n := strings.Count(svcs["nginx"], "condition: service_healthy"); n != 2 {
		t.Errorf("nginx waits for %d healthy fronts, want 2:\n%s", n, svcs["nginx"])
	}
}
