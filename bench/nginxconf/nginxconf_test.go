package nginxconf

import (
	"errors"
	"os"
	"strings"
	"testing"
)

func TestSiteRewritesOnlyTheAddressesAndTheLog(t *testing.T) {
	path, err := FindShipped()
	if err != nil {
		t.Fatal(err)
	}
	shipped, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	site, err := Site(shipped, "127.0.0.1:18080", "127.0.0.1:9000")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"listen 127.0.0.1:18080;", "server 127.0.0.1:9000;", "keepalive 256;", "proxy_http_version 1.1;"} {
		if !strings.Contains(site, want) {
			t.Errorf("site lacks %q", want)
		}
	}
	for _, gone := range []string{shippedListen, shippedUpstream, shippedAccessLog} {
		if strings.Contains(site, gone) {
			t.Errorf("site still has %q", gone)
		}
	}
	if !strings.Contains(site, "access_log off;") {
		t.Error("a benchmark's site logs its accesses")
	}
	logging, err := SiteLogging(shipped, "127.0.0.1:18080", "127.0.0.1:9000", "/tmp/x/access.log")
	if err != nil || !strings.Contains(logging, "access_log /tmp/x/access.log terminator_json;") {
		t.Errorf("SiteLogging: %v\n%s", err, logging)
	}
	// Nothing but the three lines changed.
	if a, b := strings.Count(string(shipped), "\n"), strings.Count(site, "\n"); a != b {
		t.Errorf("line count %d -> %d", a, b)
	}
}

func TestSiteRefusesAChangedFile(t *testing.T) {
	tests := map[string]string{
		"no listen":     "upstream u { server 127.0.0.1:8080; }\nserver { listen 8081; }",
		"no upstream":   "upstream u { server 10.0.0.1:8080; }\nserver { listen 80; }",
		"two upstreams": "upstream u { server 127.0.0.1:8080; server 127.0.0.1:8080; }\nserver { listen 80; }",
	}
	for name, conf := range tests {
		if _, err := Site([]byte(conf), "a:1", "b:2"); err == nil {
			t.Errorf("%s: want an error", name)
		}
	}
}

func TestMainConfig(t *testing.T) {
	m := Main("/tmp/x", 1, "/tmp/x/site.conf", "/tmp/x/other.conf")
	for _, want := range []string{"daemon off;", "worker_processes 1;", "pid /tmp/x/nginx.pid;", "include /tmp/x/site.conf;", "include /tmp/x/other.conf;"} {
		if !strings.Contains(m, want) {
			t.Errorf("main config lacks %q:\n%s", want, m)
		}
	}
	if !strings.Contains(Main("/d", 0), "worker_processes auto;") {
		t.Error("0 workers should be auto")
	}
}

func TestFindShippedFromElsewhere(t *testing.T) {
	t.Chdir(t.TempDir())
	if _, err := FindShipped(); !errors.Is(err, ErrNotShipped) {
		t.Errorf("err = %v, want ErrNotShipped", err)
	}
}
