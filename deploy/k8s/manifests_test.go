package k8s

import (
	"bytes"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite nginx-config.yaml from deploy/nginx")

const namespace = "terminator"

// roles are the binary's long-running roles, each a Deployment of its name.
var roles = []string{"front", "web", "profiles", "visits", "flirts", "notifications", "echo"}

// stateful roles keep their data in the store named by TERMINATOR_STORE.
var stateful = []string{"profiles", "visits", "flirts", "notifications"}

// secretEnv are variables whose values must come from a Secret.
var secretEnv = []string{"ETCD_ENDPOINTS", "TERMINATOR_ADMIN_TOKEN", "TERMINATOR_STORE", "ETCD_PASSWORD"}

// manifests are every document of every *.yaml here, decoded strictly.
type manifests struct {
	deployments []*appsv1.Deployment
	pdbs        []*policyv1.PodDisruptionBudget
	services    []*corev1.Service
	configMaps  []*corev1.ConfigMap
	namespaces  []*corev1.Namespace
}

var docSep = regexp.MustCompile(`(?m)^---[ \t]*$`)

func load(t *testing.T) *manifests {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	m := &manifests{}
	for _, file := range files {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range docSep.Split(string(raw), -1) {
			var fields map[string]any
			if err := yaml.Unmarshal([]byte(doc), &fields); err != nil {
				t.Errorf("%s document %d: %v", file, i, err)
				continue
			}
			if len(fields) == 0 {
				continue // comments only
			}
			var tm metav1.TypeMeta
			_ = yaml.Unmarshal([]byte(doc), &tm)
			var obj any
			switch tm.APIVersion + " " + tm.Kind {
			case "apps/v1 Deployment":
				d := &appsv1.Deployment{}
				m.deployments, obj = append(m.deployments, d), d
			case "policy/v1 PodDisruptionBudget":
				p := &policyv1.PodDisruptionBudget{}
				m.pdbs, obj = append(m.pdbs, p), p
			case "v1 Service":
				s := &corev1.Service{}
				m.services, obj = append(m.services, s), s
			case "v1 ConfigMap":
				c := &corev1.ConfigMap{}
				m.configMaps, obj = append(m.configMaps, c), c
			case "v1 Namespace":
				n := &corev1.Namespace{}
				m.namespaces, obj = append(m.namespaces, n), n
			default:
				t.Errorf("%s document %d: unexpected %q %q", file, i, tm.APIVersion, tm.Kind)
				continue
			}
			if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
				t.Errorf("%s document %d (%s): %v", file, i, tm.Kind, err)
			}
		}
	}
	return m
}

func TestManifestsDecodeStrictly(t *testing.T) {
	m := load(t)
	if len(m.namespaces) != 1 || m.namespaces[0].Name != namespace {
		t.Errorf("want one Namespace %q", namespace)
	}
	objs := []metav1.Object{}
	for _, d := range m.deployments {
		objs = append(objs, d)
	}
	for _, p := range m.pdbs {
		objs = append(objs, p)
	}
	for _, s := range m.services {
		objs = append(objs, s)
	}
	for _, c := range m.configMaps {
		objs = append(objs, c)
	}
	for _, o := range objs {
		if o.GetNamespace() != namespace {
			t.Errorf("%s: namespace %q, want %q", o.GetName(), o.GetNamespace(), namespace)
		}
	}
}

// TestEveryDeploymentIsWhole: a Deployment per role and nginx, each with a
// selector that matches its pods, resource requests, and a
// PodDisruptionBudget that covers its pods.
func TestEveryDeploymentIsWhole(t *testing.T) {
	m := load(t)
	var names []string
	for _, d := range m.deployments {
		names = append(names, d.Name)
		pod := labels.Set(d.Spec.Template.Labels)
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		if err != nil || !sel.Matches(pod) {
			t.Errorf("%s: selector %v does not match its pods' labels %v (%v)", d.Name, d.Spec.Selector, pod, err)
		}
		covered := 0
		for _, p := range m.pdbs {
			if s, err := metav1.LabelSelectorAsSelector(p.Spec.Selector); err == nil && !s.Empty() && s.Matches(pod) {
				covered++
			}
		}
		if covered != 1 {
			t.Errorf("%s: %d PodDisruptionBudgets cover its pods, want 1", d.Name, covered)
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
				t.Errorf("%s/%s: no cpu or memory request", d.Name, c.Name)
			}
		}
	}
	for _, want := range append(slices.Clone(roles), "nginx") {
		if !slices.Contains(names, want) {
			t.Errorf("no Deployment for %s", want)
		}
	}
}

// TestContainersMatchTheBinary checks each role's container against
// `terminator <role> -h`: its flags and environment variables exist, the
// probes reach the admin listener's port at /healthz and /readyz, secrets
// come from the Secret, and the grace period covers preStop and the drain.
func TestContainersMatchTheBinary(t *testing.T) {
	m := load(t)
	for _, d := range m.deployments {
		if d.Name == "nginx" {
			continue
		}
		t.Run(d.Name, func(t *testing.T) {
			spec := d.Spec.Template.Spec
			if len(spec.Containers) != 1 {
				t.Fatalf("%d containers, want 1", len(spec.Containers))
			}
			c := spec.Containers[0]
			if len(c.Args) == 0 || c.Args[0] != d.Name || !slices.Contains(roles, d.Name) {
				t.Fatalf("args %q: want the role %q first", c.Args, d.Name)
			}
			help := helpOf(t, d.Name)
			settings := effective(t, help, c)

			adminPort := port(t, "-admin", settings["admin"])
			for _, p := range []struct {
				name  string
				probe *corev1.Probe
				path  string
			}{{"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}} {
				if p.probe == nil || p.probe.HTTPGet == nil {
					t.Errorf("no HTTP %s probe", p.name)
					continue
				}
				if p.probe.HTTPGet.Path != p.path {
					t.Errorf("%s probe asks %s, want %s", p.name, p.probe.HTTPGet.Path, p.path)
				}
				if got := containerPort(t, c, p.probe.HTTPGet.Port); got != adminPort {
					t.Errorf("%s probe on port %d, the admin listener is on %d (%s)", p.name, got, adminPort, settings["admin"])
				}
			}
			if host, _, _ := net.SplitHostPort(settings["admin"]); isLoopback(host) {
				t.Errorf("admin listener %s is loopback: the kubelet's probes cannot reach it", settings["admin"])
			}
			if d.Name == "front" {
				listen := port(t, "-listen", settings["listen"])
				if got := containerPort(t, c, intstr.FromString("http")); got != listen {
					t.Errorf("container port http is %d, -listen is on %d", got, listen)
				}
				checkFrontService(t, m, d, listen)
			}

			for _, name := range secretEnv {
				for _, e := range c.Env {
					if e.Name == name && (e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil) {
						t.Errorf("%s is not read from a Secret", name)
					}
				}
			}
			for _, name := range []string{"ETCD_ENDPOINTS", "TERMINATOR_ADMIN_TOKEN"} {
				if !hasEnv(c, name) {
					t.Errorf("%s is not set", name)
				}
			}
			if slices.Contains(stateful, d.Name) && !hasEnv(c, "TERMINATOR_STORE") {
				t.Errorf("a %s fleet needs the shared store: TERMINATOR_STORE is not set", d.Name)
			}

			// SIGTERM drains: the grace period must cover preStop and the drain.
			var preStop time.Duration
			if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
				preStop = time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
			}
			if d.Name == "front" && preStop == 0 {
				t.Error("the front has no preStop sleep: it would stop before leaving the Service's endpoints")
			}
			drainFlag := "drain"
			if _, ok := help.flags["drain-timeout"]; ok {
				drainFlag = "drain-timeout"
			}
			drain, err := time.ParseDuration(settings[drainFlag])
			if err != nil {
				t.Fatalf("-%s %q: %v", drainFlag, settings[drainFlag], err)
			}
			grace := 30 * time.Second
			if spec.TerminationGracePeriodSeconds != nil {
				grace = time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second
			}
			if grace <= preStop+drain {
				t.Errorf("terminationGracePeriodSeconds %v does not cover preStop %v + drain %v", grace, preStop, drain)
			}
		})
	}
}

// checkFrontService: the Service nginx dials selects the fronts and targets
// their public port.
func checkFrontService(t *testing.T, m *manifests, d *appsv1.Deployment, listen int) {
	t.Helper()
	for _, s := range m.services {
		if s.Name != "front" {
			continue
		}
		if !labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
			t.Errorf("Service front's selector %v does not select the fronts", s.Spec.Selector)
		}
		for _, p := range s.Spec.Ports {
			if got := containerPort(t, d.Spec.Template.Spec.Containers[0], p.TargetPort); got != listen {
				t.Errorf("Service front targets port %d, the fronts listen on %d", got, listen)
			}
		}
		return
	}
	t.Error("no Service front")
}

// TestNginx: nginx runs the shipped config through its entrypoint, from a
// ConfigMap that is the current deploy/nginx, pointed at a Service that exists.
func TestNginx(t *testing.T) {
	want := map[string]string{}
	for _, f := range []string{"terminator.conf", "entrypoint.sh"} {
		b, err := os.ReadFile(filepath.Join("..", "nginx", f))
		if err != nil {
			t.Fatal(err)
		}
		want[f] = string(b)
	}
	if *update {
		cm := corev1.ConfigMap{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
			ObjectMeta: metav1.ObjectMeta{Name: "nginx", Namespace: namespace},
			Data:       want,
		}
		b, err := yaml.Marshal(cm)
		if err != nil {
			t.Fatal(err)
		}
		b = bytes.Replace(b, []byte("  creationTimestamp: null\n"), nil, 1)
		header := "# Generated from deploy/nginx by `go test -update` in deploy/k8s: do not edit.\n"
		if err := os.WriteFile("nginx-config.yaml", append([]byte(header), b...), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m := load(t)
	var cm *corev1.ConfigMap
	for _, c := range m.configMaps {
		if c.Name == "nginx" {
			cm = c
		}
	}
	if cm == nil {
		t.Fatal("no ConfigMap nginx")
	}
	for k, v := range want {
		if cm.Data[k] != v {
			t.Errorf("ConfigMap nginx: %s differs from deploy/nginx/%s: run `go test -update` in deploy/k8s", k, k)
		}
	}
	for _, d := range m.deployments {
		if d.Name != "nginx" {
			continue
		}
		spec := d.Spec.Template.Spec
		if len(spec.Volumes) != 1 || spec.Volumes[0].ConfigMap == nil || spec.Volumes[0].ConfigMap.Name != "nginx" {
			t.Errorf("nginx does not mount the ConfigMap nginx: %+v", spec.Volumes)
		}
		c := spec.Containers[0]
		if !slices.Contains(c.Command, "/etc/terminator/nginx/entrypoint.sh") || len(c.VolumeMounts) != 1 ||
			c.VolumeMounts[0].MountPath != "/etc/terminator/nginx" {
			t.Errorf("nginx does not run the entrypoint from the ConfigMap: %q %+v", c.Command, c.VolumeMounts)
		}
		for _, e := range c.Env {
			if e.Name != "FRONTS" {
				continue
			}
			for _, front := range strings.Fields(e.Value) {
				host, p, err := net.SplitHostPort(front)
				if err != nil {
					t.Errorf("FRONTS %q: %v", front, err)
					continue
				}
				if !serves(m, host, p) {
					t.Errorf("FRONTS names %s, but no Service %s has port %s", front, host, p)
				}
			}
		}
	}
}

func serves(m *manifests, name, port string) bool {
	for _, s := range m.services {
		for _, p := range s.Spec.Ports {
			if s.Name == name && strconv.Itoa(int(p.Port)) == port {
				return true
			}
		}
	}
	return false
}

// help is what `terminator <role> -h` documents.
type help struct {
	flags    map[string]flagDoc // by name, without the dash
	envNames map[string]string  // environment variable -> flag
}

type flagDoc struct {
	env, def string
	isBool   bool
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// helpOf runs the binary built from this tree with `<role> -h`.
func helpOf(t *testing.T, role string) help {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "terminator-k8s-test")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "terminator")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/terminator")
		cmd.Dir = filepath.Join("..", "..")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build ./cmd/terminator: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	cmd := exec.Command(binPath, role, "-h")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")} // defaults as documented, not as this shell sets them
	out, _ := cmd.CombinedOutput()                  // -h exits 0 or 2 depending on the flag package's mood
	h := parseHelp(string(out))
	if len(h.flags) == 0 {
		t.Fatalf("terminator %s -h printed no flags:\n%s", role, out)
	}
	return h
}

var (
	flagLine = regexp.MustCompile(`^  -([a-z0-9-]+)(?: (\S+))?`)
	envNote  = regexp.MustCompile(`\(env ([A-Z0-9_]+)\)`)
	defNote  = regexp.MustCompile(`\(default "?([^")]*)"?\)\s*$`)
)

// parseHelp reads the flag package's usage output: "  -name type" lines,
// each followed by indented usage text that names its environment variable
// as "(env NAME)" and ends with its default.
func parseHelp(out string) help {
	h := help{flags: map[string]flagDoc{}, envNames: map[string]string{}}
	var name string
	var text strings.Builder
	flush := func() {
		if name == "" {
			return
		}
		d := h.flags[name]
		s := text.String()
		if m := envNote.FindStringSubmatch(s); m != nil {
			d.env = m[1]
			h.envNames[m[1]] = name
		}
		if m := defNote.FindStringSubmatch(strings.TrimSpace(s)); m != nil {
			d.def = m[1]
		}
		h.flags[name] = d
	}
	for _, line := range strings.Split(out, "\n") {
		if m := flagLine.FindStringSubmatch(line); m != nil {
			flush()
			name = m[1]
			text.Reset()
			h.flags[name] = flagDoc{isBool: m[2] == ""}
			if i := strings.Index(line, "\t"); i >= 0 { // short usage on the same line
				text.WriteString(line[i:])
			}
			continue
		}
		text.WriteString(" " + strings.TrimSpace(line))
	}
	flush()
	return h
}

// effective is each flag's value for this container: from its args, else
// from its environment, else the binary's default. It fails on a flag or an
// environment variable the binary does not document.
func effective(t *testing.T, h help, c corev1.Container) map[string]string {
	t.Helper()
	vals := map[string]string{}
	for name, d := range h.flags {
		vals[name] = d.def
	}
	referenced := map[string]bool{} // $(NAME) expansions Kubernetes makes
	ref := regexp.MustCompile(`\$\(([A-Za-z0-9_]+)\)`)
	for _, s := range c.Args {
		for _, m := range ref.FindAllStringSubmatch(s, -1) {
			referenced[m[1]] = true
		}
	}
	for _, e := range c.Env {
		for _, m := range ref.FindAllStringSubmatch(e.Value, -1) {
			referenced[m[1]] = true
		}
	}
	for _, e := range c.Env {
		flagName, ok := h.envNames[e.Name]
		switch {
		case ok:
			vals[flagName] = e.Value
		case referenced[e.Name]:
			// only there to be expanded into another value
		default:
			t.Errorf("env %s: terminator %s -h documents no such variable", e.Name, c.Args[0])
		}
	}
	args := c.Args[1:]
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			t.Errorf("arg %q: not a flag", a)
			continue
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		d, ok := h.flags[name]
		if !ok {
			t.Errorf("arg %s: terminator %s -h documents no such flag", a, c.Args[0])
			continue
		}
		if !hasVal && !d.isBool {
			if i+1 >= len(args) {
				t.Errorf("arg %s: no value", a)
				continue
			}
			i++
			val = args[i]
		}
		vals[name] = val
	}
	return vals
}

// port is the port of a host:port setting.
func port(t *testing.T, flagName, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	n, err2 := strconv.Atoi(p)
	if err != nil || err2 != nil || n <= 0 {
		t.Fatalf("%s %q: want host:port with a fixed port", flagName, addr)
	}
	return n
}

// containerPort resolves a probe's or Service's port (a number or a
// container port's name) to a number declared by the container.
func containerPort(t *testing.T, c corev1.Container, p intstr.IntOrString) int {
	t.Helper()
	for _, cp := range c.Ports {
		if p.Type == intstr.String && cp.Name == p.StrVal || p.Type == intstr.Int && cp.ContainerPort == p.IntVal {
			return int(cp.ContainerPort)
		}
	}
	t.Errorf("port %s is not one of the container's ports", p.String())
	return -1
}

func hasEnv(c corev1.Container, name string) bool {
	return slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == name })
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}
