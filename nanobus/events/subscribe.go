package events

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/terminator-gw/terminator/nanobus"
)

// Option configures a subscription.
type Option func(*subscription)

// From names the service that publishes the topic. Required.
func From(service string) Option { return func(s *subscription) { s.decl.From = service } }

// Publishes declares the topics the handler publishes in turn (for the
// cascade graph; Publish refuses others).
func Publishes(topics ...string) Option {
	return func(s *subscription) { s.decl.Publishes = append(s.decl.Publishes, topics...) }
}

// Retries is how often a failed event is tried again at once before it is
// parked. Default 2.
func Retries(n int) Option { return func(s *subscription) { s.retries = n } }

// Delays are the waits before each delayed retry of a parked event; after
// the last, it waits for an operator. Default 1s, 10s, 1m.
func Delays(d ...time.Duration) Option { return func(s *subscription) { s.delays = d } }

// HandlerTimeout bounds one run of the handler. Default 10s.
func HandlerTimeout(d time.Duration) Option { return func(s *subscription) { s.timeout = d } }

// LeaseTTL is how long a group's reader holds its lease without renewing
// it: how soon another instance takes over from one that died. Default 3s.
func LeaseTTL(d time.Duration) Option { return func(s *subscription) { s.leaseTTL = d } }

// Subscribe has h apply every event of topic that service From publishes,
// once per group: of the instances subscribing with the same group (which
// share a store), one reads at a time. Call it before Start.
func (b *Bus) Subscribe(topic, group string, h Handler, opts ...Option) error {
	s := &subscription{b: b, h: h, decl: Subscription{Topic: topic, Group: group}, retries: 2,
		delays: []time.Duration{time.Second, 10 * time.Second, time.Minute}, timeout: 10 * time.Second, leaseTTL: 3 * time.Second,
		poke: make(chan struct{}, 1)}
	for _, o := range opts {
		o(s)
	}
	for what, v := range map[string]string{"topic": topic, "group": group, "From (the publishing service)": s.decl.From} {
		if err := validName(v); err != nil {
			return fmt.Errorf("subscribe: %s %w", what, err)
		}
	}
	if h == nil {
		return errors.New("subscribe: nil handler")
	}
	if b.st == nil {
		return fmt.Errorf("subscribe %s: %w: a subscription keeps its position in the service's store", topic, ErrNoStore)
	}
	s.name = group + "/" + s.decl.From + "/" + topic
	s.prefix = "~sub/" + s.name + "/"
	s.edge = Edge{From: TopicNode(topic), To: GroupNode(b.node.Service(), group)}
	s.st = bounded{b.st, s.timeout + 5*time.Second}
	s.holder = fmt.Sprintf("%016x", b.node.ID())
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.started {
		return errors.New("subscribe: after Start")
	}
	if err := b.serveLocked(&b.serving.hospital, func() error {
		return b.node.Handle(RouteHospital, b.serveHospital, nanobus.Timeout(30*time.Second))
	}); err != nil {
		return err
	}
	for _, t := range s.decl.Publishes {
		if _, ok := b.declared[t]; !ok {
			b.declared[t] = nil
		}
	}
	b.subs = append(b.subs, s)
	return nil
}

type subscription struct {
	b        *Bus
	st       Store // the Bus's, every call bounded in time
	h        Handler
	decl     Subscription
	retries  int
	delays   []time.Duration
	timeout  time.Duration
	leaseTTL time.Duration
	name     string // "<group>/<from>/<topic>": the handler, as patients name it
	edge     Edge   // topic -> group, in the cascade graph
	prefix   string // of its keys in the store
	holder   string // this instance, in the lease
	poke     chan struct{}

	mu       sync.Mutex
	pos      [Partitions]uint64 // applied (or skipped) here, at least what the store has
	patients int
	reading  atomic.Bool
	lag      atomic.Int64
}

func (s *subscription) posKey() string   { return s.prefix + "pos" }
func (s *subscription) leaseKey() string { return s.prefix + "lease" }

// parkKey marks a key whose events wait behind a parked one; queueKey
// holds those that wait.
func (s *subscription) parkKey(key string) string { return s.prefix + "park/" + hexOf(key) }
func (s *subscription) queueKey(e *Event) string {
	return fmt.Sprintf("%squeue/%s/%016x", s.prefix, hexOf(e.Key), e.Seq)
}

func hexOf(s string) string { return hex.EncodeToString([]byte(s)) }

func (s *subscription) stats() SubscriptionStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return SubscriptionStats{Subscription: s.decl, Reading: s.reading.Load(), Position: fmt.Sprint(s.pos), Lag: s.lag.Load(), Patients: s.patients}
}

// lease is the group's reader lease, in its store.
type lease struct {
	Holder string `json:"holder"`
	Until  int64  `json:"until"` // Unix nanoseconds
}

// acquire takes or renews the group's lease; false when another holds it.
func (s *subscription) acquire(ctx context.Context) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.leaseTTL) // a renewal later than that is no use
	defer cancel()
	held := false
	err := s.st.Update(ctx, func(tx Tx) error {
		var l lease
		if found, err := s.read(tx, s.leaseKey(), &l); err != nil {
			return err
		} else if found && l.Holder != s.holder && time.Now().UnixNano() < l.Until {
			held = false
			return nil
		}
		held = true
		return writeJSON(tx, s.leaseKey(), lease{Holder: s.holder, Until: time.Now().Add(s.leaseTTL).UnixNano()})
	})
	return held, err
}

func (s *subscription) resign() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = s.st.Update(ctx, func(tx Tx) error {
		var l lease
		if found, err := s.read(tx, s.leaseKey(), &l); err != nil || !found || l.Holder != s.holder {
			return err
		}
		return tx.Delete(s.leaseKey())
	})
}

func (s *subscription) read(tx Tx, key string, v any) (bool, error) {
	raw, err := tx.Get(key)
	if s.st.NotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, json.Unmarshal(raw, v)
}

func writeJSON(tx Tx, key string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return tx.Put(key, raw)
}

// run reads the subscription while this instance holds the group's lease,
// until ctx ends.
func (s *subscription) run(ctx context.Context) {
	log := s.b.log.With("topic", s.decl.Topic, "group", s.decl.Group, "from", s.decl.From)
	// A trouble is logged when it starts or changes, not at every retry.
	last := ""
	report := func(level slog.Level, msg string, err error) {
		if err.Error() != last {
			last = err.Error()
			log.Log(ctx, level, msg, "err", err)
		}
	}
	wait := 100 * time.Millisecond
	for ctx.Err() == nil {
		held, err := s.acquire(ctx)
		if err != nil {
			report(slog.LevelWarn, "events: the group's lease", err)
		}
		if held {
			s.reading.Store(true)
			err = s.lead(ctx)
			s.reading.Store(false)
			if ctx.Err() != nil {
				s.resign() // the next instance need not wait out the lease
				return
			}
			if err == nil {
				last, wait = "", 100*time.Millisecond
				continue
			}
			report(slog.LevelInfo, "events: reading again", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(min(wait, s.leaseTTL/3)):
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// lead is one spell of reading: a stream from the positions committed,
// events applied in order, the hospital's patients treated when due, the
// lease renewed; it returns when the stream ends or breaks, or the lease
// is lost.
func (s *subscription) lead(ctx context.Context) error {
	if err := s.loadPositions(ctx); err != nil {
		return err
	}
	sctx, cancel := context.WithTimeout(ctx, readSpan)
	defer cancel()
	// The lease is renewed beside the work, not between events: a slow
	// handler must not let it lapse while it still reads.
	lost := make(chan error, 1)
	go func() {
		renew := time.NewTicker(s.leaseTTL / 3)
		defer renew.Stop()
		for {
			select {
			case <-sctx.Done():
				return
			case <-renew.C:
			}
			held, err := s.acquire(sctx)
			if err == nil && !held {
				err = errors.New("the lease went to another instance")
			}
			if err != nil && sctx.Err() == nil {
				lost <- err
				cancel()
				return
			}
		}
	}()
	s.mu.Lock()
	req, _ := json.Marshal(readRequest{Topic: s.decl.Topic, After: s.pos})
	s.mu.Unlock()
	stream, err := s.b.node.Stream(sctx, s.decl.From, RouteRead, req)
	if err != nil {
		return fmt.Errorf("open the stream from %s: %w", s.decl.From, err)
	}
	if stream.Status/100 != 2 {
		_, body, _ := stream.Next()
		stream.Close()
		return fmt.Errorf("the stream from %s: status %d: %.200s", s.decl.From, stream.Status, body)
	}
	incoming := make(chan *Event, 16)
	broke := make(chan error, 1)
	go func() {
		defer stream.Close()
		for {
			_, body, err := stream.Next()
			if err != nil {
				broke <- err
				return
			}
			e := new(Event)
			if err := json.Unmarshal(body, e); err != nil || e.Partition < 0 || e.Partition >= Partitions {
				broke <- fmt.Errorf("a malformed event from %s: %v", s.decl.From, err)
				return
			}
			s.lag.Add(1)
			select {
			case incoming <- e:
			case <-sctx.Done():
				s.lag.Add(-1)
				return
			}
		}
	}()
	defer func() {
		cancel()
		for range len(incoming) {
			<-incoming
			s.lag.Add(-1)
		}
	}()
	treat := time.NewTicker(250 * time.Millisecond)
	defer treat.Stop()
	s.treat(sctx) // patients left by a reader before
	var batch []*Event
	for {
		select {
		case e := <-incoming:
			// What else has come goes with it, in one transaction: under
			// load a commit (and its fsync) serves many events.
			batch = append(batch[:0], e)
		more:
			for len(batch) < maxBatch {
				select {
				case e := <-incoming:
					batch = append(batch, e)
				default:
					break more
				}
			}
			s.lag.Add(-int64(len(batch)))
			if err := s.takeAll(sctx, batch); err != nil {
				return err
			}
		case err := <-broke:
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		case err := <-lost:
			return err
		case <-treat.C:
			s.treat(sctx)
		case <-s.poke:
			s.treat(sctx)
		case <-sctx.Done():
			select {
			case err := <-lost:
				return err
			default:
			}
			return ctx.Err() // nil when the spell merely ran its span
		}
	}
}

func (s *subscription) loadPositions(ctx context.Context) error {
	raw, err := s.st.Get(ctx, s.posKey())
	if s.st.NotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	var pos [Partitions]uint64
	if err := json.Unmarshal(raw, &pos); err != nil {
		return fmt.Errorf("position %s: %w", s.posKey(), err)
	}
	s.mu.Lock()
	for p := range pos {
		s.pos[p] = max(s.pos[p], pos[p])
	}
	s.mu.Unlock()
	return nil
}

// handlerError is a handler's failure, told apart from the store's.
type handlerError struct{ err error }

func (e handlerError) Error() string { return e.err.Error() }
func (e handlerError) Unwrap() error { return e.err }

// maxBatch bounds the events applied in one transaction.
const maxBatch = 64

// takeAll applies events, in order, in one transaction; if that fails (a
// handler's error, or a batch too slow for the store's bound), one by one,
// each with its retries and the hospital.
func (s *subscription) takeAll(ctx context.Context, events []*Event) error {
	if len(events) > 1 {
		if err := s.applyAll(ctx, events); err == nil || ctx.Err() != nil {
			return err
		}
	}
	for _, e := range events {
		if err := s.take(ctx, e); err != nil {
			return err
		}
	}
	return nil
}

// applyAll runs the handler on events in one transaction that also moves
// the position, except on those the position is past already (duplicates)
// and those whose key waits behind a parked event (queued behind it).
func (s *subscription) applyAll(ctx context.Context, events []*Event) error {
	outcomes := make([]string, len(events))
	err := s.st.Update(ctx, func(tx Tx) error {
		pos, err := s.positions(tx)
		if err != nil {
			return err
		}
		// One look for parked keys, not one per event: mostly there are none.
		parked, err := s.st.Scan(ctx, s.prefix+"park/", s.prefix+"park0", 1)
		if err != nil {
			return err
		}
		for i, e := range events {
			switch {
			case e.Topic == "":
				pos[e.Partition] = max(pos[e.Partition], e.Seq)
				outcomes[i] = "mark"
				continue
			case e.Seq <= pos[e.Partition]:
				outcomes[i] = "duplicate"
				continue
			}
			pos[e.Partition] = e.Seq
			if len(parked) > 0 {
				if _, err := tx.Get(s.parkKey(e.Key)); err == nil {
					outcomes[i] = "queued"
					if err := writeJSON(tx, s.queueKey(e), e); err != nil {
						return err
					}
					continue
				} else if !s.st.NotFound(err) {
					return err
				}
			}
			if err := s.call(ctx, tx, e); err != nil {
				return err
			}
			outcomes[i] = "applied"
		}
		return writeJSON(tx, s.posKey(), pos)
	})
	if err != nil {
		return err
	}
	for i, e := range events {
		if outcomes[i] == "mark" {
			s.mark(e)
			continue
		}
		s.count(outcomes[i])
		s.mu.Lock()
		s.pos[e.Partition] = max(s.pos[e.Partition], e.Seq)
		s.mu.Unlock()
	}
	return nil
}

// mark moves the position past a marker: events of other topics, or a
// gap retention made.
func (s *subscription) mark(e *Event) {
	if e.Gap > 0 {
		s.b.stats.gaps.Add(int64(e.Gap))
		s.b.log.Error("events: missed, past the publisher's retention", "topic", s.decl.Topic, "group", s.decl.Group,
			"from", s.decl.From, "partition", e.Partition, "events", e.Gap, "up_to", e.Seq)
	}
	s.mu.Lock()
	s.pos[e.Partition] = max(s.pos[e.Partition], e.Seq)
	s.mu.Unlock()
}

func (s *subscription) count(outcome string) {
	switch outcome {
	case "duplicate":
		s.b.stats.duplicates.Add(1)
	case "applied":
		s.b.stats.delivered.Add(1)
		s.b.exercised(s.edge)
	}
}

// take applies e, the next event of its partition, with its immediate
// retries; then parks it. It fails only when the store does.
func (s *subscription) take(ctx context.Context, e *Event) error {
	if e.Topic == "" { // the position after events of other topics, or past a gap
		s.mark(e)
		return nil
	}
	var err error
	for range s.retries + 1 {
		if err = s.applyAll(ctx, []*Event{e}); err == nil {
			return nil
		}
		var he handlerError
		if !errors.As(err, &he) {
			return err
		}
		s.b.stats.failed.Add(1)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return s.park(ctx, e, err)
}

// positions reads the committed positions in tx, merged with those this
// instance skipped to.
func (s *subscription) positions(tx Tx) ([Partitions]uint64, error) {
	var pos [Partitions]uint64
	if _, err := s.read(tx, s.posKey(), &pos); err != nil {
		return pos, err
	}
	s.mu.Lock()
	for p := range pos {
		pos[p] = max(pos[p], s.pos[p])
	}
	s.mu.Unlock()
	return pos, nil
}

// eventKey carries the event being handled, as the cause of what its
// handler publishes.
type eventKey struct{}

type handled struct {
	*Event
	group string
}

func eventOf(ctx context.Context) *handled {
	h, _ := ctx.Value(eventKey{}).(*handled)
	return h
}

// call runs the handler on e, bounded in time, a panic an error.
func (s *subscription) call(ctx context.Context, tx Tx, e *Event) (err error) {
	hctx, cancel := context.WithTimeout(context.WithValue(ctx, eventKey{}, &handled{Event: e, group: s.decl.Group}), s.timeout)
	defer cancel()
	defer func() {
		if r := recover(); r != nil {
			err = handlerError{fmt.Errorf("handler panicked: %v", r)}
		}
	}()
	if err := s.h(hctx, tx, e); err != nil {
		return handlerError{err}
	}
	return nil
}

func (s *subscription) String() string { return s.name }

// bounded bounds every call to a store: a connection that hangs (a
// database that crashed under it, no reset ever coming) must not stop a
// subscription for good, nor keep its lease unrenewed.
type bounded struct {
	Store
	d time.Duration
}

func (b bounded) Update(ctx context.Context, fn func(Tx) error) error {
	ctx, cancel := context.WithTimeout(ctx, b.d)
	defer cancel()
	return b.Store.Update(ctx, fn)
}

func (b bounded) Get(ctx context.Context, key string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, b.d)
	defer cancel()
	return b.Store.Get(ctx, key)
}

func (b bounded) Scan(ctx context.Context, start, end string, limit int) ([]KV, error) {
	ctx, cancel := context.WithTimeout(ctx, b.d)
	defer cancel()
	return b.Store.Scan(ctx, start, end, limit)
}
