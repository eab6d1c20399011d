package main

import (
	"os"
	"path/filepath"
	"strconv"

	"github.com/terminator-gw/terminator/bench/nginxconf"
)

// startNginxPage runs `terminator all` behind nginx with the shipped site
// config: over the front's unix socket (the shipped config's upstream for
// nginx on the front's host), or over loopback TCP.
func startNginxPage(s *system, unix bool) (string, error) {
	if !unix {
		public, err := startAll(s)
		if err != nil {
			return "", err
		}
		return s.startNginx(public)
	}
	data, err := s.copyData()
	if err != nil {
		return "", err
	}
	a, err := freeAddrs(3)
	if err != nil {
		return "", err
	}
	admin := a[0]
	// nginx's workers (nobody:nogroup when the harness runs as root) reach
	// the socket through the scratch directories, unlisted, and connect as
	// its group (-listen-group).
	for _, d := range []string{s.r.tmp, s.dir} {
		if err := os.Chmod(d, 0o711); err != nil {
			return "", err
		}
	}
	listen := "unix:" + filepath.Join(s.dir, "front.sock")
	args := []string{"all", "-data", data, "-listen", listen, "-admin", admin,
		"-embedded-etcd-client", "http://" + a[1], "-embedded-etcd-peer", "http://" + a[2]}
	if g := nginxconf.WorkerGroup(); g != "" {
		args = append(args, "-listen-group", g)
	}
	p, err := s.launch(launch{name: "terminator-all", bin: s.r.cfg.bin, args: append(args, s.r.cfg.termFlags...)})
	if err != nil {
		return "", err
	}
	if err := waitHTTP([]string{"http://" + admin + "/readyz"}, p); err != nil {
		return "", err
	}
	public, err := s.startNginx(listen)
	if err != nil {
		return "", err
	}
	// What terminatorURLs waits for, through nginx: the routes come via etcd.
	return public, waitHTTP([]string{"http://" + public + "/echo", "http://" + public + "/profiles/1",
		"http://" + public + "/profiles/" + strconv.Itoa(s.r.cfg.seed)}, s.roots...)
}
