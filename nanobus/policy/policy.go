package policy

import (
	"bytes"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strings"
)

// Policy is how calls to one service are spread over its versions while a
// new one rolls out. Every caller applies it (the terminator and every
// node), so a web calling a new profiles is rolled out the same way as the
// front calling a new web; discovery keeps each caller's copy in step with
// etcd. The zero Policy spreads calls over every instance alike.
type Policy struct {
	// Weights is each version's share of new calls, relative to their sum
	// (80 and 20 send four calls in five to the first). While it is set,
	// instances of versions it does not name get no calls.
	Weights map[string]int `json:"weights,omitempty"`
	// Ghost, when set, sends copies of calls to a version under test and
	// compares its replies with the live ones.
	Ghost *Ghost `json:"ghost,omitempty"`
	// AB, when set, splits the edge's clients into variants that stick to
	// one version each.
	AB *Experiment `json:"ab,omitempty"`
}

// Ghost is a ghost rollout: a version that gets copies of calls and whose
// replies are compared with the live ones, never returned. Only calls to
// idempotent or ghost-safe routes are copied.
type Ghost struct {
	Version string `json:"version"`
	// Percent of the eligible calls copied; 0 means 100.
	Percent int `json:"percent,omitempty"`
	// Headers compared besides status and body (Content-Type, ...).
	Headers []string `json:"headers,omitempty"`
	// Ignore lists JSON object keys left out of the body comparison, at any
	// depth (timestamps, request IDs).
	Ignore []string `json:"ignore,omitempty"`
}

// Experiment is a sticky A/B split: the edge hashes each client's key
// (cookie or header, By) into one variant, and calls made for that client
// go to the variant's version.
type Experiment struct {
	Name     string    `json:"name"`
	By       string    `json:"by"` // "cookie:NAME" or "header:NAME"
	Variants []Variant `json:"variants"`
}

// Variant is one arm of an experiment.
type Variant struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Percent int    `json:"percent"` // share of clients, of the variants' sum
}

// Flag is a feature flag the edge decides per request: on for Percent of
// the clients (sticky by the key By names), off for the rest. A handler
// asks the request: req.Flag("new-inbox").
type Flag struct {
	Name    string `json:"name"`
	Percent int    `json:"percent"`      // 0 off, 100 on
	By      string `json:"by,omitempty"` // "cookie:NAME" or "header:NAME"; needed between 1 and 99
}

// Check reports what is wrong with p, or nil.
func (p *Policy) Check() error {
	for v, w := range p.Weights {
		if v == "" || w < 0 {
			return fmt.Errorf("policy: weight %d for version %q", w, v)
		}
	}
	if g := p.Ghost; g != nil && (g.Version == "" || g.Percent < 0 || g.Percent > 100) {
		return fmt.Errorf("policy: ghost %+v", *g)
	}
	if e := p.AB; e != nil {
		if e.Name == "" || !validName(e.Name) {
			return fmt.Errorf("policy: experiment name %q", e.Name)
		}
		if _, _, err := ParseKeySource(e.By); err != nil {
			return err
		}
		total := 0
		for _, v := range e.Variants {
			if !validName(v.Name) || v.Version == "" || v.Percent < 0 {
				return fmt.Errorf("policy: variant %+v", v)
			}
			total += v.Percent
		}
		if total <= 0 {
			return fmt.Errorf("policy: experiment %s has no share to split", e.Name)
		}
	}
	return nil
}

// Check reports what is wrong with f, or nil.
func (f *Flag) Check() error {
	switch {
	case !validName(f.Name):
		return fmt.Errorf("flag name %q: want [A-Za-z0-9._:-]", f.Name)
	case f.Percent < 0 || f.Percent > 100:
		return fmt.Errorf("flag %s: percent %d", f.Name, f.Percent)
	case f.Percent > 0 && f.Percent < 100 && f.By == "":
		return fmt.Errorf("flag %s: a percentage needs a key to stick to (-by cookie:NAME or header:NAME)", f.Name)
	}
	if f.By != "" {
		if _, _, err := ParseKeySource(f.By); err != nil {
			return err
		}
	}
	return nil
}

func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') {
			return false
		}
	}
	return true
}

// ParseKeySource splits "cookie:NAME" or "header:NAME".
func ParseKeySource(by string) (kind, name string, err error) {
	kind, name, _ = strings.Cut(by, ":")
	if (kind != "cookie" && kind != "header") || name == "" {
		return "", "", fmt.Errorf("key source %q: want cookie:NAME or header:NAME", by)
	}
	return kind, name, nil
}

// Slot places key in [0, 100) for what (a flag or an experiment): the
// same key always lands in the same place, on every process.
func Slot(what, key string) int {
	h := fnv.New64a()
	h.Write([]byte(what))
	h.Write([]byte{0})
	h.Write([]byte(key))
	return int(h.Sum64() % 100)
}

// Pick returns the variant key's bucket falls in.
func (e *Experiment) Pick(key string) *Variant {
	total := 0
	for _, v := range e.Variants {
		total += v.Percent
	}
	if total <= 0 {
		return nil
	}
	b := Slot(e.Name, key) * total / 100
	for i := range e.Variants {
		if b < e.Variants[i].Percent {
			return &e.Variants[i]
		}
		b -= e.Variants[i].Percent
	}
	return &e.Variants[len(e.Variants)-1]
}

// On reports whether the flag is on for key.
func (f *Flag) On(key string) bool {
	switch {
	case f.Percent >= 100:
		return true
	case f.Percent <= 0:
		return false
	}
	return Slot(f.Name, key) < f.Percent
}

// Clone returns a copy of p that shares nothing with it.
func (p *Policy) Clone() *Policy {
	c := *p
	c.Weights = maps.Clone(p.Weights)
	if p.Ghost != nil {
		g := *p.Ghost
		c.Ghost = &g
	}
	if p.AB != nil {
		e := *p.AB
		e.Variants = slices.Clone(e.Variants)
		c.AB = &e
	}
	return &c
}

// A request's labels are what the edge decided for its client, written
// once per request and carried by every call made for it: a comma-separated
// list of "+flag" for each flag on and "experiment=variant" for each
// experiment.

// FlagOn reports whether labels turn flag name on.
func FlagOn(labels []byte, name string) bool {
	_, on := label(labels, true, name)
	return on
}

// VariantOf returns the variant of experiment that labels put the client
// in, if any.
func VariantOf(labels []byte, experiment string) (string, bool) {
	return label(labels, false, experiment)
}

// label returns the value of item name in labels: for a flag ("+name")
// whether it is there, for an experiment ("name=variant") its variant.
func label(labels []byte, flag bool, name string) (string, bool) {
	for len(labels) > 0 {
		item := labels
		if i := bytes.IndexByte(labels, ','); i >= 0 {
			item, labels = labels[:i], labels[i+1:]
		} else {
			labels = nil
		}
		if flag {
			if len(item) == len(name)+1 && item[0] == '+' && string(item[1:]) == name {
				return "", true
			}
			continue
		}
		if len(item) > len(name) && item[len(name)] == '=' && string(item[:len(name)]) == name {
			return string(item[len(name)+1:]), true
		}
	}
	return "", false
}
