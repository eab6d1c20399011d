package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/cockroachdb/pebble/v2"
	lru "github.com/hashicorp/golang-lru/v2"
)

// Pebble is the embedded store: one data directory, one process. Writes
// are synced to disk before Update returns, and transactions run one at a
// time (a process-wide lock), which is what makes read-then-write safe
// here; their fsyncs are shared. For several processes on the same data,
// use Postgres.
type Pebble struct {
	db  *pebble.DB
	dir string
	// writer is held by the one Update running: a channel, not a mutex,
	// so that waiting for it ends with the caller's context.
	writer chan struct{}
	// life is read-held by every call and write-held by Close: Pebble
	// panics on a closed DB, and a store answers ErrClosed instead.
	life   sync.RWMutex
	closed bool

	applied atomic.Uint64 // batches applied, or being applied: counted before they show
	durable durability

	// A small cache of recent reads. Only this process writes the data
	// (the directory's lock says so), so an Update can keep it true: it
	// drops what it wrote. A read that raced a write must not refill the
	// cache with what it read before the write: fills check the write
	// generation under cacheMu, which writes bump.
	cache   *lru.Cache[string, []byte]
	cacheMu sync.Mutex
	gen     uint64 // under cacheMu
}

// cacheEntries is how many values the read cache keeps: a few MiB of small
// JSON documents, the hot set of a busy service.
const cacheEntries = 8192

// OpenPebble opens (creating if needed) the store in dir. A second process
// on the same dir is refused with an error that says what to do instead.
func OpenPebble(dir string) (*Pebble, error) {
	db, err := pebble.Open(dir, &pebble.Options{Logger: quietLogger{}})
	if err != nil {
		if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("open store %s: the directory is in use by another process; "+
				"a Pebble store belongs to one process: give each instance its own -data directory, "+
				"or run every instance on one PostgreSQL with -store postgres://...", dir)
		}
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	cache, _ := lru.New[string, []byte](cacheEntries)
	return &Pebble{db: db, dir: dir, writer: make(chan struct{}, 1), cache: cache}, nil
}

// enter starts a call: it fails once ctx has ended or the store is
// closed. On success the caller must call p.life.RUnlock.
func (p *Pebble) enter(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p.life.RLock()
	if p.closed {
		p.life.RUnlock()
		return fmt.Errorf("store %s: %w", p.dir, ErrClosed)
	}
	return nil
}

// Get returns a copy of the value at key, or ErrNotFound.
func (p *Pebble) Get(ctx context.Context, key string) ([]byte, error) {
	if err := p.enter(ctx); err != nil {
		return nil, err
	}
	defer p.life.RUnlock()
	if v, ok := p.cache.Get(key); ok {
		return slices.Clone(v), nil
	}
	p.cacheMu.Lock()
	gen := p.gen
	p.cacheMu.Unlock()
	v, err := get(p.db, key)
	if err != nil {
		return nil, err
	}
	p.cacheMu.Lock()
	if p.gen == gen { // no write since the read began
		p.cache.Add(key, slices.Clone(v))
	}
	p.cacheMu.Unlock()
	return v, nil
}

// List returns up to limit entries under prefix, in key order.
func (p *Pebble) List(ctx context.Context, prefix string, limit int) ([]Entry, error) {
	return p.Scan(ctx, prefix, string(prefixEnd(prefix)), limit)
}

// Scan returns up to limit entries with start <= key < end, in key order.
func (p *Pebble) Scan(ctx context.Context, start, end string, limit int) ([]Entry, error) {
	if err := p.enter(ctx); err != nil {
		return nil, err
	}
	defer p.life.RUnlock()
	var lower, upper []byte // nil for "": Pebble's invariant checks (on in -race builds) index a non-nil empty bound
	if start != "" {
		lower = []byte(start)
	}
	if end != "" {
		upper = []byte(end)
	}
	it, err := p.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []Entry
	for it.First(); it.Valid() && (limit <= 0 || len(out) < limit); it.Next() {
		out = append(out, Entry{Key: string(it.Key()), Value: append([]byte(nil), it.Value()...)})
	}
	return out, it.Error()
}

// Update runs fn on an indexed batch (its reads see its writes) and
// commits it synced. Updates run fn one at a time, so fn runs exactly
// once; waiting for the one before ends with ctx. The wait for the disk is
// not part of that turn: a batch is applied, the next Update may begin,
// and Updates waiting for their fsync share it (group commit). A reader
// may so see a write a moment before it is durable; one that must not
// (the events' read stream) calls WaitDurable first.
func (p *Pebble) Update(ctx context.Context, fn func(Tx) error) error {
	if err := p.enter(ctx); err != nil {
		return err
	}
	defer p.life.RUnlock()
	b, n, err := p.apply(ctx, fn)
	if b == nil {
		return err
	}
	defer b.Close()
	if err == nil {
		err = b.SyncWait()
	}
	p.durable.mark(n, err)
	if err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// apply runs fn and applies its batch in the writer's turn. It returns the
// batch to wait for (nil if there is none) and its number in apply order.
func (p *Pebble) apply(ctx context.Context, fn func(Tx) error) (*pebble.Batch, uint64, error) {
	select {
	case p.writer <- struct{}{}:
	case <-ctx.Done():
		return nil, 0, fmt.Errorf("wait for the update in progress: %w", ctx.Err())
	}
	defer func() { <-p.writer }()
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	b := p.db.NewIndexedBatch()
	tx := &pebbleTx{b: b}
	if err := fn(tx); err != nil {
		b.Close()
		return nil, 0, err
	}
	n := p.applied.Add(1) // before the batch shows: WaitDurable must wait for it
	err := p.db.ApplyNoSyncWait(b, pebble.Sync)
	p.cacheMu.Lock()
	p.gen++
	for _, k := range tx.written {
		p.cache.Remove(k)
	}
	p.cacheMu.Unlock()
	if err != nil {
		b.Close()
		p.durable.mark(n, err)
		return nil, 0, fmt.Errorf("commit: %w", err)
	}
	return b, n, nil
}

// WaitDurable returns once every write that reads can see is on disk:
// the Updates applied so far have had their fsync.
func (p *Pebble) WaitDurable(ctx context.Context) error {
	if err := p.enter(ctx); err != nil {
		return err
	}
	defer p.life.RUnlock()
	return p.durable.wait(ctx, p.applied.Load())
}

// durability is how far the applied batches are synced: the WAL is
// written in apply order, so a batch synced means all before it are.
type durability struct {
	mu       sync.Mutex
	synced   uint64
	err      error         // a failed sync: the store is broken
	advanced chan struct{} // closed, and replaced, when synced moves
}

func (d *durability) mark(n uint64, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err != nil && d.err == nil {
		d.err = err
	}
	if n > d.synced {
		d.synced = n
	}
	if d.advanced != nil {
		close(d.advanced)
		d.advanced = nil
	}
}

func (d *durability) wait(ctx context.Context, n uint64) error {
	for {
		d.mu.Lock()
		if d.err != nil || d.synced >= n {
			err := d.err
			d.mu.Unlock()
			return err
		}
		if d.advanced == nil {
			d.advanced = make(chan struct{})
		}
		ch := d.advanced
		d.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Check fails once the store is closed or its disk fails a read.
func (p *Pebble) Check(ctx context.Context) error {
	_, err := p.Get(ctx, "\x00check")
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

// Close waits for calls in progress and closes the store; closing again
// returns ErrClosed.
func (p *Pebble) Close() error {
	p.life.Lock()
	defer p.life.Unlock()
	if p.closed {
		return fmt.Errorf("store %s: %w", p.dir, ErrClosed)
	}
	p.closed = true
	return p.db.Close()
}

type pebbleTx struct {
	b       *pebble.Batch
	written []string // keys put, to drop from the read cache
}

func (t *pebbleTx) Get(key string) ([]byte, error) { return get(t.b, key) }

func (t *pebbleTx) Put(key string, value []byte) error {
	t.written = append(t.written, key)
	return t.b.Set([]byte(key), value, nil)
}

func (t *pebbleTx) Delete(key string) error {
	t.written = append(t.written, key)
	return t.b.Delete([]byte(key), nil)
}

// get reads key from a DB or an indexed batch.
func get(r pebble.Reader, key string) ([]byte, error) {
	b, closer, err := r.Get([]byte(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	defer closer.Close()
	return append([]byte(nil), b...), nil
}

// prefixEnd is the first key after every key with prefix.
func prefixEnd(prefix string) []byte {
	end := []byte(prefix)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil // prefix is all 0xff (or empty): no upper bound
}

type quietLogger struct{}

func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}
