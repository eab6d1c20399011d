package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/terminator-gw/terminator/nanobus"
)

// Event is one domain event as a subscriber's handler gets it.
type Event struct {
	ID          string    `json:"id"`    // stable: "<service>:<partition>:<sequence>", what duplicates are told apart by
	Topic       string    `json:"topic"` // what happened, e.g. "profile.visited"
	Key         string    `json:"key"`   // what it happened to: order is kept per key
	Time        time.Time `json:"time"`  // when it was published
	Correlation string    `json:"correlation,omitempty"`
	Causation   string    `json:"causation,omitempty"` // the request or event that caused it
	Body        []byte    `json:"body,omitempty"`
	Partition   int       `json:"p"`
	Seq         uint64    `json:"seq"`
	// Gap, in a read stream's marker (no topic), is how many events before
	// Seq the publisher no longer keeps.
	Gap uint64 `json:"gap,omitempty"`
}

// Tx is the part of a store transaction events read and write through;
// services/store's Tx is one.
type Tx interface {
	Get(key string) ([]byte, error)
	Put(key string, value []byte) error
	Delete(key string) error
}

// KV is one key and its value, as Store.Scan returns them.
type KV struct {
	Key   string
	Value []byte
}

// Store is what a publisher keeps its log in and a subscriber its position,
// projections and hospital: a service's store (store.EventLog adapts one).
type Store interface {
	Update(ctx context.Context, fn func(Tx) error) error
	Get(ctx context.Context, key string) ([]byte, error)
	Scan(ctx context.Context, start, end string, limit int) ([]KV, error)
	// NotFound reports whether err says a key has no value.
	NotFound(err error) bool
	// WaitDurable returns once every commit that reads can see is durable
	// (Pebble shows a commit a moment before its shared fsync): a read
	// stream sends nothing a crash could take back.
	WaitDurable(ctx context.Context) error
	// Horizon is, for a store whose transactions number the events they
	// publish (their Tx is a SeqTx: PostgreSQL), the sequence below which
	// no transaction is still running, so the log below it is final; ok
	// is false for a store whose log is numbered by a counter per
	// partition.
	Horizon(ctx context.Context) (seq uint64, ok bool, err error)
}

// SeqTx is a Tx that numbers the events published in it: increasing in
// the order a reader behind Store.Horizon can follow. On PostgreSQL a
// counter row would make every two racing publishers of a partition
// conflict, and all but one abort (SERIALIZABLE).
type SeqTx interface {
	// EventSeq returns the next sequence of partition in this transaction;
	// ok is false when the store numbers by counter.
	EventSeq(partition int) (seq uint64, ok bool, err error)
}

// Handler applies one event. Its effects go through tx, which commits with
// the subscription's new position; an error rolls both back and sends the
// event to the hospital's retries.
type Handler func(ctx context.Context, tx Tx, e *Event) error

// Errors.
var (
	ErrUndeclared = errors.New("events: topic not declared")
	ErrClosed     = errors.New("events: closed")
	ErrNoStore    = errors.New("events: no store")
)

// Partitions is how many parts a publisher's log is split into by key:
// each is numbered by its own counter, so publishers of different keys do
// not contend for one.
const Partitions = 8

// RouteRead is the stream route a publisher serves its log on;
// RouteHospital the route a subscriber serves its hospital on.
const (
	RouteRead     = "events.read"
	RouteHospital = "events.hospital"
)

// Config configures a Bus.
type Config struct {
	// Store is the service's store: its log, and its subscriptions'
	// positions and hospital. Without one, the Bus can only declare.
	Store Store
	// PollInterval is how often an idle stream looks for events another
	// instance of the service committed (its own commits wake it at once).
	// Default 50ms.
	PollInterval time.Duration
	// Retention is how long a publisher keeps its events: older ones are
	// deleted, and a subscriber whose position they were is told how many it
	// missed (Stats.Gaps, and an error in its log). Default 7 days.
	Retention time.Duration
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// Bus is one node's publications and subscriptions.
type Bus struct {
	node *nanobus.Node
	st   Store
	cfg  Config
	log  *slog.Logger

	mu       sync.Mutex
	declared map[string][]string // topic -> the routes that publish it
	subs     []*subscription
	serving  struct{ read, hospital bool }
	started  bool
	closed   bool

	// changed is closed (and replaced) when a transaction with events
	// commits: the streams of this process wait on it.
	changedMu sync.Mutex
	changed   chan struct{}

	readers chan struct{} // a token per read stream served

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	edges sync.Map // Edge -> *atomic.Int64

	stats struct {
		published, delivered, duplicates, failed, parked, healed, gaps, pruned atomic.Int64
		replayed, discarded                                                    atomic.Int64
	}
}

// New returns node's Bus. Once it declares a topic it serves RouteRead on
// node, once it subscribes RouteHospital: call them before the node
// registers.
func New(node *nanobus.Node, cfg Config) (*Bus, error) {
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 50 * time.Millisecond
	}
	if cfg.Retention <= 0 {
		cfg.Retention = 7 * 24 * time.Hour
	}
	b := &Bus{node: node, st: cfg.Store, cfg: cfg, log: cfg.Logger, declared: map[string][]string{}, changed: make(chan struct{}),
		readers: make(chan struct{}, maxReaders)}
	if b.log == nil {
		b.log = slog.Default()
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	return b, nil
}

// Declare says that the service publishes topic, from the routes named
// (and from its own event handlers, which say so in Subscribe). Publish
// refuses a topic not declared: the cascade graph is what is declared.
func (b *Bus) Declare(topic string, routes ...string) error {
	if err := validName(topic); err != nil {
		return fmt.Errorf("declare: topic %w", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.serveLocked(&b.serving.read, func() error {
		return b.node.HandleStream(RouteRead, b.serveRead, nanobus.Timeout(readSpan+5*time.Second))
	}); err != nil {
		return err
	}
	b.declared[topic] = append(b.declared[topic], routes...)
	return nil
}

// serveLocked registers a route of the Bus once, with b.mu held.
func (b *Bus) serveLocked(done *bool, handle func() error) error {
	if *done || b.st == nil {
		return nil
	}
	if err := handle(); err != nil {
		return err
	}
	*done = true
	return nil
}

// Publication is a topic a service publishes, with the routes that do.
type Publication struct {
	Topic  string   `json:"topic"`
	Routes []string `json:"routes,omitempty"`
}

// Subscription is what a subscription declares.
type Subscription struct {
	Topic     string   `json:"topic"`
	From      string   `json:"from"`  // the publishing service
	Group     string   `json:"group"` // each group gets every event once
	Publishes []string `json:"publishes,omitempty"`
}

// Declaration is what a service publishes and consumes, as it registers.
type Declaration struct {
	Publishes  []Publication  `json:"publishes,omitempty"`
	Subscribes []Subscription `json:"subscribes,omitempty"`
}

// Declaration returns what b declared.
func (b *Bus) Declaration() Declaration {
	b.mu.Lock()
	defer b.mu.Unlock()
	var d Declaration
	for topic, routes := range b.declared {
		r := slices.Clone(routes)
		slices.Sort(r)
		d.Publishes = append(d.Publishes, Publication{Topic: topic, Routes: slices.Compact(r)})
	}
	slices.SortFunc(d.Publishes, func(x, y Publication) int { return strings.Compare(x.Topic, y.Topic) })
	for _, s := range b.subs {
		d.Subscribes = append(d.Subscribes, s.decl)
	}
	return d
}

// Start runs the subscriptions. Call it once the node serves and reaches
// the publishers (before it, streams would find no instance and retry).
func (b *Bus) Start() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.started || b.closed {
		return
	}
	b.started = true
	if b.serving.read {
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			b.pruneLoop(b.ctx)
		}()
	}
	for _, s := range b.subs {
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			s.run(b.ctx)
		}()
	}
}

// Close stops the subscriptions, waits for the handlers running, and ends
// the read streams it serves (their readers go on from another instance).
func (b *Bus) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	b.cancel()
	b.wg.Wait()
	return nil
}

// wake tells the streams of this process that events committed.
func (b *Bus) wake() {
	b.changedMu.Lock()
	close(b.changed)
	b.changed = make(chan struct{})
	b.changedMu.Unlock()
}

func (b *Bus) changes() <-chan struct{} {
	b.changedMu.Lock()
	defer b.changedMu.Unlock()
	return b.changed
}

// Stats are a Bus's counters since it started.
type Stats struct {
	Published  int64 `json:"published"`  // events committed by this process
	Delivered  int64 `json:"delivered"`  // events applied by its handlers
	Duplicates int64 `json:"duplicates"` // events received again and skipped
	Failed     int64 `json:"failed"`     // handler runs that failed
	Parked     int64 `json:"parked"`     // events sent to the hospital
	Healed     int64 `json:"healed"`     // parked events applied later (retried or replayed)
	Replayed   int64 `json:"replayed"`   // of those, applied by an operator's replay
	Discarded  int64 `json:"discarded"`  // parked events an operator discarded
	Gaps       int64 `json:"gaps"`       // events a subscription never got: its position was past the publisher's retention
	Pruned     int64 `json:"pruned"`     // events this publisher deleted, older than its retention
	// Subscriptions are the state of each, patients in the hospital included.
	Subscriptions []SubscriptionStats `json:"subscriptions,omitempty"`
}

// SubscriptionStats is one subscription's state.
type SubscriptionStats struct {
	Subscription
	Reading  bool   `json:"reading"`  // this instance holds the group's lease
	Position string `json:"position"` // per partition
	Lag      int64  `json:"lag"`      // events received, not yet applied
	Patients int    `json:"patients"` // in the hospital, not yet healed or discarded
}

// Stats returns b's counters.
func (b *Bus) Stats() Stats {
	s := Stats{Published: b.stats.published.Load(), Delivered: b.stats.delivered.Load(), Duplicates: b.stats.duplicates.Load(),
		Failed: b.stats.failed.Load(), Parked: b.stats.parked.Load(), Healed: b.stats.healed.Load(),
		Replayed: b.stats.replayed.Load(), Discarded: b.stats.discarded.Load(),
		Gaps: b.stats.gaps.Load(), Pruned: b.stats.pruned.Load()}
	b.mu.Lock()
	subs := slices.Clone(b.subs)
	b.mu.Unlock()
	for _, sub := range subs {
		s.Subscriptions = append(s.Subscriptions, sub.stats())
	}
	return s
}

// Edge is one edge of the cascade graph a process carried: a route or a
// handler ("group" of a subscription) that published a topic, or a topic
// delivered to a group.
type Edge struct {
	From string `json:"from"` // "route:<service>:<route>", "topic:<topic>" or "group:<service>:<group>"
	To   string `json:"to"`
}

// Exercised returns the edges this process carried, with how often.
func (b *Bus) Exercised() map[Edge]int64 {
	out := map[Edge]int64{}
	b.edges.Range(func(k, v any) bool {
		out[k.(Edge)] = v.(*atomic.Int64).Load()
		return true
	})
	return out
}

func (b *Bus) exercised(e Edge) {
	v, ok := b.edges.Load(e)
	if !ok {
		v, _ = b.edges.LoadOrStore(e, new(atomic.Int64))
	}
	v.(*atomic.Int64).Add(1)
}

// RouteNode, TopicNode and GroupNode name the cascade graph's nodes as
// Edge does.
func RouteNode(service, route string) string { return "route:" + service + ":" + route }
func TopicNode(topic string) string          { return "topic:" + topic }
func GroupNode(service, group string) string { return "group:" + service + ":" + group }

func validName(s string) error {
	if s == "" || len(s) > 128 {
		return fmt.Errorf("%q: want 1 to 128 characters", s)
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("%q: want a-z, 0-9, '-', '_', '.'", s)
		}
	}
	return nil
}
