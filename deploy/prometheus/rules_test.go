package prometheus

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"
)

// The example alert rules check (promtool check rules) and pass their unit
// test (promtool test rules alerts_test.yml); the compose fleet's
// configuration checks too.
func TestRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("promtool is not installed; .ci/run installs it with apt-get (Debian package prometheus)")
		}
		t.Skip("promtool not installed (apt-get install prometheus)")
	}
	for _, args := range [][]string{
		{"check", "rules", "alerts.yml"},
		{"test", "rules", "alerts_test.yml"},
		// --syntax-only: the rule file's path is the container's.
		{"check", "config", "--syntax-only", "prometheus.yml"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		out, err := exec.CommandContext(ctx, promtool, args...).CombinedOutput()
		cancel()
		if err != nil {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		}
	}
}
