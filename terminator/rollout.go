package terminator

import (
	"crypto/rand"
	"encoding/hex"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/terminator-gw/terminator/nanobus/policy"
)

// The front is the edge: it decides, once per request, which feature flags
// are on and which variant of each A/B experiment the client is in, and
// writes both into the request's labels. Every call made for the request
// carries them (nanobus passes a handler's labels on), so the whole chain
// sees one decision, and every caller picks the variant's version.

// edge is the compiled flags and experiments; swapped whole.
type edge struct {
	flags       []edgeFlag
	experiments []edgeExperiment
	cookies     []string // cookie names the keys come from, for new clients
}

type edgeFlag struct {
	policy.Flag
	key keySource
}

type edgeExperiment struct {
	policy.Experiment
	service string
	key     keySource
	counts  []*variantCounts // per variant
}

// variantCounts counts the responses of one variant's clients by status
// class, so business numbers can be compared per variant.
type variantCounts struct {
	experiment, variant string
	classes             [6]atomic.Uint64
	sent                [6]uint64 // what the last statsd flush reported
}

type keySource struct {
	cookie bool
	name   string
}

// SetRollout gives the front the feature flags to decide and the A/B
// experiments of each service (by service name). It replaces what was set.
func (s *Server) SetRollout(flags []policy.Flag, experiments map[string]policy.Experiment) {
	e := &edge{}
	old := s.edge.Load()
	cookies := map[string]bool{}
	key := func(by string) keySource {
		kind, name, err := policy.ParseKeySource(by)
		if err != nil {
			return keySource{}
		}
		if kind == "cookie" {
			cookies[name] = true
		}
		return keySource{cookie: kind == "cookie", name: name}
	}
	for _, f := range flags {
		if f.Check() == nil {
			e.flags = append(e.flags, edgeFlag{Flag: f, key: key(f.By)})
		}
	}
	for _, service := range slices.Sorted(func(yield func(string) bool) {
		for k := range experiments {
			if !yield(k) {
				return
			}
		}
	}) {
		x := experiments[service]
		ex := edgeExperiment{Experiment: x, service: service, key: key(x.By)}
		for _, v := range x.Variants {
			ex.counts = append(ex.counts, old.counts(x.Name, v.Name))
		}
		e.experiments = append(e.experiments, ex)
	}
	for c := range cookies {
		e.cookies = append(e.cookies, c)
	}
	slices.Sort(e.cookies)
	s.edge.Store(e)
}

// counts returns the counters of experiment's variant, kept across
// SetRollout calls, or new ones.
func (e *edge) counts(experiment, variant string) *variantCounts {
	if e != nil {
		for _, x := range e.experiments {
			for _, c := range x.counts {
				if c.experiment == experiment && c.variant == variant {
					return c
				}
			}
		}
	}
	return &variantCounts{experiment: experiment, variant: variant}
}

// decide writes the request's labels into x (x.labels, which x.req
// carries) and the counters of the variants its client is in into
// x.variants (for counting). A client without the cookie a key comes from
// gets one, set on the response, so that it sticks from now on.
func (s *Server) decide(x *exchange, ctx *fasthttp.RequestCtx) {
	e := s.edge.Load()
	x.labels, x.variants = x.labels[:0], x.variants[:0]
	if e == nil || len(e.flags)+len(e.experiments) == 0 {
		return
	}
	for _, f := range e.flags {
		if f.Percent >= 100 || f.Percent > 0 && f.On(s.clientKey(x, ctx, f.key)) {
			x.labels = append(append(x.labels, ",+"...), f.Name...)
		}
	}
	for _, ex := range e.experiments {
		v := ex.Pick(s.clientKey(x, ctx, ex.key))
		if v == nil {
			continue
		}
		x.labels = append(append(append(append(x.labels, ','), ex.Name...), '='), v.Name...)
		for i := range ex.Variants {
			if ex.Variants[i].Name == v.Name {
				x.variants = append(x.variants, ex.counts[i])
			}
		}
	}
	if len(x.labels) > 0 {
		x.labels = x.labels[1:] // the first comma
	}
	x.req.Labels = x.labels
}

// clientKey is the key a decision sticks to: the cookie or header k names.
// A missing cookie is made up and set on the response (once per request);
// a missing header gives a random key, which sticks to nothing.
func (s *Server) clientKey(x *exchange, ctx *fasthttp.RequestCtx, k keySource) string {
	if !k.cookie {
		if v := ctx.Request.Header.Peek(k.name); len(v) > 0 {
			return string(v)
		}
		return newKey()
	}
	if v := ctx.Request.Header.Cookie(k.name); len(v) > 0 {
		return string(v)
	}
	for _, c := range x.madeCookies {
		if c[0] == k.name {
			return c[1]
		}
	}
	v := newKey()
	x.madeCookies = append(x.madeCookies, [2]string{k.name, v})
	var c fasthttp.Cookie
	c.SetKey(k.name)
	c.SetValue(v)
	c.SetPath("/")
	c.SetMaxAge(int((365 * 24 * time.Hour).Seconds()))
	c.SetHTTPOnly(true)
	c.SetSameSite(fasthttp.CookieSameSiteLaxMode)
	ctx.Response.Header.SetCookie(&c)
	return v
}

func newKey() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// countVariants counts the response for each variant the client is in.
func countVariants(x *exchange, status int) {
	if c := status / 100; c >= 1 && c <= 5 {
		for _, v := range x.variants {
			v.classes[c].Add(1)
		}
	}
}

// VariantStatus is one variant's responses by status class.
type VariantStatus struct {
	Experiment string            `json:"experiment"`
	Service    string            `json:"service"`
	Variant    string            `json:"variant"`
	Version    string            `json:"version"`
	Responses  map[string]uint64 `json:"responses"`
}

func (s *Server) variantStatus() []VariantStatus {
	e := s.edge.Load()
	if e == nil {
		return nil
	}
	var out []VariantStatus
	for _, ex := range e.experiments {
		for i, v := range ex.Variants {
			vs := VariantStatus{Experiment: ex.Name, Service: ex.service, Variant: v.Name, Version: v.Version, Responses: map[string]uint64{}}
			for class := 1; class <= 5; class++ {
				if n := ex.counts[i].classes[class].Load(); n > 0 {
					vs.Responses[strings.TrimPrefix(classTags[class], "status:")] = n
				}
			}
			out = append(out, vs)
		}
	}
	return out
}

// serverTiming appends the front's Server-Timing entries: the bus round
// trip and the time in the front, in milliseconds.
func serverTiming(dst []byte, bus, front time.Duration) []byte {
	dst = append(dst, "bus;dur="...)
	dst = strconv.AppendFloat(dst, float64(bus)/1e6, 'f', 3, 64)
	dst = append(dst, ", front;dur="...)
	return strconv.AppendFloat(dst, float64(front)/1e6, 'f', 3, 64)
}
