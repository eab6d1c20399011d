package terminator

import (
	"flag"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/nanobus/limit"
)

// Config configures a Server. Every field has a flag and an environment
// variable (see RegisterFlags); the zero value of a field means its default.
type Config struct {
	Listen         string        // public HTTP address: "host:port", or "unix:PATH" (see Listen)
	Socket         SocketPerm    // who may connect when Listen is a unix socket
	Timeout        time.Duration // per-request deadline unless the route announces one
	MaxBodyBytes   int           // larger bodies get 413
	MaxHeaderBytes int           // larger request heads get 431
	ReadTimeout    time.Duration // reading one request
	WriteTimeout   time.Duration // writing one response
	IdleTimeout    time.Duration // keep-alive connection idle
	MaxConns       int           // concurrent connections
	MaxWaiting     int           // requests waiting for a reply, at most; over it, 503 at once
	// FixedLimit makes MaxWaiting the limit, instead of the bound of an
	// adaptive limit driven by latency (limit.Limiter).
	FixedLimit bool
	// Admission is how requests over the limit wait for a turn: CoDel
	// (the default: in arrival order up to QueueWait; once one waited
	// longer, the queue stands and they wait QueueTarget, newest first,
	// until it empties) or FIFO (arrival order, QueueWait each; the policy
	// before CoDel). See limit.CoDel.
	Admission limit.Policy
	// QueueWait is the longest a request over the limit waits for a turn
	// while the queue is not standing (FIFO: at all).
	QueueWait time.Duration
	// QueueTarget is the longest wait while the queue stands (CoDel).
	QueueTarget    time.Duration
	RetryAfter     time.Duration  // Retry-After on 503s for overload
	DrainTimeout   time.Duration  // how long in-flight requests get on shutdown
	TrustedProxies []netip.Prefix // direct peers whose X-Forwarded-For / X-Real-IP are believed
	// TrustUnix makes a peer on the unix socket (Listen "unix:PATH") a
	// trusted proxy, as "unix" in -trusted-proxies does (the flag's
	// default): who may connect is who may open the socket (Socket), and
	// with no address of its own, the client's comes from its headers.
	TrustUnix bool

	StatsdAddr     string        // DogStatsD agent, "" for none
	LatencySample  float64       // share of requests whose latency is sent to statsd
	StatsdInterval time.Duration // how often counters are flushed to statsd
	// HideServerTiming leaves out the Server-Timing header that names the
	// service and version that answered, with the handler's, the bus's and
	// the front's times.
	HideServerTiming bool
	// BodyBudget bounds the request body bytes held at once, across all
	// connections: a body that does not fit is refused (503) before it is
	// read. Without it, memory would be bounded by MaxConns x MaxBodyBytes.
	BodyBudget int
	// AccessLogRate bounds the access log's lines a second for requests
	// that went well (and 499s, and overload refusals): the rest are
	// counted, not written. A 5xx (at ERROR) and a request slower than
	// SlowRequest (at WARN) are always written. Default 100.
	AccessLogRate int
	// SlowRequest is the time over which a request is logged at WARN,
	// whatever the rate. Default 1s.
	SlowRequest time.Duration
	// CORS is the cross-origin policy of every public route that declares
	// none of its own (nanobus.WithCORS); no Origins: none.
	CORS nanobus.CORS
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
		c.Listen = "127.0.0.1:8080" // loopback unless told: it sits behind nginx
	}
	defDur(&c.Timeout, 3*time.Second)
	def(&c.MaxBodyBytes, 1<<20)
	def(&c.BodyBudget, 64<<20)
	def(&c.MaxHeaderBytes, 8<<10)
	defDur(&c.ReadTimeout, 10*time.Second)
	defDur(&c.WriteTimeout, 10*time.Second)
	defDur(&c.IdleTimeout, 60*time.Second)
	def(&c.MaxConns, 10000)
	def(&c.MaxWaiting, 4096)
	defDur(&c.RetryAfter, time.Second)
	defDur(&c.QueueWait, 100*time.Millisecond)
	defDur(&c.QueueTarget, 5*time.Millisecond)
	defDur(&c.DrainTimeout, 10*time.Second)
	defDur(&c.StatsdInterval, 10*time.Second)
	def(&c.AccessLogRate, 100)
	defDur(&c.SlowRequest, time.Second)
	if c.LatencySample <= 0 || c.LatencySample > 1 {
		c.LatencySample = 0.1
	}
}

// RegisterFlags registers the config's flags on fs, with the defaults
// shown by --help. (The binary gives each flag an environment variable:
// TERMINATOR_ and the flag's name, e.g. TERMINATOR_MAX_WAITING.)
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	c.setDefaults()
	fs.StringVar(&c.Listen, "listen", c.Listen, "public HTTP address: host:port (0.0.0.0:8080 for every interface), or unix:PATH, a unix socket for nginx on this host")
	if c.Socket.Mode == 0 {
		c.Socket.Mode = DefaultSocketMode
	}
	fs.Var((*socketMode)(&c.Socket.Mode), "listen-mode", "with -listen unix:PATH, the socket's permissions, octal: 0660 lets the owner and the socket's group (nginx's, see -listen-group) connect; 0666 would let every local user connect and, with unix in -trusted-proxies, claim any client address")
	fs.StringVar(&c.Socket.Group, "listen-group", c.Socket.Group, "with -listen unix:PATH, the socket's group (name or number; the process must be a member): nginx's, e.g. www-data; empty: the process's own")
	fs.DurationVar(&c.Timeout, "timeout", c.Timeout, "request deadline unless the route declares one")
	fs.IntVar(&c.MaxBodyBytes, "max-body", c.MaxBodyBytes, "request body limit in bytes (413 over it)")
	fs.IntVar(&c.BodyBudget, "body-budget", c.BodyBudget, "request body bytes held at once, all connections together (503 with Retry-After over it; a body larger than it gets 413)")
	fs.IntVar(&c.MaxHeaderBytes, "max-header", c.MaxHeaderBytes, "request line and headers limit in bytes (431 over it)")
	fs.DurationVar(&c.ReadTimeout, "read-timeout", c.ReadTimeout, "time to read one request")
	fs.DurationVar(&c.WriteTimeout, "write-timeout", c.WriteTimeout, "time to write one response")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", c.IdleTimeout, "keep-alive idle time")
	fs.IntVar(&c.MaxConns, "max-conns", c.MaxConns, "concurrent client connections")
	fs.IntVar(&c.MaxWaiting, "max-waiting", c.MaxWaiting, "requests waiting for replies, at most: the adaptive limit's ceiling, or with -adaptive-limit=false the limit")
	fs.Var((*notBool)(&c.FixedLimit), "adaptive-limit", "limit the requests waiting for replies adaptively, by measured latency; over the limit, 503 at once (default true)")
	fs.Var((*policyFlag)(&c.Admission), "admission", "how requests over the limit wait for a turn: codel (in arrival order up to -queue-wait; once one waited longer, the queue stands: -queue-target, newest first, until it empties) or fifo (arrival order, up to -queue-wait)")
	fs.DurationVar(&c.QueueWait, "queue-wait", c.QueueWait, "longest wait for a turn over the limit (codel: while the queue does not stand), then 503 with Retry-After")
	fs.DurationVar(&c.QueueTarget, "queue-target", c.QueueTarget, "longest wait for a turn while the queue stands (codel)")
	fs.DurationVar(&c.RetryAfter, "retry-after", c.RetryAfter, "Retry-After sent with overload 503s")
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", c.DrainTimeout, "time in-flight requests get on shutdown")
	fs.StringVar(&c.StatsdAddr, "statsd", c.StatsdAddr, "DogStatsD address, e.g. 127.0.0.1:8125 (empty: off)")
	fs.DurationVar(&c.StatsdInterval, "statsd-interval", c.StatsdInterval, "statsd flush period")
	fs.Float64Var(&c.LatencySample, "latency-sample", c.LatencySample, "share of requests whose latency goes to statsd, 0 to 1")
	fs.IntVar(&c.AccessLogRate, "access-log-rate", c.AccessLogRate, "access log lines a second for requests that went well (and 499s, overload 503s); more are counted, not written; 5xx (ERROR) and slow requests (WARN) are always written")
	fs.DurationVar(&c.SlowRequest, "slow-request", c.SlowRequest, "a request slower than this is logged at WARN, whatever -access-log-rate")
	fs.Var((*notBool)(&c.HideServerTiming), "server-timing", "send Server-Timing (service and version that answered; handler, bus and front times) with every reply (default true)")
	fs.Func("cors-origins", "CORS: comma-separated origins whose pages may call the public routes (https://app.example), * for any; empty: no CORS (a route's own policy overrides it)",
		func(s string) error {
			c.CORS.Origins = splitList(s)
			return checkCORS(&nanobus.CORS{Origins: c.CORS.Origins})
		})
	fs.Func("cors-methods", "CORS: comma-separated methods a preflight allows (empty: the methods the path serves)",
		func(s string) error {
			c.CORS.Methods = splitList(s)
			return checkCORS(&nanobus.CORS{Methods: c.CORS.Methods})
		})
	fs.Func("cors-headers", "CORS: comma-separated request headers a preflight allows beyond the safelisted ones (e.g. Content-Type,Authorization)",
		func(s string) error {
			c.CORS.Headers = splitList(s)
			return checkCORS(&nanobus.CORS{Headers: c.CORS.Headers})
		})
	if c.CORS.MaxAge <= 0 {
		c.CORS.MaxAge = 10 * time.Minute
	}
	fs.DurationVar(&c.CORS.MaxAge, "cors-max-age", c.CORS.MaxAge, "CORS: how long a browser may keep a preflight's answer (Access-Control-Max-Age, whole seconds)")
	fs.BoolVar(&c.CORS.Credentials, "cors-credentials", c.CORS.Credentials, "CORS: let pages send cookies and credentials (Access-Control-Allow-Credentials; the origin is echoed, never *)")
	c.TrustedProxies, c.TrustUnix, _ = ParseTrustedProxies(DefaultTrustedProxies)
	fs.Func("trusted-proxies", "comma-separated CIDRs whose X-Forwarded-For/X-Real-IP are believed, and unix for any peer on the -listen unix socket (default "+DefaultTrustedProxies+")",
		func(s string) error {
			var err error
			c.TrustedProxies, c.TrustUnix, err = ParseTrustedProxies(s)
			return err
		})
}

// DefaultTrustedProxies is -trusted-proxies unless told: nginx on this
// host, over loopback TCP or the unix socket.
const DefaultTrustedProxies = "127.0.0.1/32,::1/128,unix"

// ParseTrustedProxies parses -trusted-proxies: CIDRs or addresses (see
// ParsePrefixes), and "unix", which trusts every peer on the unix socket.
func ParseTrustedProxies(s string) (cidrs []netip.Prefix, unix bool, err error) {
	var rest []string
	for _, f := range strings.Split(s, ",") {
		if strings.TrimSpace(f) == "unix" {
			unix = true
			continue
		}
		rest = append(rest, f)
	}
	cidrs, err = ParsePrefixes(strings.Join(rest, ","))
	return cidrs, unix, err
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

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// notBool is a boolean flag that sets the opposite of its value: the
// flag reads as what users want to turn on, the field as a zero-value
// default.
type notBool bool

func (b *notBool) String() string { return strconv.FormatBool(!bool(*b)) }

func (b *notBool) Set(s string) error {
	v, err := strconv.ParseBool(s)
	*b = notBool(!v)
	return err
}

func (b *notBool) IsBoolFlag() bool { return true }

// policyFlag is limit.Policy as a flag value.
type policyFlag limit.Policy

func (p *policyFlag) String() string { return limit.Policy(*p).String() }

func (p *policyFlag) Set(s string) error {
	v, ok := limit.ParsePolicy(s)
	if !ok {
		return fmt.Errorf("want codel or fifo, not %q", s)
	}
	*p = policyFlag(v)
	return nil
}
