package terminator

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"
)

// Config configures a Server. Every field has a flag and an environment
// variable (see RegisterFlags); the zero value of a field means its default.
type Config struct {
	Listen         string         // public HTTP address
	AdminListen    string         // admin HTTP address: health, readiness, pprof, status
	Timeout        time.Duration  // per-request deadline unless the route announces one
	MaxBodyBytes   int            // larger bodies get 413
	MaxHeaderBytes int            // larger request heads get 431
	ReadTimeout    time.Duration  // reading one request
	WriteTimeout   time.Duration  // writing one response
	IdleTimeout    time.Duration  // keep-alive connection idle
	MaxConns       int            // concurrent connections
	MaxWaiting     int            // requests waiting for a reply; over it, 503 at once
	RetryAfter     time.Duration  // Retry-After on 503s for overload
	DrainTimeout   time.Duration  // how long in-flight requests get on shutdown
	TrustedProxies []netip.Prefix // direct peers whose X-Forwarded-For / X-Real-IP are believed
	StatsdAddr     string         // DogStatsD agent, "" for none
	LatencySample  float64        // share of requests whose latency is sent to statsd
	StatsdInterval time.Duration  // how often counters are flushed to statsd
}

func (c *Config) setDefaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	if c.Listen == "" {
		c.Listen = ":8080"
	}
	if c.AdminListen == "" {
		c.AdminListen = "127.0.0.1:8081"
	}
	defDur(&c.Timeout, 3*time.Second)
	def(&c.MaxBodyBytes, 1<<20)
	def(&c.MaxHeaderBytes, 8<<10)
	defDur(&c.ReadTimeout, 10*time.Second)
	defDur(&c.WriteTimeout, 10*time.Second)
	defDur(&c.IdleTimeout, 60*time.Second)
	def(&c.MaxConns, 10000)
	def(&c.MaxWaiting, 4096)
	defDur(&c.RetryAfter, time.Second)
	defDur(&c.DrainTimeout, 10*time.Second)
	defDur(&c.StatsdInterval, 10*time.Second)
	if c.LatencySample <= 0 || c.LatencySample > 1 {
		c.LatencySample = 0.1
	}
}

// RegisterFlags registers the config's flags on fs, with defaults taken from
// the environment (TERMINATOR_LISTEN, ...) and shown by --help.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	c.setDefaults()
	str := func(p *string, name, env, usage string) {
		fs.StringVar(p, name, envOr(env, *p), usage+" (env "+env+")")
	}
	dur := func(p *time.Duration, name, env, usage string) {
		fs.DurationVar(p, name, envDuration(env, *p), usage+" (env "+env+")")
	}
	num := func(p *int, name, env, usage string) {
		fs.IntVar(p, name, envInt(env, *p), usage+" (env "+env+")")
	}
	str(&c.Listen, "listen", "TERMINATOR_LISTEN", "public HTTP address")
	str(&c.AdminListen, "admin", "TERMINATOR_ADMIN", "admin HTTP address (health, readiness, pprof, status)")
	dur(&c.Timeout, "timeout", "TERMINATOR_TIMEOUT", "request deadline unless the route announces one")
	num(&c.MaxBodyBytes, "max-body", "TERMINATOR_MAX_BODY", "request body limit in bytes (413 over it)")
	num(&c.MaxHeaderBytes, "max-header", "TERMINATOR_MAX_HEADER", "request line and headers limit in bytes (431 over it)")
	dur(&c.ReadTimeout, "read-timeout", "TERMINATOR_READ_TIMEOUT", "time to read one request")
	dur(&c.WriteTimeout, "write-timeout", "TERMINATOR_WRITE_TIMEOUT", "time to write one response")
	dur(&c.IdleTimeout, "idle-timeout", "TERMINATOR_IDLE_TIMEOUT", "keep-alive idle time")
	num(&c.MaxConns, "max-conns", "TERMINATOR_MAX_CONNS", "concurrent client connections")
	num(&c.MaxWaiting, "max-waiting", "TERMINATOR_MAX_WAITING", "requests waiting for replies before 503")
	dur(&c.RetryAfter, "retry-after", "TERMINATOR_RETRY_AFTER", "Retry-After sent with overload 503s")
	dur(&c.DrainTimeout, "drain-timeout", "TERMINATOR_DRAIN_TIMEOUT", "time in-flight requests get on shutdown")
	str(&c.StatsdAddr, "statsd", "TERMINATOR_STATSD", "DogStatsD address, e.g. 127.0.0.1:8125 (empty: off)")
	dur(&c.StatsdInterval, "statsd-interval", "TERMINATOR_STATSD_INTERVAL", "statsd flush period")
	fs.Float64Var(&c.LatencySample, "latency-sample", c.LatencySample, "share of requests whose latency goes to statsd")
	fs.Func("trusted-proxies", "comma-separated CIDRs whose X-Forwarded-For/X-Real-IP are believed (env TERMINATOR_TRUSTED_PROXIES; default 127.0.0.1/32,::1/128)",
		func(s string) error {
			p, err := ParsePrefixes(s)
			c.TrustedProxies = p
			return err
		})
	c.TrustedProxies, _ = ParsePrefixes(envOr("TERMINATOR_TRUSTED_PROXIES", "127.0.0.1/32,::1/128"))
}

// ParsePrefixes parses "10.0.0.0/8,127.0.0.1" (a bare address is a /32 or /128).
func ParsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return nil, fmt.Errorf("trusted proxy %q: %w", f, err)
			}
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q: %w", f, err)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func envOr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

func envDuration(name string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv(name)); err == nil {
		return v
	}
	return def
}
