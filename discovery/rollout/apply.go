package rollout

import (
	"encoding/json"
	"log/slog"

	"github.com/terminator-gw/terminator/discovery"
	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/nanobus/policy"
)

// Applier keeps a node's rollout policies in step with what a Watcher
// sees under rollout/<service>: every caller of a service (the fronts and
// every node) applies its policy. Apply is called after each change the
// watcher reports, from one goroutine.
type Applier struct {
	node    *nanobus.Node
	w       *discovery.Watcher
	log     *slog.Logger
	applied map[string]string // service -> the raw policy applied
}

// NewApplier returns an Applier of w's policies to node.
func NewApplier(node *nanobus.Node, w *discovery.Watcher, log *slog.Logger) *Applier {
	return &Applier{node: node, w: w, log: log, applied: map[string]string{}}
}

// Apply gives the node the policies in the watcher's view, clearing those
// that went, and returns the A/B experiments among them by service (what
// a front decides per request). A policy that does not parse, or that the
// node refuses, is logged and the last one applied is kept. Only what
// callers apply is decoded (policy.Policy); a ramp's state is the driver's.
func (a *Applier) Apply() map[string]policy.Experiment {
	experiments := map[string]policy.Experiment{}
	values := a.w.Values("rollout/")
	for service := range a.applied {
		if _, ok := values[service]; !ok {
			_ = a.node.SetPolicy(service, nil)
			delete(a.applied, service)
		}
	}
	for service, raw := range values {
		var pol policy.Policy
		if err := json.Unmarshal(raw, &pol); err != nil {
			a.log.Warn("rollout policy does not parse; keeping the last", "service", service, "err", err)
			continue
		}
		if a.applied[service] != string(raw) {
			if err := a.node.SetPolicy(service, &pol); err != nil {
				a.log.Warn("rollout policy refused; keeping the last", "service", service, "err", err)
				continue
			}
			a.applied[service] = string(raw)
		}
		if pol.AB != nil {
			experiments[service] = *pol.AB
		}
	}
	return experiments
}

// FlagsOf is the feature flags in w's view (flags/<name>), what the fronts
// decide per request. A flag that does not parse is logged and left out.
func FlagsOf(w *discovery.Watcher, log *slog.Logger) []policy.Flag {
	var out []policy.Flag
	for name, raw := range w.Values("flags/") {
		f := policy.Flag{Name: name}
		if err := json.Unmarshal(raw, &f); err != nil || f.Name != name {
			log.Warn("feature flag does not parse", "flag", name, "err", err)
			continue
		}
		out = append(out, f)
	}
	return out
}
