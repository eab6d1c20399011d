package rollout

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"os"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"golang.org/x/time/rate"
)

// DriveOptions tunes a Driver.
type DriveOptions struct {
	Prefix string // default discovery.DefaultPrefix
	// Name says who drives, as `rollout show` prints it ("front
	// 10.0.0.5:8080"); the host and process ID are added.
	Name string
	// TTL of the election's lease: how long after this process dies
	// another one takes over. Default 5s. (A process that stops cleanly
	// resigns: another one takes over at once.)
	TTL time.Duration
	// Check is how often a running ramp is judged. Default 250ms.
	Check  time.Duration
	Logger *slog.Logger
}

// Leader is who drives the ramps, as the election's key says.
type Leader struct {
	Name string `json:"name"`
	Host string `json:"host"`
	PID  int    `json:"pid"`
}

func (l Leader) String() string { return fmt.Sprintf("%s (host %s, pid %d)", l.Name, l.Host, l.PID) }

// Driver campaigns to drive the ramps and, while it leads, drives them:
// every running ramp is judged every Check, advanced when its step is over
// and the new version stayed within bounds, and rolled back at once on a
// breach. Every process with a front runs one; etcd's election
// (<prefix>/election/ramp) makes exactly one of them lead.
type Driver struct {
	cli    *clientv3.Client
	store  *Store
	opt    DriveOptions
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
}

// Drive starts campaigning, in the background, until Close.
func Drive(cli *clientv3.Client, opt DriveOptions) *Driver {
	if opt.TTL <= 0 {
		opt.TTL = 5 * time.Second
	}
	if opt.Check <= 0 {
		opt.Check = 250 * time.Millisecond
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &Driver{cli: cli, store: NewStore(cli, opt.Prefix), opt: opt, ctx: ctx, cancel: cancel, done: make(chan struct{})}
	go d.run()
	return d
}

// Close stops driving: a leader resigns, so that another takes over at
// once.
func (d *Driver) Close() {
	d.cancel()
	<-d.done
}

// run campaigns and leads, again and again: a session lost (etcd
// unreachable for a TTL) ends the lead, and the campaign starts over.
func (d *Driver) run() {
	defer close(d.done)
	retry := time.Duration(0)
	for d.ctx.Err() == nil {
		select {
		case <-d.ctx.Done():
			return
		case <-time.After(retry):
		}
		retry = min(max(2*retry, 200*time.Millisecond), 2*time.Second)
		if err := d.campaign(); err != nil && d.ctx.Err() == nil {
			d.opt.Logger.Warn("ramp driver: campaign failed; trying again", "err", err, "in", retry)
			continue
		}
		retry = 0
	}
}

// campaign waits to be elected, then drives until the session or the
// driver ends.
func (d *Driver) campaign() error {
	sess, err := concurrency.NewSession(d.cli, concurrency.WithTTL(max(1, int(d.opt.TTL/time.Second))), concurrency.WithContext(d.ctx))
	if err != nil {
		return fmt.Errorf("election session: %w", err)
	}
	defer sess.Close()
	ctx, cancel := context.WithCancel(d.ctx)
	defer cancel()
	go func() {
		select {
		case <-sess.Done(): // the lease is lost: whoever leads now, it is not us
			cancel()
		case <-ctx.Done():
		}
	}()
	e := concurrency.NewElection(sess, d.store.electionKey())
	host, _ := os.Hostname()
	me, _ := json.Marshal(Leader{Name: d.opt.Name, Host: host, PID: os.Getpid()})
	if err := e.Campaign(ctx, string(me)); err != nil {
		return fmt.Errorf("campaign: %w", err)
	}
	d.opt.Logger.Info("driving rollout ramps", "election", d.store.electionKey())
	d.drive(ctx, clientv3.Compare(clientv3.CreateRevision(e.Key()), "=", e.Rev()))
	rctx, rcancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer rcancel()
	_ = e.Resign(rctx) // the next in line takes over now, not a TTL later
	return nil
}

// track is what a driver keeps of one ramp's step: the numbers when it
// began watching the step, from which the step's window counts.
type track struct {
	step  int
	since time.Time // the step's StepStarted
	base  Reading
}

// drive judges every running ramp every Check, until ctx ends. Each write
// holds only while this driver still leads (stillLeader) and nobody wrote
// the policy since it was read.
func (d *Driver) drive(ctx context.Context, stillLeader clientv3.Cmp) {
	t := time.NewTicker(d.opt.Check)
	defer t.Stop()
	tracks := map[string]*track{}
	warn := rate.Sometimes{Interval: 10 * time.Second} // etcd down: one line, not four a second
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := d.check(ctx, tracks, stillLeader); err != nil && ctx.Err() == nil {
			warn.Do(func() { d.opt.Logger.Warn("ramp driver: check failed", "err", err) })
		}
	}
}

func (d *Driver) check(ctx context.Context, tracks map[string]*track, stillLeader clientv3.Cmp) error {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	policies, err := d.store.policies(cctx)
	if err != nil {
		return err
	}
	for svc := range tracks {
		if p := policies[svc]; p.Policy == nil || p.Ramp == nil || p.Ramp.State != RampRunning {
			delete(tracks, svc)
		}
	}
	var reading *Reading
	for _, svc := range sortedKeys(policies) {
		p := policies[svc]
		r := p.Ramp
		if r == nil || r.State != RampRunning || r.Check() != nil {
			continue
		}
		if reading == nil {
			rd, err := d.store.ReadStats(cctx)
			if err != nil {
				return err
			}
			reading = &rd
		}
		tr := tracks[svc]
		if tr == nil || tr.step != r.Step || !tr.since.Equal(r.StepStarted) {
			// A step this driver has not watched yet (a new one, or one
			// it took over): its window starts now.
			tracks[svc] = &track{step: r.Step, since: r.StepStarted, base: *reading}
			continue
		}
		calls := reading.Calls(svc, &tr.base)
		next, what := r.next(calls[r.From], calls[r.To], time.Now())
		if next == nil {
			continue
		}
		np := p.clone()
		np.Ramp = next
		np.Weights = next.weightsNow()
		ok, err := d.store.writePolicy(cctx, svc, np, p.rev, stillLeader)
		switch {
		case err != nil:
			return err
		case !ok:
			continue // someone wrote it meanwhile (or we lost the lead): judge again next time
		}
		lvl := slog.LevelInfo
		if next.State == RampRolledBack || next.Note != "" {
			lvl = slog.LevelWarn
		}
		d.opt.Logger.Log(ctx, lvl, "rollout ramp "+what, "service", svc, "from", r.From, "to", r.To,
			"percent", next.Percent(), "state", next.State, "reason", next.Reason, "note", next.Note)
	}
	return nil
}

// weightsNow are the weights the ramp's state calls for.
func (r *Ramp) weightsNow() map[string]int {
	if r.State == RampRolledBack {
		return map[string]int{r.From: 100, r.To: 0}
	}
	return r.weights(r.Step)
}

// next judges the step in force by its window (old: the calls to From, new:
// the calls to To, since the step began or since this driver watched it)
// and returns the ramp's next state, or nil to stay as it is, with what
// happened. See the package doc for the rule.
func (r *Ramp) next(old, new Window, now time.Time) (*Ramp, string) {
	if new.Calls < minBreachCalls {
		return nil, ""
	}
	breach, hold := r.judge(old, new)
	n := *r
	switch {
	case breach != "":
		n.State, n.Reason, n.Note, n.Ended = RampRolledBack, breach, "", now.UTC()
		return &n, "rolled back"
	case new.Calls < uint64(r.MinCalls) || now.Sub(r.StepStarted) < time.Duration(r.Every):
		return nil, ""
	case hold != "":
		if r.Note != "" {
			return nil, "" // said so already
		}
		n.Note = "holding: " + hold
		return &n, "held"
	}
	n.Note = ""
	if r.Step+1 >= len(r.Steps) || r.Steps[r.Step+1] >= 100 {
		n.Step = len(r.Steps) - 1
		n.State, n.Ended = RampDone, now.UTC()
		n.Reason = fmt.Sprintf("%s at %d%%: within bounds at every step", r.To, n.Percent())
		return &n, "done"
	}
	n.Step++
	n.StepStarted = now.UTC()
	return &n, "advanced"
}

// minBreachCalls is the fewest calls to To a rollback is judged from: the
// binomial test asks for more evidence the fewer the calls, but below ten
// a version's first hiccups would weigh too much.
const minBreachCalls = 10

// breachSignificance is how unlikely, were To within bounds, its window's
// numbers must be for a rollback: one chance in a thousand. Small windows
// are noisy (the p99 of 100 calls is their second slowest); a rollback
// waits for evidence, and meanwhile the step does not end.
const breachSignificance = 0.001

// judge compares new (To's window) with old (From's) against the bounds.
// hold, when not "", says how the window's numbers are out of bounds (the
// step may not end); breach, when not "", says how To is out of bounds
// beyond doubt: its error rate, or its share of calls slower than the p99
// bound, is too high for a version within bounds to show but once in a
// thousand times (a binomial test).
func (r *Ramp) judge(old, new Window) (breach, hold string) {
	oldRate := 0.0
	if old.Calls >= uint64(r.MinCalls) {
		oldRate = old.ErrorRate()
	}
	errLimit := min(1, oldRate+r.MaxErrorIncrease/100)
	if rate := new.ErrorRate(); rate > errLimit {
		what := fmt.Sprintf("%s error rate %.2f%% > %s's %.2f%% + %g points (%d of %d calls failed, at %d%%)",
			r.To, rate*100, r.From, oldRate*100, r.MaxErrorIncrease, new.Errors, new.Calls, r.Percent())
		if binomialTail(new.Errors, new.Calls, errLimit) < breachSignificance {
			return what, ""
		}
		hold = what + ", not beyond doubt yet"
	}
	if old.Calls < uint64(r.MinCalls) {
		return "", hold
	}
	limit := time.Duration(float64(old.P99())*r.MaxP99Ratio) + time.Duration(r.P99Slack)
	if p99 := new.P99(); p99 > limit {
		// Within bounds, at most 1% of To's calls are slower than the limit.
		slower := new.Latency.Above(limit)
		what := fmt.Sprintf("%s p99 %v > %s's %v × %g + %v: %d of %d calls slower than %v (at %d%%)",
			r.To, p99, r.From, old.P99(), r.MaxP99Ratio, r.P99Slack, slower, new.Calls, limit.Round(time.Microsecond), r.Percent())
		if binomialTail(slower, new.Calls, 0.01) < breachSignificance {
			return what, ""
		}
		if hold == "" {
			hold = what + ", not beyond doubt yet"
		}
	}
	return "", hold
}

// binomialTail is P(X >= k) for X ~ Binomial(n, p): how likely k or more
// of n calls are bad when each is with probability p. At or below the mean
// it says 1 (no evidence of anything).
func binomialTail(k, n uint64, p float64) float64 {
	switch {
	case k == 0 || p >= 1:
		return 1
	case k > n || p <= 0:
		return 0
	case float64(k) <= float64(n)*p:
		return 1
	}
	lg := func(x uint64) float64 { v, _ := math.Lgamma(float64(x) + 1); return v }
	term := math.Exp(lg(n) - lg(k) - lg(n-k) + float64(k)*math.Log(p) + float64(n-k)*math.Log1p(-p))
	// Past the mean the terms shrink, faster and faster: sum them until
	// they stop counting.
	sum := 0.0
	for i := k; i <= n && term > sum*1e-12; i++ {
		sum += term
		term *= float64(n-i) / float64(i+1) * p / (1 - p)
	}
	return sum
}

// StartRamp writes a new ramp of service from r.From to r.To, in force at
// once at its first step (replacing any ramp there was), and returns the
// policy written. A ramp whose first step is 100 is done at once.
func (s *Store) StartRamp(ctx context.Context, service string, r Ramp) (*Policy, error) {
	now := time.Now().UTC()
	r.Step, r.Started, r.StepStarted, r.State, r.Reason, r.Ended = 0, now, now, RampRunning, "", time.Time{}
	if err := r.Check(); err != nil {
		return nil, err
	}
	if r.Steps[0] >= 100 {
		r.State, r.Ended, r.Reason = RampDone, now, r.To+" at 100% at once (one step)"
	}
	return s.UpdatePolicy(ctx, service, func(p *Policy) (*Policy, error) {
		p.Ramp = &r
		p.Weights = r.weightsNow()
		return p, nil
	})
}

// Leader returns who drives the ramps now, or nil when nobody does.
func (s *Store) Leader(ctx context.Context) (*Leader, error) {
	resp, err := s.cli.Get(ctx, s.electionKey()+"/", clientv3.WithFirstCreate()...)
	if err != nil {
		return nil, fmt.Errorf("read the ramp election: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	var l Leader
	if err := json.Unmarshal(resp.Kvs[0].Value, &l); err != nil {
		l.Name = string(resp.Kvs[0].Value)
	}
	return &l, nil
}
