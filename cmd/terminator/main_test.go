package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/terminator-gw/terminator/role"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func get(url string) (int, string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// instance is one run of the real binary, as `make run` starts it, on
// free loopback ports.
type instance struct {
	t             *testing.T
	cmd           *exec.Cmd
	public, admin string
	logFile       string
}

// built is the binary, built once for the package's tests (linking it
// takes seconds, more on a busy box), in a directory TestMain removes.
var built struct {
	once     sync.Once
	dir, bin string
	out      []byte
	err      error
}

func buildBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	built.once.Do(func() {
		if built.dir, built.err = os.MkdirTemp("", "terminator-test-"); built.err != nil {
			return
		}
		built.bin = filepath.Join(built.dir, "terminator")
		built.out, built.err = exec.Command("go", "build", "-o", built.bin, ".").CombinedOutput()
	})
	if built.err != nil {
		t.Fatalf("build: %v\n%s", built.err, built.out)
	}
	return built.bin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// start runs `terminator all` and waits until it is ready and routes /echo.
func start(t *testing.T, bin, data, etcdClient, etcdPeer string, extra ...string) *instance {
	t.Helper()
	in := &instance{t: t, public: freeAddr(t), admin: freeAddr(t), logFile: filepath.Join(t.TempDir(), "out")}
	args := append([]string{"all", "-data", data, "-listen", in.public, "-admin", in.admin,
		"-embedded-etcd-client", etcdClient, "-embedded-etcd-peer", etcdPeer}, extra...)
	in.cmd = exec.Command(bin, args...)
	out, _ := os.Create(in.logFile)
	in.cmd.Stdout, in.cmd.Stderr = out, out
	if err := in.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.cmd.Process.Kill() })
	ready := false
	for end := time.Now().Add(90 * time.Second); time.Now().Before(end) && !ready; time.Sleep(100 * time.Millisecond) {
		code, _, _ := get("http://" + in.admin + "/readyz")
		ready = code == 200
	}
	if !ready {
		t.Fatalf("not ready in 90s (%v):\n%s", args, in.logs())
	}
	var code int
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end) && code != 200; time.Sleep(50 * time.Millisecond) {
		code, _, _ = get("http://" + in.public + "/echo") // routes arrive through etcd
	}
	if code != 200 {
		t.Fatalf("GET /echo: %d\n%s", code, in.logs())
	}
	return in
}

func (in *instance) logs() string { b, _ := os.ReadFile(in.logFile); return string(b) }

// waitParked waits, 10 s at most, until the front has n requests admitted
// and waiting for replies (status.json: front.waiting).
func (in *instance) waitParked(n int) {
	in.t.Helper()
	var st struct {
		Front struct {
			Waiting int `json:"waiting"`
		} `json:"front"`
	}
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		resp, err := http.Get("http://" + in.admin + "/status.json")
		if err != nil {
			continue
		}
		err = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if err == nil && st.Front.Waiting == n {
			return
		}
	}
	in.t.Fatalf("front never had %d requests waiting (last %d)\n%s", n, st.Front.Waiting, in.logs())
}

// stop sends SIGTERM and wants exit code 0.
func (in *instance) stop() {
	in.t.Helper()
	in.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- in.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			in.t.Fatalf("exit: %v (want code 0)\n%s", err, in.logs())
		}
	case <-time.After(30 * time.Second):
		in.t.Fatalf("did not exit after SIGTERM\n%s", in.logs())
	}
}

// On SIGTERM the binary drains (an in-flight request completes), refuses
// new work and exits 0.
func TestBinaryDrainsOnSIGTERM(t *testing.T) {
	bin := buildBinary(t)
	in := start(t, bin, t.TempDir(), "http://"+freeAddr(t), "http://"+freeAddr(t))
	inflight := make(chan string, 1)
	go func() {
		code, body, err := get("http://" + in.public + "/echo?sleep=700ms")
		inflight <- fmt.Sprint(code, " ", strings.TrimSpace(body), " ", err)
	}()
	in.waitParked(1)
	in.stop() // SIGTERM, then wait for exit code 0
	if got := <-inflight; got != "200 hello <nil>" {
		t.Fatalf("in-flight request during drain: %s\n%s", got, in.logs())
	}
	if _, _, err := get("http://" + in.public + "/echo"); err == nil {
		t.Fatal("still serving after exit")
	}
}

// The public routes work end to end, and the data survives a restart.
func TestBinaryKeepsDataAcrossRestart(t *testing.T) {
	bin := buildBinary(t)
	data := t.TempDir()
	etcdClient, etcdPeer := "http://"+freeAddr(t), "http://"+freeAddr(t)
	in := start(t, bin, data, etcdClient, etcdPeer, "-seed", "20")
	steps := []struct {
		method, path, body string
		want               int
	}{
		{"GET", "/profiles/7", "", 200}, // seeded
		{"PUT", "/profiles/ann", `{"name":"Ann","age":31,"city":"Lyon"}`, 201},
		{"POST", "/profiles/ann/visits", `{"visitor":"7"}`, 200},
		{"POST", "/profiles/ann/flirts", `{"from":"7","message":"hi"}`, 201},
	}
	for _, st := range steps {
		if code, body := send(context.Background(), st.method, "http://"+in.public+st.path, st.body); code != st.want {
			t.Fatalf("%s %s: %d %s", st.method, st.path, code, body)
		}
	}
	_, before := send(context.Background(), "GET", "http://"+in.public+"/profiles/7", "")
	in.stop()

	again := start(t, bin, data, etcdClient, etcdPeer, "-seed", "20")
	defer again.stop()
	// The counts are the events' projection: they may come a moment later.
	if _, ok, last := waitFor(10*time.Second, func() (bool, string) {
		code, body := send(context.Background(), "GET", "http://"+again.public+"/profiles/ann", "")
		return code == 200 && strings.Contains(body, `"name":"Ann"`) && strings.Contains(body, `"visits":1,"flirts":1`), fmt.Sprintf("%d %s", code, body)
	}); !ok {
		t.Fatalf("after restart: %s", last)
	}
	if _, after := send(context.Background(), "GET", "http://"+again.public+"/profiles/7", ""); after != before {
		t.Fatalf("seeded profile changed across the restart (seeded twice?):\n%s\n%s", before, after)
	}
}

func send(ctx context.Context, method, url, body string) (int, string) {
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		return 0, err.Error()
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// A value out of its flag's range stops the binary with exit code 2 and
// an error naming the flag (and the variable it came from) and the range,
// before anything starts.
func TestBinaryRefusesOutOfRange(t *testing.T) {
	bin := buildBinary(t)
	for _, tt := range []struct{ flag, value string }{
		{"timeout", "-1s"},
		{"bus-frame-timeout", "-3s"},
		{"bus-max-conns", "-5"},
		{"latency-sample", "7"},
		{"ttl", "0"},
		{"max-header", "0"},
		{"max-body", "-1"},
		{"admin-max-conns", "0"},
		{"etcd-dial-timeout", "-1s"},
	} {
		env := role.EnvName(tt.flag)
		for _, how := range []string{"flag", "env"} {
			t.Run(tt.flag+"="+tt.value+" "+how, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				// An etcd nobody listens on: a process that got past its
				// flags would sit waiting for it, or fail with exit 1.
				args := []string{"front", "-listen", "127.0.0.1:0", "-admin", "127.0.0.1:0", "-etcd-endpoints", "http://" + freeAddr(t)}
				cmd := exec.CommandContext(ctx, bin, args...)
				want := []string{"-" + tt.flag, "want "}
				if how == "flag" {
					cmd.Args = append(cmd.Args, "-"+tt.flag+"="+tt.value)
				} else {
					cmd.Env = append(os.Environ(), env+"="+tt.value)
					want = append(want, env)
				}
				out, err := cmd.CombinedOutput()
				code := -1
				if ee, ok := err.(*exec.ExitError); ok {
					code = ee.ExitCode()
				}
				msg := string(out)
				for _, w := range want {
					if !strings.Contains(msg, w) {
						code = -2
					}
				}
				if code != 2 || strings.Count(msg, "\n") > 3 {
					t.Errorf("exit %d (%v), want 2 with a short message naming %q:\n%s", code, err, want, msg)
				}
			})
		}
	}
}

// SIGHUP never kills a role: the binary logs once per signal that it
// ignores it (and why), keeps serving, and still stops cleanly on SIGTERM.
// `terminator seed` then refuses to write over the profiles the start
// seeded, unless -overwrite.
func TestBinaryIgnoresSIGHUPAndSeedKeepsData(t *testing.T) {
	bin := buildBinary(t)
	in := start(t, bin, t.TempDir(), "http://"+freeAddr(t), "http://"+freeAddr(t), "-seed", "3")
	for i := 1; i <= 2; i++ {
		if err := in.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		if _, ok, _ := waitFor(10*time.Second, func() (bool, string) {
			return strings.Count(in.logs(), "SIGHUP ignored") == i, ""
		}); !ok {
			t.Fatalf("SIGHUP %d: no log line saying it is ignored\n%s", i, in.logs())
		}
		if code, body, err := get("http://" + in.public + "/echo"); code != 200 {
			t.Fatalf("after SIGHUP %d: GET /echo: %d %s %v\n%s", i, code, body, err, in.logs())
		}
	}
	if !strings.Contains(in.logs(), "restart the process to change them") {
		t.Fatalf("the SIGHUP line does not say what a restart is for:\n%s", in.logs())
	}

	_, before := send(context.Background(), "GET", "http://"+in.public+"/profiles/2", "")
	out, err := exec.Command(bin, "seed", "-url", "http://"+in.public, "-n", "3").CombinedOutput()
	if code := exitCode(err); code != 1 || !strings.Contains(string(out), "sample profiles exist already: 3 of profiles 1 to 3 (1, 2, 3); -overwrite") {
		t.Fatalf("seed over seeded profiles: exit %d, want 1 refusing:\n%s", code, out)
	}
	if _, after := send(context.Background(), "GET", "http://"+in.public+"/profiles/2", ""); after != before {
		t.Fatalf("a refused seed changed profile 2:\n%s\n%s", before, after)
	}
	out, err = exec.Command(bin, "seed", "-url", "http://"+in.public, "-n", "3", "-overwrite").CombinedOutput()
	if code := exitCode(err); code != 0 || !strings.Contains(string(out), "seeded 3 profiles") {
		t.Fatalf("seed -overwrite: exit %d, want 0:\n%s", code, out)
	}
	in.stop() // SIGTERM: exit code 0
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}

// Every command's -h prints its usage, naming each flag's variable, and
// exits 0; the commands that are not roles name theirs
// TERMINATOR_<COMMAND>_<FLAG>, and read them.
func TestBinaryCommandsHelpAndEnvironment(t *testing.T) {
	bin := buildBinary(t)
	for _, tt := range []struct {
		args []string
		want []string
	}{
		{[]string{"probe", "-h"}, []string{"usage: terminator probe", "TERMINATOR_PROBE_TIMEOUT"}},
		{[]string{"seed", "-h"}, []string{"usage: terminator seed", "TERMINATOR_SEED_URL", "TERMINATOR_SEED_N", "TERMINATOR_SEED_OVERWRITE"}},
		{[]string{"rollout", "weights", "-h"}, []string{"usage: terminator rollout weights", "TERMINATOR_ROLLOUT_FORCE", "ETCD_ENDPOINTS"}},
		{[]string{"rollout", "ramp", "-h"}, []string{"TERMINATOR_ROLLOUT_STEPS", "TERMINATOR_ROLLOUT_EVERY"}},
		{[]string{"flag", "set", "-h"}, []string{"usage: terminator flag set", "TERMINATOR_FLAG_BY"}},
		{[]string{"hospital", "list", "-h"}, []string{"usage: terminator hospital list", "TERMINATOR_HOSPITAL_JSON", "BUS_LISTEN"}},
		{[]string{"graph", "-h"}, []string{"usage: terminator graph", "TERMINATOR_GRAPH_SVG", "ETCD_ENDPOINTS"}},
		{[]string{"front", "-h"}, []string{"TERMINATOR_TIMEOUT", "TERMINATOR_CORS_ORIGINS", "TERMINATOR_CORS_MAX_AGE"}},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			out, err := exec.Command(bin, tt.args...).CombinedOutput()
			if code := exitCode(err); code != 0 {
				t.Fatalf("exit %d, want 0:\n%s", code, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("no %q in:\n%s", w, out)
				}
			}
		})
	}
	// Values that do not parse or make no sense: exit 2, one line saying
	// what is wanted, naming the variable they came from.
	dead := "http://" + freeAddr(t)
	for _, tt := range []struct {
		env  string
		args []string
		want string
	}{
		{"TERMINATOR_TIMEOUT=3", []string{"front", "-etcd-endpoints", dead}, `TERMINATOR_TIMEOUT="3": want a duration such as 3s`},
		{"TERMINATOR_PROBE_TIMEOUT=3", []string{"probe", "http://" + freeAddr(t)}, `TERMINATOR_PROBE_TIMEOUT="3": want a duration such as 3s`},
		{"TERMINATOR_PROBE_TIMEOUT=-1s", []string{"probe", "http://" + freeAddr(t)}, "-timeout -1s: want 10ms to 1m0s"},
		{"TERMINATOR_SEED_N=-5", []string{"seed"}, "-n -5: want 1 to 1000000"},
		{"TERMINATOR_SEED_N=lots", []string{"seed"}, `TERMINATOR_SEED_N="lots": want a whole number`},
		{"TERMINATOR_ROLLOUT_EVERY=soon", []string{"rollout", "ramp", "echo", "v2", "-etcd-endpoints", dead}, `TERMINATOR_ROLLOUT_EVERY="soon": want a duration`},
		{"TERMINATOR_HOSPITAL_WAIT=1", []string{"hospital", "replay", "x", "-etcd-endpoints", dead}, `TERMINATOR_HOSPITAL_WAIT="1": want a duration`},
		{"TERMINATOR_CORS_MAX_AGE=-1s", []string{"front", "-etcd-endpoints", dead}, "want 1s to 24h0m0s"},
		{"X=1", []string{"front", "-max-body", "0", "-etcd-endpoints", dead}, "-max-body"},
		{"X=1", []string{"probe", "not a url"}, "want an http:// or https:// URL"},
		{"TERMINATOR_CORS_ORIGINS=app.example", []string{"front", "-etcd-endpoints", dead}, `CORS origin "app.example": want * or scheme://host[:port]`},
	} {
		t.Run(tt.env+" "+strings.Join(tt.args, " "), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, tt.args...)
			cmd.Env = append(os.Environ(), tt.env)
			out, err := cmd.CombinedOutput()
			if code := exitCode(err); code != 2 || !strings.Contains(string(out), tt.want) || strings.Count(string(out), "\n") > 3 {
				t.Fatalf("exit %d, want 2 with a short message saying %q:\n%s", code, tt.want, out)
			}
		})
	}
	// The variable is read: a probe of a port nobody listens on fails
	// within the timeout it gives.
	cmd := exec.Command(bin, "probe", "http://"+freeAddr(t)+"/readyz")
	cmd.Env = append(os.Environ(), "TERMINATOR_PROBE_TIMEOUT=500ms")
	if out, err := cmd.CombinedOutput(); exitCode(err) != 1 {
		t.Fatalf("probe of nothing: exit %d, want 1:\n%s", exitCode(err), out)
	}
}

// `make run` binds where the README says: the public front and the admin
// listener on loopback.
func TestMakeRunBindsLoopback(t *testing.T) {
	b, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	_, recipe, ok := strings.Cut(string(b), "\nrun: build\n")
	recipe, _, _ = strings.Cut(recipe, "\n")
	if !ok || !strings.Contains(recipe, "terminator all") {
		t.Fatalf("no `run` recipe running terminator all in the Makefile: %q", recipe)
	}
	for _, want := range []string{" -listen 127.0.0.1:8080", " -admin 127.0.0.1:8081"} {
		if !strings.Contains(recipe, want) {
			t.Errorf("make run: %q, want %q", recipe, want)
		}
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "terminator on `127.0.0.1:8080`") {
		t.Error("the README no longer says where make run listens")
	}
}
