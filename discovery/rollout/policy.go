package rollout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/terminator-gw/terminator/discovery"
	"github.com/terminator-gw/terminator/nanobus/policy"
)

// Policy is a service's rollout policy as etcd keeps it, at
// <prefix>/rollout/<service>: what every caller applies (policy.Policy:
// weights, ghost, A/B split) and the state of the ramp that sets the
// weights, if one was started. Callers decode it into policy.Policy and
// ignore the ramp.
type Policy struct {
	policy.Policy
	Ramp *Ramp `json:"ramp,omitempty"`
}

// Ramp is a ramp's whole state: the driver (whichever process leads the
// election) reads it from etcd on every check, so a new driver resumes
// where the last one stopped.
type Ramp struct {
	From  string   `json:"from"`  // the version traffic moves away from
	To    string   `json:"to"`    // the version traffic moves to
	Steps []int    `json:"steps"` // To's share at each step, in percent, ascending
	Every Duration `json:"every"` // the shortest time a step lasts
	Bounds

	Step        int       `json:"step"` // index in Steps of the step in force
	Started     time.Time `json:"started"`
	StepStarted time.Time `json:"step_started"`
	State       string    `json:"state"`            // RampRunning, RampDone, RampRolledBack, RampStopped
	Reason      string    `json:"reason,omitempty"` // why it ended (a rollback's numbers)
	Note        string    `json:"note,omitempty"`   // why the step in force does not end yet
	Ended       time.Time `json:"ended,omitzero"`
}

// A ramp's states.
const (
	RampRunning    = "running"
	RampDone       = "done"
	RampRolledBack = "rolled back"
	RampStopped    = "stopped"
)

// Bounds are how much worse than the version it replaces a ramp's new
// version may do: the health rule (see the package doc).
type Bounds struct {
	// MinCalls is how many calls the new version must have answered in a
	// step's window before the step may end. (A rollback needs 10 calls,
	// and numbers out of bounds beyond doubt: see the package doc.)
	MinCalls int `json:"min_calls"`
	// MaxErrorIncrease is how many percentage points the new version's
	// error rate may exceed the old one's by.
	MaxErrorIncrease float64 `json:"max_error_increase"`
	// MaxP99Ratio and P99Slack bound the new version's p99:
	// old p99 × MaxP99Ratio + P99Slack at most.
	MaxP99Ratio float64  `json:"max_p99_ratio"`
	P99Slack    Duration `json:"p99_slack"`
}

// DefaultBounds are the bounds a ramp gets unless told otherwise.
var DefaultBounds = Bounds{MinCalls: 100, MaxErrorIncrease: 1, MaxP99Ratio: 1.5, P99Slack: Duration(5 * time.Millisecond)}

// DefaultSteps and DefaultEvery shape a ramp unless told otherwise.
var (
	DefaultSteps = []int{1, 5, 25, 50, 100}
	DefaultEvery = 30 * time.Second
)

// Percent is To's share in the step in force.
func (r *Ramp) Percent() int { return r.Steps[min(r.Step, len(r.Steps)-1)] }

// Stop stops a running ramp where it stands, for reason, and reports
// whether it did (false for nil or a ramp that has ended).
func (r *Ramp) Stop(reason string) bool {
	if r == nil || r.State != RampRunning {
		return false
	}
	r.State, r.Reason, r.Ended = RampStopped, reason, time.Now().UTC()
	return true
}

// weights are the weights of step i.
func (r *Ramp) weights(i int) map[string]int {
	s := min(r.Steps[i], 100)
	return map[string]int{r.From: 100 - s, r.To: s}
}

// Check reports what is wrong with r, or nil.
func (r *Ramp) Check() error {
	switch {
	case r.From == "" || r.To == "" || r.From == r.To:
		return fmt.Errorf("ramp from %q to %q: want two different versions", r.From, r.To)
	case len(r.Steps) == 0:
		return errors.New("ramp: no steps")
	case r.Every <= 0:
		return fmt.Errorf("ramp: every %v: want a positive duration", r.Every)
	case r.MinCalls < 1 || r.MaxErrorIncrease < 0 || r.MaxP99Ratio < 1 || r.P99Slack < 0:
		return fmt.Errorf("ramp bounds %+v: want min calls >= 1, error increase >= 0, p99 ratio >= 1, slack >= 0", r.Bounds)
	}
	for i, s := range r.Steps {
		if s < 1 || s > 100 || i > 0 && s <= r.Steps[i-1] {
			return fmt.Errorf("ramp steps %v: want ascending percentages from 1 to 100", r.Steps)
		}
	}
	return nil
}

// Check reports what is wrong with p, or nil.
func (p *Policy) Check() error {
	if err := p.Policy.Check(); err != nil {
		return err
	}
	if p.Ramp != nil {
		return p.Ramp.Check()
	}
	return nil
}

func (p *Policy) clone() *Policy {
	c := &Policy{}
	b, _ := json.Marshal(p)
	_ = json.Unmarshal(b, c)
	return c
}

// empty reports whether p says nothing: its key can go.
func (p *Policy) empty() bool {
	return len(p.Weights) == 0 && p.Ghost == nil && p.AB == nil && p.Ramp == nil
}

// Duration is a time.Duration written in JSON as text ("30s").
type Duration time.Duration

func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	*d = Duration(v)
	return err
}

func (d Duration) String() string { return time.Duration(d).String() }

// ErrConflict is returned when a policy kept changing under an update:
// others wrote it between every read and write tried.
var ErrConflict = errors.New("rollout: the policy kept changing under the update; try again")

// maxTries bounds the read-change-write rounds of an update that others'
// writes keep beating.
const maxTries = 16

// pause waits before try number try of an update: not before the first,
// then a random while under a bound that doubles (5ms, 10ms, ... 320ms at
// most), so that writers that collided do not collide again in step, even
// on a loaded machine where each round takes long.
func pause(ctx context.Context, try int) error {
	if try == 0 {
		return nil
	}
	bound := 5 * time.Millisecond << min(try-1, 6)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(rand.N(bound)):
		return nil
	}
}

// Store reads and writes rollout policies, feature flags and the
// published numbers in etcd. Every write of a policy or a flag is a
// compare-and-swap on the key's mod revision: the CLI and the ramp driver
// may write at once, and neither loses the other's update.
type Store struct {
	cli    *clientv3.Client
	prefix string // "/terminator/"
}

// NewStore works on the keys under prefix (default discovery.DefaultPrefix).
func NewStore(cli *clientv3.Client, prefix string) *Store {
	if prefix == "" {
		prefix = discovery.DefaultPrefix
	}
	return &Store{cli: cli, prefix: strings.TrimSuffix(prefix, "/") + "/"}
}

func (s *Store) policyKey(service string) string { return s.prefix + "rollout/" + service }
func (s *Store) flagKey(name string) string      { return s.prefix + "flags/" + name }
func (s *Store) statsPrefix() string             { return s.prefix + "stats/" }
func (s *Store) electionKey() string             { return s.prefix + "election/ramp" }

// stored is a policy with the mod revision it was read at (0: no key).
type stored struct {
	*Policy
	rev int64
}

// ErrBadPolicy is a policy in etcd that does not parse. Callers keep
// the last one they could apply; an update replaces it.
var ErrBadPolicy = errors.New("rollout policy does not parse")

func decodePolicy(b []byte) (*Policy, error) {
	p := &Policy{}
	if err := json.Unmarshal(b, p); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadPolicy, err)
	}
	return p, nil
}

// Policy returns service's policy, or nil when it has none.
func (s *Store) Policy(ctx context.Context, service string) (*Policy, error) {
	st, err := s.policy(ctx, service)
	return st.Policy, err
}

func (s *Store) policy(ctx context.Context, service string) (stored, error) {
	resp, err := s.cli.Get(ctx, s.policyKey(service))
	if err != nil {
		return stored{}, fmt.Errorf("read rollout policy of %s: %w", service, err)
	}
	if len(resp.Kvs) == 0 {
		return stored{}, nil
	}
	p, err := decodePolicy(resp.Kvs[0].Value)
	if err != nil {
		err = fmt.Errorf("%s: %w", service, err)
	}
	return stored{p, resp.Kvs[0].ModRevision}, err
}

// Policies returns every service's policy, by service. Values that do not
// parse are left out.
func (s *Store) Policies(ctx context.Context) (map[string]*Policy, error) {
	all, err := s.policies(ctx)
	out := make(map[string]*Policy, len(all))
	for k, v := range all {
		out[k] = v.Policy
	}
	return out, err
}

func (s *Store) policies(ctx context.Context) (map[string]stored, error) {
	resp, err := s.cli.Get(ctx, s.prefix+"rollout/", clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("read rollout policies: %w", err)
	}
	out := map[string]stored{}
	for _, kv := range resp.Kvs {
		if p, err := decodePolicy(kv.Value); err == nil {
			out[strings.TrimPrefix(string(kv.Key), s.prefix+"rollout/")] = stored{p, kv.ModRevision}
		}
	}
	return out, nil
}

// UpdatePolicy changes service's policy with change, which gets a copy of
// the policy in etcd (an empty one when there is none) and returns the new
// one: nil, or one that says nothing, deletes the key. The write happens
// only if nobody wrote the key since it was read; otherwise it reads and
// calls change again, a few times, then gives up with ErrConflict. It
// returns what it wrote.
func (s *Store) UpdatePolicy(ctx context.Context, service string, change func(*Policy) (*Policy, error)) (*Policy, error) {
	if service == "" || strings.Contains(service, "/") {
		return nil, fmt.Errorf("service name %q", service)
	}
	for try := range maxTries {
		if err := pause(ctx, try); err != nil {
			return nil, err
		}
		cur, err := s.policy(ctx, service)
		if err != nil && !errors.Is(err, ErrBadPolicy) {
			return nil, err
		}
		in := &Policy{}
		if cur.Policy != nil {
			in = cur.Policy.clone()
		}
		next, err := change(in)
		if err != nil {
			return nil, err
		}
		ok, err := s.writePolicy(ctx, service, next, cur.rev)
		if err != nil {
			return nil, err
		}
		if ok {
			return next, nil
		}
	}
	return nil, ErrConflict
}

// writePolicy writes p (nil or empty: deletes the key) if the key is still
// at rev (0: absent) and every extra comparison holds. It reports whether
// it wrote.
func (s *Store) writePolicy(ctx context.Context, service string, p *Policy, rev int64, extra ...clientv3.Cmp) (bool, error) {
	key := s.policyKey(service)
	op := clientv3.OpDelete(key)
	if p != nil && !p.empty() {
		if err := p.Check(); err != nil {
			return false, err
		}
		b, err := json.Marshal(p)
		if err != nil {
			return false, err
		}
		op = clientv3.OpPut(key, string(b))
	}
	cmps := append([]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", rev)}, extra...)
	resp, err := s.cli.Txn(ctx).If(cmps...).Then(op).Commit()
	if err != nil {
		return false, fmt.Errorf("write rollout policy of %s: %w", service, err)
	}
	return resp.Succeeded, nil
}

// Flags returns the feature flags, sorted by name. Values that do not
// parse are left out.
func (s *Store) Flags(ctx context.Context) ([]policy.Flag, error) {
	resp, err := s.cli.Get(ctx, s.prefix+"flags/", clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("read feature flags: %w", err)
	}
	var out []policy.Flag
	for _, kv := range resp.Kvs {
		f := policy.Flag{Name: strings.TrimPrefix(string(kv.Key), s.prefix+"flags/")}
		if json.Unmarshal(kv.Value, &f) == nil {
			out = append(out, f)
		}
	}
	slices.SortFunc(out, func(a, b policy.Flag) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// UpdateFlag changes flag name with change, which gets the flag in etcd (a
// zero one named name when there is none) and returns the new one. Like
// UpdatePolicy, it writes only what it read, retrying a few times.
func (s *Store) UpdateFlag(ctx context.Context, name string, change func(policy.Flag) (policy.Flag, error)) (policy.Flag, error) {
	key := s.flagKey(name)
	for try := range maxTries {
		if err := pause(ctx, try); err != nil {
			return policy.Flag{}, err
		}
		resp, err := s.cli.Get(ctx, key)
		if err != nil {
			return policy.Flag{}, fmt.Errorf("read feature flag %s: %w", name, err)
		}
		f, rev := policy.Flag{Name: name}, int64(0)
		if len(resp.Kvs) > 0 {
			_ = json.Unmarshal(resp.Kvs[0].Value, &f) // one that does not parse is replaced
			f.Name, rev = name, resp.Kvs[0].ModRevision
		}
		if f, err = change(f); err != nil {
			return policy.Flag{}, err
		}
		f.Name = name
		if err := f.Check(); err != nil {
			return policy.Flag{}, err
		}
		b, _ := json.Marshal(f)
		tx, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).Then(clientv3.OpPut(key, string(b))).Commit()
		if err != nil {
			return policy.Flag{}, fmt.Errorf("write feature flag %s: %w", name, err)
		}
		if tx.Succeeded {
			return f, nil
		}
	}
	return policy.Flag{}, ErrConflict
}

// DeleteFlag removes flag name; it reports whether there was one.
func (s *Store) DeleteFlag(ctx context.Context, name string) (bool, error) {
	resp, err := s.cli.Delete(ctx, s.flagKey(name))
	if err != nil {
		return false, fmt.Errorf("delete feature flag %s: %w", name, err)
	}
	return resp.Deleted > 0, nil
}

// Instances returns the registered instances of service (every service
// when service is ""), by service and version.
func (s *Store) Instances(ctx context.Context, service string) (map[string]map[string][]discovery.Registration, error) {
	key := s.prefix + "services/"
	if service != "" {
		key += service + "/"
	}
	resp, err := s.cli.Get(ctx, key, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("read registrations: %w", err)
	}
	out := map[string]map[string][]discovery.Registration{}
	for _, kv := range resp.Kvs {
		var r discovery.Registration
		if json.Unmarshal(kv.Value, &r) != nil || r.Service == "" {
			continue
		}
		if out[r.Service] == nil {
			out[r.Service] = map[string][]discovery.Registration{}
		}
		out[r.Service][r.Version] = append(out[r.Service][r.Version], r)
	}
	return out, nil
}

// sortedKeys is m's keys, sorted.
func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
