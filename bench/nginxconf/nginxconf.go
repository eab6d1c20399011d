// Package nginxconf runs the shipped deploy/nginx/terminator.conf on
// addresses a test or a benchmark picks, rather than a second copy of it.
//
// The shipped file is a site config (an upstream and a server) meant to be
// included in the http block of a main nginx.conf. Site rewrites only its
// two addresses, the listen port and the upstream server, and turns its
// access log off (a benchmark measures forwarding); SiteLogging writes the
// access log where a test reads it. Both fail when a line they rewrite is
// no longer there, so a change to the shipped file is noticed instead of
// silently measuring something else. Main writes the
// main config of a private instance: where its pid, logs and temporary
// files go, how many workers it runs, and the include.
//
//	site, err := nginxconf.Site(shipped, "127.0.0.1:18080", "127.0.0.1:9000")
//	os.WriteFile(dir+"/site.conf", []byte(site), 0o644)
//	os.WriteFile(dir+"/nginx.conf", []byte(nginxconf.Main(dir, 1, dir+"/site.conf")), 0o644)
//	exec.Command("nginx", "-p", dir, "-c", dir+"/nginx.conf")
package nginxconf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ShippedPath is the shipped site config, relative to the repository root.
const ShippedPath = "deploy/nginx/terminator.conf"

// The lines of the shipped file that Site replaces.
const (
	shippedListen    = "listen 80;"
	shippedUpstream  = "server 127.0.0.1:8080;"
	shippedAccessLog = "access_log /var/log/nginx/terminator.access.log terminator_json;"
)

// ErrNotShipped means the shipped config was not found above the working
// directory.
var ErrNotShipped = errors.New("nginxconf: " + ShippedPath + " not found in the working directory or above")

// FindShipped returns the path of the shipped site config, looking in the
// working directory and its parents (tests run in their package's
// directory, the harness at the repository root).
func FindShipped() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("nginxconf: %w", err)
	}
	for {
		p := filepath.Join(dir, ShippedPath)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", ErrNotShipped
		}
		dir = parent
	}
}

// Site returns the shipped site config listening on listen (host:port) and
// forwarding to upstream (host:port), with its access log off; everything
// else is as shipped.
func Site(shipped []byte, listen, upstream string) (string, error) {
	return site(shipped, listen, upstream, "access_log off;")
}

// SiteLogging is Site with the shipped JSON access log written to the file
// accessLog.
func SiteLogging(shipped []byte, listen, upstream, accessLog string) (string, error) {
	return site(shipped, listen, upstream, "access_log "+accessLog+" terminator_json;")
}

func site(shipped []byte, listen, upstream, accessLog string) (string, error) {
	s := string(shipped)
	for _, line := range []string{shippedListen, shippedUpstream, shippedAccessLog} {
		if n := strings.Count(s, line); n != 1 {
			return "", fmt.Errorf("nginxconf: the shipped config has %q %d times, want once: update nginxconf.Site with it", line, n)
		}
	}
	return strings.NewReplacer(
		shippedListen, "listen "+listen+";",
		shippedUpstream, "server "+upstream+";",
		shippedAccessLog, accessLog,
	).Replace(s), nil
}

// Worker user and group of a private nginx started by root (nginx's
// workers drop to a user of their own then; started by another user, they
// stay that user).
const (
	rootWorkerUser  = "nobody"
	rootWorkerGroup = "nogroup"
)

// WorkerGroup is the group nginx's workers run as when Main's config is
// started by this process: the group a unix socket nginx connects to must
// let in (a front's -listen-group), or "" when the workers are this
// process's user and group anyway.
func WorkerGroup() string {
	if os.Geteuid() == 0 {
		return rootWorkerGroup
	}
	return ""
}

// Main returns the main config of a private nginx running in the
// foreground with everything under dir: pid, error log, temp paths. It
// sets workers worker processes (0: auto) and includes each of includes
// in its http block. Access logging is off: a benchmark measures
// forwarding, and a test reads the error log. Started by root, its
// workers run as nobody:nogroup (see WorkerGroup).
func Main(dir string, workers int, includes ...string) string {
	w := "auto"
	if workers > 0 {
		w = fmt.Sprint(workers)
	}
	var inc strings.Builder
	for _, p := range includes {
		fmt.Fprintf(&inc, "    include %s;\n", p)
	}
	user := ""
	if WorkerGroup() != "" {
		user = "user " + rootWorkerUser + " " + rootWorkerGroup + ";\n"
	}
	return fmt.Sprintf(`daemon off;
%[4]sworker_processes %[2]s;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
%[3]s}
`, dir, w, inc.String(), user)
}
