package role

import (
	"bufio"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// unitsDir holds the systemd unit and the env files it reads.
const unitsDir = "../deploy/systemd"

// readEnvFile returns the assignments of a systemd EnvironmentFile.
func readEnvFile(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	vars := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s:%d: %q is not VARIABLE=value", path, n, line)
		}
		vars[k] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return vars
}

// TestEnvFilesStartOnOneHost checks the env files as shipped: every line
// is a variable of the role that reads it, with a value the role takes,
// no placeholder is active, etcd is the one on this host, and the roles'
// ports do not collide (they share a host).
func TestEnvFilesStartOnOneHost(t *testing.T) {
	common := readEnvFile(t, filepath.Join(unitsDir, "terminator.env"))
	if got := common["ETCD_ENDPOINTS"]; got != "http://127.0.0.1:2379" {
		t.Errorf("terminator.env: ETCD_ENDPOINTS=%q, want http://127.0.0.1:2379 (one host, plain)", got)
	}
	files, err := filepath.Glob(filepath.Join(unitsDir, "*.env"))
	if err != nil {
		t.Fatal(err)
	}
	ports := map[string]string{}
	roles := 0
	for _, path := range files {
		role := strings.TrimSuffix(filepath.Base(path), ".env")
		if role == "terminator" {
			continue
		}
		roles++
		t.Run(role, func(t *testing.T) {
			own := readEnvFile(t, path)
			fs, c, _ := flags(role)
			known := map[string]bool{}
			fs.VisitAll(func(f *flag.Flag) { known[EnvName(f.Name)] = true })
			for _, vars := range []map[string]string{common, own} {
				for k, v := range vars {
					if !known[k] {
						t.Errorf("%s is not a variable of terminator %s", k, role)
					}
					if strings.Contains(v, "example") || strings.Contains(v, "PASSWORD") {
						t.Errorf("%s=%s: a placeholder, active as shipped", k, v)
					}
					t.Setenv(k, v)
				}
			}
			// What the unit sets itself.
			t.Setenv("TERMINATOR_DATA", t.TempDir())
			if err := Parse(fs, nil); err != nil {
				t.Fatalf("the shipped env files do not parse: %v", err)
			}
			if strings.Contains(c.Bus.Listen, "0.0.0.0") && c.Bus.Advertise == "" {
				t.Errorf("BUS_LISTEN=%s without BUS_ADVERTISE", c.Bus.Listen)
			}
			for _, addr := range []string{c.Bus.Listen, c.Admin.Listen} {
				port := addr[strings.LastIndex(addr, ":")+1:]
				if other, ok := ports[port]; ok {
					t.Errorf("port %s of %s is %s's too", port, role, other)
				}
				ports[port] = role
			}
		})
	}
	if roles < 7 {
		t.Errorf("%d role env files, want one per role (front, web, profiles, visits, flirts, notifications, echo)", roles)
	}
}

// TestUnitKeepsItsPromises checks what the unit must say for the units to
// work under systemd 252 (the container test, make test-systemd, proves
// them there).
func TestUnitKeepsItsPromises(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(unitsDir, "terminator@.service"))
	if err != nil {
		t.Fatal(err)
	}
	unit := string(b)
	for _, tt := range []struct{ line, why string }{
		{"StartLimitIntervalSec=0\n", "a dependency down at start must not fail the unit for good"},
		{"Restart=on-failure\n", "kill -9 must restart it"},
		{"LoadCredential=terminator:/etc/terminator/credentials\n", "secrets reach the dynamic user as credentials"},
		{"AssertPathIsDirectory=/etc/terminator/credentials\n", "without it, one line naming what to create"},
		{"Documentation=file:/usr/share/doc/terminator/fleet.md\n", "the install steps put fleet.md there"},
		{"install -D -m 0644 docs/fleet.md /usr/share/doc/terminator/fleet.md\n", "the install step for Documentation="},
	} {
		if !strings.Contains(unit, tt.line) {
			t.Errorf("terminator@.service lacks %q: %s", strings.TrimSpace(tt.line), tt.why)
		}
	}
	if strings.Contains(unit, "\nProcSubset=pid") {
		t.Error("terminator@.service has ProcSubset=pid: it hides /proc/sys/net/core/somaxconn, and every listen backlog falls to 128")
	}
}
