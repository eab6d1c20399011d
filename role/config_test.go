package role

import (
	"bytes"
	"errors"
	"flag"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestEnvName(t *testing.T) {
	for flag, want := range map[string]string{
		"bus-listen":       "BUS_LISTEN",
		"bus-max-conns":    "BUS_MAX_CONNS",
		"etcd-endpoints":   "ETCD_ENDPOINTS",
		"etcd-password":    "ETCD_PASSWORD",
		"version":          "SERVICE_VERSION",
		"max-waiting":      "TERMINATOR_MAX_WAITING",
		"admin-token":      "TERMINATOR_ADMIN_TOKEN",
		"admin-token-file": "TERMINATOR_ADMIN_TOKEN_FILE",
		"data":             "TERMINATOR_DATA",
		"ttl":              "TERMINATOR_TTL",
	} {
		if got := EnvName(flag); got != want {
			t.Errorf("EnvName(%q) = %q, want %q", flag, got, want)
		}
	}
}

func flags(role string) (*flag.FlagSet, *Config, *bytes.Buffer) {
	var c Config
	var out bytes.Buffer
	fs := flag.NewFlagSet(role, flag.ContinueOnError)
	fs.SetOutput(&out)
	c.RegisterFlags(fs, role)
	return fs, &c, &out
}

func TestParseTakesTheEnvironment(t *testing.T) {
	t.Setenv("TERMINATOR_MAX_WAITING", "77")
	t.Setenv("TERMINATOR_TIMEOUT", "250ms")
	t.Setenv("ETCD_ENDPOINTS", "http://10.0.0.1:2379, http://10.0.0.2:2379")
	t.Setenv("ETCD_PASSWORD", "env-password")
	t.Setenv("BUS_MAX_CONNS", "9")
	t.Setenv("SERVICE_VERSION", "v9")
	t.Setenv("TERMINATOR_ADMIN_TOKEN", "env-token")
	t.Setenv("TERMINATOR_TTL", "7s")
	t.Setenv("TERMINATOR_BODY_BUDGET", "1048576")

	fs, c, _ := flags("front")
	// The command line wins over the environment.
	if err := Parse(fs, []string{"-max-waiting", "5", "-ttl=3s"}); err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"max-waiting (command line)", c.Front.MaxWaiting, 5},
		{"ttl (command line)", c.TTL, 3 * time.Second},
		{"timeout", c.Front.Timeout, 250 * time.Millisecond},
		{"etcd-endpoints", strings.Join(c.Etcd.Endpoints, " "), "http://10.0.0.1:2379 http://10.0.0.2:2379"},
		{"etcd-password", c.Etcd.Password, "env-password"},
		{"bus-max-conns", c.Bus.Limits.MaxConns, 9},
		{"version", c.Version, "v9"},
		{"admin-token", c.Admin.Token, "env-token"},
		{"bus-listen (default)", c.Bus.Listen, "tcp://127.0.0.1:0"},
		{"body-budget", c.Front.BodyBudget, 1 << 20},
		{"listen (default)", c.Front.Listen, "127.0.0.1:8080"},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s = %v, want %v", ck.name, ck.got, ck.want)
		}
	}
}

func TestParseRefusesBadEnvironment(t *testing.T) {
	for _, tt := range []struct{ role, env, value, want string }{
		{"front", "TERMINATOR_MAX_WAITING", "lots", `TERMINATOR_MAX_WAITING="lots": want a whole number such as 10 (1 to 1048576)`},
		{"front", "TERMINATOR_TIMEOUT", "3", `TERMINATOR_TIMEOUT="3": want a duration such as 3s`},
		{"profiles", "BUS_MAX_CONNS", "-", "want a whole number"},
		{"profiles", "TERMINATOR_GRACE", "soon", "want a duration"},
		{"all", "TERMINATOR_SEED", "1e3", "want a whole number"},
		{"front", "ETCD_DIAL_TIMEOUT", "5", "want a duration such as 5s (10ms to 5m0s)"},
		{"front", "TERMINATOR_CORS_MAX_AGE", "0s", "out of range: want 1s to 24h0m0s"},
	} {
		t.Run(tt.env, func(t *testing.T) {
			t.Setenv(tt.env, tt.value)
			fs, _, _ := flags(tt.role)
			err := Parse(fs, nil)
			if err == nil || !strings.Contains(err.Error(), tt.env) || !strings.Contains(err.Error(), tt.value) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("%s=%q: Parse = %v, want an error naming the variable and its value, saying %q", tt.env, tt.value, err, tt.want)
			}
		})
	}
}

// --help names every flag's environment variable, and never prints a
// secret, whether it came from the environment or the command line.
func TestHelpShowsEnvNamesNotSecrets(t *testing.T) {
	t.Setenv("ETCD_PASSWORD", "env-password")
	t.Setenv("TERMINATOR_ADMIN_TOKEN", "env-token")
	for _, role := range Roles() {
		t.Run(role, func(t *testing.T) {
			fs, _, out := flags(role)
			err := Parse(fs, []string{"-etcd-password", "cli-password", "-admin-token", "cli-token", "-help"})
			if !errors.Is(err, flag.ErrHelp) {
				t.Fatalf("Parse(-help) = %v, want flag.ErrHelp", err)
			}
			help := out.String()
			var names []string
			fs.VisitAll(func(f *flag.Flag) {
				names = append(names, f.Name)
				if !strings.Contains(help, "(env "+EnvName(f.Name)+")") {
					t.Errorf("help does not name %s's variable %s", f.Name, EnvName(f.Name))
				}
			})
			for _, secret := range []string{"env-password", "cli-password", "env-token", "cli-token"} {
				if strings.Contains(help, secret) {
					t.Errorf("help prints the secret %q", secret)
				}
			}
			for _, want := range []string{"bus-listen", "etcd-endpoints", "etcd-password", "admin", "admin-token", "version"} {
				if !slices.Contains(names, want) {
					t.Errorf("no -%s flag", want)
				}
			}
		})
	}
	// Each role has its own flags.
	for _, tt := range []struct {
		role    string
		has     []string
		hasNone []string
	}{
		{"front", []string{"listen", "max-waiting", "timeout"}, []string{"data", "grace", "seed"}},
		{"profiles", []string{"data", "grace", "drain"}, []string{"listen", "seed"}},
		{"echo", []string{"grace"}, []string{"data", "listen"}},
		{"all", []string{"data", "seed", "listen", "grace", "embedded-etcd-client"}, nil},
	} {
		fs, _, _ := flags(tt.role)
		for _, name := range tt.has {
			if fs.Lookup(name) == nil {
				t.Errorf("%s: no -%s", tt.role, name)
			}
		}
		for _, name := range tt.hasNone {
			if fs.Lookup(name) != nil {
				t.Errorf("%s: -%s is not its flag", tt.role, name)
			}
		}
	}
}

// Out-of-range values stop the process, from the command line or the
// environment, with an error naming the flag (and the variable) and the
// range: none is replaced by a default in silence.
func TestParseRefusesOutOfRange(t *testing.T) {
	for _, tt := range []struct{ role, flag, value, want string }{
		{"front", "timeout", "-1s", "1ms to 5m0s"},
		{"front", "timeout", "0", "1ms to 5m0s"},
		{"profiles", "bus-frame-timeout", "-3s", "1ms to 1h0m0s"},
		{"echo", "bus-max-conns", "-5", "1 to 1048576"},
		{"front", "latency-sample", "7", "above 0, at most 1"},
		{"front", "latency-sample", "0", "above 0, at most 1"},
		{"profiles", "ttl", "0", "1s to 10m0s"},
		{"front", "ttl", "300ms", "1s to 10m0s"},
		{"front", "max-header", "0", "1024 to 1048576"},
		{"front", "max-body", "-1", "1 to 1073741824"},
		{"front", "admin-max-conns", "0", "1 to 65536"},
		{"front", "admin-idle-timeout", "-1s", "1ms to 1h0m0s"},
		{"profiles", "etcd-dial-timeout", "0", "10ms to 5m0s"},
		{"all", "seed", "-1", "0 to 1000000"},
		{"profiles", "grace", "0", "1ms to 5m0s"},
	} {
		t.Run(tt.flag+"="+tt.value, func(t *testing.T) {
			fs, _, _ := flags(tt.role)
			err := Parse(fs, []string{"-" + tt.flag + "=" + tt.value})
			if err == nil || !strings.Contains(err.Error(), "-"+tt.flag) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("%s -%s %s: Parse = %v, want an error naming the flag and the range %q", tt.role, tt.flag, tt.value, err, tt.want)
			}
			env := EnvName(tt.flag)
			t.Setenv(env, tt.value)
			fs, _, _ = flags(tt.role)
			err = Parse(fs, nil)
			if err == nil || !strings.Contains(err.Error(), env) || !strings.Contains(err.Error(), "-"+tt.flag) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("%s %s=%s: Parse = %v, want an error naming the variable, the flag and the range %q", tt.role, env, tt.value, err, tt.want)
			}
		})
	}
}

// Every numeric flag of every role has a range: a negative value is
// refused, whatever the flag (a flag added without a range fails here).
func TestEveryNumericFlagHasARange(t *testing.T) {
	for _, role := range Roles() {
		fs, _, _ := flags(role)
		fs.VisitAll(func(f *flag.Flag) {
			g, ok := f.Value.(flag.Getter)
			if !ok {
				return
			}
			var bad string
			switch g.Get().(type) {
			case time.Duration:
				bad = "-1s"
			case int, int64, uint, uint64, float64:
				bad = "-1"
			default:
				return
			}
			fs, _, _ := flags(role)
			if err := Parse(fs, []string{"-" + f.Name, bad}); err == nil || !strings.Contains(err.Error(), "want ") {
				t.Errorf("%s -%s %s: Parse = %v, want it refused with the range", role, f.Name, bad, err)
			}
		})
	}
}

// The values a flag's range allows, its ends included, are taken.
func TestParseTakesValuesInRange(t *testing.T) {
	fs, c, _ := flags("front")
	err := Parse(fs, []string{"-timeout=1ms", "-latency-sample=1", "-max-header=1024", "-ttl=10m", "-admin-max-conns=1", "-bus-max-conns=1048576"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Front.Timeout != time.Millisecond || c.Front.LatencySample != 1 || c.Front.MaxHeaderBytes != 1024 || c.TTL != 10*time.Minute ||
		c.Admin.MaxConns != 1 || c.Bus.Limits.MaxConns != 1<<20 {
		t.Errorf("values at the ends of their ranges: %+v", c)
	}
}
