package role

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/terminator-gw/terminator/discovery"
	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/services"
	"github.com/terminator-gw/terminator/terminator"
)

// Config is what a process's roles run with. The binary fills it from
// flags and the environment (RegisterFlags, Parse); tests fill it directly.
type Config struct {
	Bus     BusConfig
	Etcd    discovery.ClientConfig
	Embed   EmbedConfig // "all" without Etcd.Endpoints
	Admin   AdminConfig
	Front   terminator.Config
	DataDir string // Pebble stores (one per stateful service) and the embedded etcd
	Store   string // "postgres://...": every stateful service on PostgreSQL; "": Pebble under DataDir
	Seed    int    // "all": sample profiles to load on a first start
	TTL     time.Duration
	Version string // of every service the process runs
	// Grace is how long a stopping service stays up after deregistering,
	// answering what callers still send it while their watchers catch up.
	Grace time.Duration
	// DrainTimeout bounds how long a stopping service waits for its
	// handlers to finish.
	DrainTimeout time.Duration
	// CalleeWait bounds how long a starting node (a service, the front)
	// waits to reach an instance of each service it calls before it is
	// announced in etcd. Default 2s.
	CalleeWait time.Duration
	// Log is how the binary logs (LogConfig.NewLogger); Start logs to the
	// logger it is given.
	Log LogConfig
	// ErrorLogRate bounds the lines a second each bus node writes about
	// failed requests (nanobus.Config.ErrorLogRate). Default 20.
	ErrorLogRate int
}

// BusConfig is this process's place on the bus.
type BusConfig struct {
	Listen    string // "tcp://host:port" or "tls+tcp://host:port"
	Advertise string // the address peers dial, when Listen is 0.0.0.0
	CA        string // with Cert and Key: mutual TLS, every member certified by CA
	Cert, Key string
	Limits    nanobus.Limits
}

// EmbedConfig says where "all" runs its own etcd.
type EmbedConfig struct {
	ClientURL, PeerURL string
}

// RegisterFlags adds the flags of role ("all", "front", or a service's name)
// to fs, with defaults for what c leaves zero. Every flag also reads an
// environment variable (see EnvName), named in --help.
func (c *Config) RegisterFlags(fs *flag.FlagSet, role string) {
	svc, isService := services.Lookup(role)
	all, front := role == "all", role == "front"
	c.setDefaults(role)

	fs.StringVar(&c.Bus.Listen, "bus-listen", c.Bus.Listen, "bus address to listen on")
	fs.StringVar(&c.Bus.Advertise, "bus-advertise", c.Bus.Advertise, "bus address peers dial, when listening on 0.0.0.0")
	fs.StringVar(&c.Bus.CA, "bus-ca", c.Bus.CA, "bus TLS: CA file that signs every bus member's certificate; with -bus-cert and -bus-key, use tls+tcp:// addresses")
	fs.StringVar(&c.Bus.Cert, "bus-cert", c.Bus.Cert, "bus TLS: this process's certificate, used as server and client")
	fs.StringVar(&c.Bus.Key, "bus-key", c.Bus.Key, "bus TLS: its key")
	fs.DurationVar(&c.Bus.Limits.FrameTimeout, "bus-frame-timeout", c.Bus.Limits.FrameTimeout, "a bus frame whose length has arrived must be complete within this")
	fs.DurationVar(&c.Bus.Limits.IdleTimeout, "bus-idle-timeout", c.Bus.Limits.IdleTimeout, "a bus connection must send its first frame within this; one that carried no message this long gives its place to a newcomer when -bus-max-conns is reached")
	fs.DurationVar(&c.Bus.Limits.PeerTimeout, "bus-peer-timeout", c.Bus.Limits.PeerTimeout, "a bus connection whose peer stops answering (a cut network) is closed after about this long, and its calls fail over")
	fs.IntVar(&c.Bus.Limits.MaxConns, "bus-max-conns", c.Bus.Limits.MaxConns, "bus connections other processes may open to this one")
	fs.IntVar(&c.Bus.Limits.MaxBuffered, "bus-max-buffered", c.Bus.Limits.MaxBuffered, "bytes large bus frames may take while they are read, all connections together (each takes its whole length before it is read)")
	c.Etcd.RegisterFlags(fs)
	fs.DurationVar(&c.TTL, "ttl", c.TTL, "etcd lease TTL: how long a process that died stays listed")
	fs.StringVar(&c.Version, "version", c.Version, "version this process's services register with")
	fs.DurationVar(&c.CalleeWait, "callee-wait", c.CalleeWait, "on start, how long a node waits to reach the services it calls before it registers (then it registers all the same, with a warning)")
	c.Admin.registerFlags(fs)
	c.Log.registerFlags(fs)
	fs.IntVar(&c.ErrorLogRate, "error-log-rate", c.ErrorLogRate, "lines a second each bus node writes about failed requests (5xx, failed calls, replies dropped); more are counted (LogsDropped), not written")
	if isService { // the front's flags have it for "all" and "front"
		fs.BoolFunc("adaptive-limit", "limit the handlers running at once adaptively, by measured latency; over the limit, busy at once (default true)",
			func(s string) error {
				v, err := strconv.ParseBool(s)
				c.Front.FixedLimit = !v
				return err
			})
	}
	if all || isService {
		fs.DurationVar(&c.Grace, "grace", c.Grace, "on stop, how long a service keeps answering after deregistering")
		fs.DurationVar(&c.DrainTimeout, "drain", c.DrainTimeout, "on stop, how long a service waits for its handlers")
	}
	if all || svc.Stateful {
		fs.StringVar(&c.DataDir, "data", c.DataDir, "data directory: Pebble stores (one per service), and the embedded etcd's")
		fs.StringVar(&c.Store, "store", c.Store, "the services' store: empty for Pebble under -data (one process per directory), "+
			"or a postgres:// URL that any number of instances share")
	}
	if all {
		fs.StringVar(&c.Embed.ClientURL, "embedded-etcd-client", c.Embed.ClientURL, "embedded etcd's client URL (without -etcd-endpoints)")
		fs.StringVar(&c.Embed.PeerURL, "embedded-etcd-peer", c.Embed.PeerURL, "embedded etcd's peer URL")
		fs.IntVar(&c.Seed, "seed", c.Seed, "on a first start (no data yet), load this many sample profiles")
	}
	if all || front {
		c.Front.RegisterFlags(fs)
	}
	fs.VisitAll(func(f *flag.Flag) {
		if r, ok := flagRanges[f.Name]; ok {
			// Backquoted: --help names the value's kind from it, as it
			// would from the flag's own type.
			f.Usage += " (`" + r.kind + "`: " + r.text + ")"
			f.Value = &ranged{Value: f.Value, r: r}
		}
		f.Usage += " (env " + EnvName(f.Name) + ")"
	})
}

// flagRanges are the values each numeric flag takes. The structs read a
// zero or negative field as "the default" (tests and libraries fill them
// directly), so a flag given 0 or -1 would be replaced by the default in
// silence: given out of its range, a value stops the process instead.
// (-etcd-dial-timeout checks its own: the rollout CLI has it too.)
var flagRanges = map[string]valueRange{
	"bus-frame-timeout": durations(time.Millisecond, time.Hour),
	"bus-idle-timeout":  durations(time.Millisecond, time.Hour),
	"bus-peer-timeout":  durations(10*time.Millisecond, 10*time.Minute),
	"bus-max-conns":     ints(1, 1<<20),
	"bus-max-buffered":  ints(1<<16, 1<<36),
	"ttl":               durations(time.Second, 10*time.Minute), // etcd leases count whole seconds
	"callee-wait":       durations(time.Millisecond, 10*time.Minute),
	"grace":             durations(time.Millisecond, 5*time.Minute),
	"drain":             durations(time.Millisecond, time.Hour),
	"seed":              ints(0, 1_000_000),
	"error-log-rate":    ints(1, 1_000_000),

	"admin-max-conns":     ints(1, 1<<16),
	"admin-idle-timeout":  durations(time.Millisecond, time.Hour),
	"admin-read-timeout":  durations(time.Millisecond, time.Hour),
	"admin-write-timeout": durations(time.Millisecond, time.Hour),

	// The front's (terminator.Config).
	"timeout":         durations(time.Millisecond, 5*time.Minute),
	"max-body":        ints(1, 1<<30),
	"body-budget":     ints(1<<16, 1<<40),
	"max-header":      ints(1<<10, 1<<20),
	"read-timeout":    durations(time.Millisecond, time.Hour),
	"write-timeout":   durations(time.Millisecond, time.Hour),
	"idle-timeout":    durations(time.Millisecond, time.Hour),
	"max-conns":       ints(1, 1<<20),
	"max-waiting":     ints(1, 1<<20),
	"queue-wait":      durations(time.Millisecond, time.Minute),
	"queue-target":    durations(100*time.Microsecond, time.Minute),
	"retry-after":     durations(time.Second, time.Hour), // sent in whole seconds
	"drain-timeout":   durations(time.Millisecond, time.Hour),
	"statsd-interval": durations(100*time.Millisecond, time.Hour),
	"access-log-rate": ints(1, 1_000_000),
	"slow-request":    durations(time.Millisecond, 5*time.Minute),
	"cors-max-age":    durations(time.Second, 24*time.Hour),
	"latency-sample": {kind: "float", text: "above 0, at most 1", ok: func(v any) bool {
		f, ok := v.(float64)
		return ok && f > 0 && f <= 1
	}},
}

// valueRange is what a numeric flag takes.
type valueRange struct {
	kind string // "duration", "int", "float": what --help calls the value
	text string // "1ms to 1h0m0s"
	ok   func(any) bool
}

func durations(lo, hi time.Duration) valueRange {
	return valueRange{kind: "duration", text: lo.String() + " to " + hi.String(), ok: func(v any) bool {
		d, ok := v.(time.Duration)
		return ok && d >= lo && d <= hi
	}}
}

func ints(lo, hi int) valueRange {
	return valueRange{kind: "int", text: strconv.Itoa(lo) + " to " + strconv.Itoa(hi), ok: func(v any) bool {
		n, ok := v.(int)
		return ok && n >= lo && n <= hi
	}}
}

// ranged is a flag's value that refuses what is out of its range.
type ranged struct {
	flag.Value // a flag.Getter: the flag package's own values are
	r          valueRange
}

func (v *ranged) Set(s string) error {
	prev := v.Value.String()
	if err := v.Value.Set(s); err != nil {
		return fmt.Errorf("want %s (%s)", kindExample(v.r.kind), v.r.text)
	}
	if !v.r.ok(v.Get()) {
		_ = v.Value.Set(prev)
		return fmt.Errorf("out of range: want %s", v.r.text)
	}
	return nil
}

func (v *ranged) Get() any { return v.Value.(flag.Getter).Get() }

// String is called on a zero ranged too, by --help.
func (v *ranged) String() string {
	if v == nil || v.Value == nil {
		return ""
	}
	return v.Value.String()
}

func (c *Config) setDefaults(role string) {
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	def(&c.Bus.Listen, "tcp://127.0.0.1:0")
	def(&c.Version, BuildVersion())
	def(&c.DataDir, "data")
	def(&c.Embed.ClientURL, "http://127.0.0.1:23790")
	def(&c.Embed.PeerURL, "http://127.0.0.1:23800")
	if role == "all" || role == "front" {
		def(&c.Admin.Listen, "127.0.0.1:8081")
	}
	def(&c.Admin.Listen, "127.0.0.1:0") // a service: a free port, logged
	c.Bus.Limits.SetDefaults()
	if c.TTL <= 0 {
		c.TTL = 5 * time.Second
	}
	if c.Grace <= 0 {
		c.Grace = 500 * time.Millisecond
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = 10 * time.Second
	}
	if c.CalleeWait <= 0 {
		c.CalleeWait = 2 * time.Second
	}
	if c.ErrorLogRate <= 0 {
		c.ErrorLogRate = 20
	}
}

// kindExample says what a value of kind looks like, for errors.
func kindExample(kind string) string {
	switch kind {
	case "duration":
		return "a duration such as 3s, 250ms or 1m30s"
	case "int":
		return "a whole number such as 10"
	case "float":
		return "a number such as 0.5"
	case "bool":
		return "true or false"
	}
	return "a " + kind
}

// kindOf is what f's value is, for an error saying what is wanted: a
// number or a duration ("" for the others, whose own errors say it).
func kindOf(f *flag.Flag) string {
	g, ok := f.Value.(flag.Getter)
	if !ok {
		return ""
	}
	switch g.Get().(type) {
	case time.Duration:
		return "duration"
	case int, int64, uint, uint64:
		return "int"
	case float64:
		return "float"
	case bool:
		return "bool"
	}
	return ""
}

// explain turns a value's parse error into what is wanted (the flag
// package says "parse error"); errors that say it already stay.
func explain(f *flag.Flag, err error) error {
	msg := err.Error()
	kind := kindOf(f)
	if kind == "" || strings.HasPrefix(msg, "want ") || strings.Contains(msg, "out of range") {
		return err
	}
	return fmt.Errorf("want %s", kindExample(kind))
}

// badFlagValue matches the flag package's error for a value that does not
// parse, naming the flag.
var badFlagValue = regexp.MustCompile(`^invalid (?:boolean )?value "(.*)" for (?:flag )?-(\S+): parse error$`)

// CommandEnvName is EnvName for a command that is not a role (seed,
// probe, rollout, flag, hospital, graph): its own flags read
// TERMINATOR_<COMMAND>_<FLAG> (seed -url: TERMINATOR_SEED_URL), so that a
// role's variable set in the same environment (TERMINATOR_TIMEOUT in a
// front's container) never changes what a tool does there; the flags it
// shares with the roles (-etcd-*, -bus-*) read the roles' variables.
func CommandEnvName(command string) func(flag string) string {
	prefix := "TERMINATOR_" + strings.ToUpper(strings.ReplaceAll(command, "-", "_")) + "_"
	return func(flag string) string {
		if strings.HasPrefix(flag, "bus-") || strings.HasPrefix(flag, "etcd-") {
			return EnvName(flag)
		}
		return prefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
	}
}

// EnvName is the environment variable that gives flag its value when the
// command line does not: BUS_* and ETCD_* for the bus and etcd flags,
// SERVICE_VERSION for -version, TERMINATOR_<FLAG> for the rest (-max-waiting
// reads TERMINATOR_MAX_WAITING).
func EnvName(flag string) string {
	name := strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
	switch {
	case flag == "version":
		return "SERVICE_VERSION"
	case strings.HasPrefix(flag, "bus-"), strings.HasPrefix(flag, "etcd-"):
		return name
	}
	return "TERMINATOR_" + name
}

// Parse sets each flag of fs from its environment variable, then parses
// args (which win). A value that does not parse, from either, is an error
// that names it; nothing bad is silently ignored.
func Parse(fs *flag.FlagSet, args []string) error { return ParseEnv(fs, args, EnvName) }

// ParseEnv is Parse with the variables envName names (CommandEnvName for
// the commands that are not roles). Numbers and durations that do not
// parse say what is wanted: TERMINATOR_TIMEOUT="3": want a duration such
// as 3s.
func ParseEnv(fs *flag.FlagSet, args []string, envName func(string) string) error {
	var errs []error
	creds := os.Getenv("CREDENTIALS_DIRECTORY")
	fs.VisitAll(func(f *flag.Flag) {
		env := envName(f.Name)
		if v, ok := os.LookupEnv(env); ok {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("environment %s=%q: %w (flag -%s)", env, v, explain(f, err), f.Name))
			}
			return
		}
		if creds != "" {
			if err := setFromCredential(f, creds, env); err != nil {
				errs = append(errs, err)
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return err
	}
	err := fs.Parse(args)
	if m := badFlagValue.FindStringSubmatch(fmt.Sprint(err)); m != nil {
		if f := fs.Lookup(m[2]); f != nil {
			return fmt.Errorf("invalid value %q for flag -%s: %w", m[1], m[2], explain(f, errors.New("parse error")))
		}
	}
	return err
}

// BuildVersion is the version the binary was built as (its module version,
// or its VCS revision), or "dev".
func BuildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			return s.Value[:12]
		}
	}
	return "dev"
}

// fileFlags are the flags whose value is a file's path: a credential gives
// them its own path, not its content.
var fileFlags = map[string]bool{
	"etcd-ca": true, "etcd-cert": true, "etcd-key": true,
	"bus-ca": true, "bus-cert": true, "bus-key": true,
	"admin-cert": true, "admin-key": true, "admin-token-file": true,
}

// maxCredential bounds a credential read as a flag's value (a password, a
// token, a store URL).
const maxCredential = 64 << 10

// setFromCredential sets f from the systemd credential named after its
// variable env, when dir (the unit's $CREDENTIALS_DIRECTORY) holds one:
// "ENV" (LoadCredential=ENV:/path) or "terminator_ENV" (a file ENV of the
// directory the shipped unit loads with LoadCredential=terminator:/dir). A
// file flag gets the credential's path, any other its content without a
// trailing newline. No credential: f keeps its value.
func setFromCredential(f *flag.Flag, dir, env string) error {
	var path string
	for _, name := range []string{env, "terminator_" + env} {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			path = p
			break
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("credential %s: %w (flag -%s)", p, err, f.Name)
		}
	}
	if path == "" {
		return nil
	}
	v := path
	if !fileFlags[f.Name] {
		b, err := readBounded(path, maxCredential)
		if err != nil {
			return fmt.Errorf("credential %s: %w (flag -%s)", path, err, f.Name)
		}
		v = strings.TrimRight(string(b), "\r\n")
	}
	if err := f.Value.Set(v); err != nil {
		// A secret's value is not repeated in the error.
		return fmt.Errorf("credential %s: %w (flag -%s)", path, explain(f, err), f.Name)
	}
	return nil
}

// readBounded reads the file at path, refusing one larger than max.
func readBounded(path string, max int64) ([]byte, error) {
	fl, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fl.Close()
	b, err := io.ReadAll(io.LimitReader(fl, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("larger than %d bytes", max)
	}
	return b, nil
}
