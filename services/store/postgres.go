package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// MaxUpdateTries bounds how many times Postgres.Update runs a transaction
// that keeps losing serialization conflicts before it gives up. With the
// backoff below (2 ms doubling to 100 ms, jittered), 32 writers of one key
// through two handles needed at most 9 in our runs.
const MaxUpdateTries = 16

// Postgres is the store a fleet shares: every instance of a service, of
// any version, opens the same database with the same namespace and sees
// the same data. Updates are SERIALIZABLE transactions, retried when they
// lose a conflict with another writer (in this process or another).
type Postgres struct {
	pool   *pgxpool.Pool
	ns     string
	closed atomic.Bool
	// xids: the server has pg_current_xact_id and pg_current_snapshot
	// (PostgreSQL 13+): the events log is numbered by transaction.
	xids bool
}

// The schema: one table for every namespace, keyed by (namespace, key).
// Keys and values are BYTEA so that keys sort in byte order on every
// server, whatever its collation, as they do in Pebble.
const (
	sqlGet = `SELECT v FROM terminator_store WHERE ns = $1 AND k = $2`
	sqlPut = `INSERT INTO terminator_store (ns, k, v) VALUES ($1, $2, $3) ON CONFLICT (ns, k) DO UPDATE SET v = excluded.v`
	// List: a range scan of the primary key, with or without an upper
	// bound (a prefix of only 0xff bytes has none) and a limit.
	sqlList         = `SELECT k, v FROM terminator_store WHERE ns = $1 AND k >= $2 ORDER BY k`
	sqlListLimit    = `SELECT k, v FROM terminator_store WHERE ns = $1 AND k >= $2 ORDER BY k LIMIT $3`
	sqlListEnd      = `SELECT k, v FROM terminator_store WHERE ns = $1 AND k >= $2 AND k < $3 ORDER BY k`
	sqlListEndLimit = `SELECT k, v FROM terminator_store WHERE ns = $1 AND k >= $2 AND k < $3 ORDER BY k LIMIT $4`
	sqlDelete       = `DELETE FROM terminator_store WHERE ns = $1 AND k = $2`
	sqlCheck        = `SELECT 1`
	// The events log's numbers: a transaction's ID, and the oldest still
	// running (every transaction below it has committed or aborted).
	sqlXID     = `SELECT pg_current_xact_id()::text`
	sqlHorizon = `SELECT pg_snapshot_xmin(pg_current_snapshot())::text`
	sqlSchema  = `CREATE TABLE IF NOT EXISTS terminator_store_schema (
		version INT NOT NULL PRIMARY KEY,
		applied TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP
	)`
	sqlApplied = `SELECT version FROM terminator_store_schema`
	sqlApply   = `INSERT INTO terminator_store_schema (version) VALUES ($1) ON CONFLICT (version) DO NOTHING`
)

// migrations brings a database to the schema this code reads and writes.
// Each step's statements are idempotent (IF NOT EXISTS) and run one at a
// time outside a transaction, since CockroachDB and YugabyteDB do not
// promise atomic DDL inside one; instances starting at once may run the
// same step together, and record it once. Steps only ever add: during a
// rollout the older version runs on the newer schema.
var migrations = []struct {
	version int
	stmts   []string
}{
	{1, []string{`CREATE TABLE IF NOT EXISTS terminator_store (
		ns TEXT NOT NULL,
		k BYTEA NOT NULL,
		v BYTEA NOT NULL,
		PRIMARY KEY (ns, k)
	)`}},
}

// OpenPostgres connects to the database at url (a postgres:// URL; pgx
// pool settings such as pool_max_conns may ride in its query), brings the
// schema up to date, and returns namespace's store.
func OpenPostgres(ctx context.Context, url, namespace string) (*Postgres, error) {
	if !ValidID(namespace) {
		return nil, fmt.Errorf("open postgres store: bad namespace %q: want 1 to 64 of a-z, 0-9, '-', '_'", namespace)
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("open postgres store: %w", err) // pgx leaves the password out
	}
	// A transaction left open by a stopped process would hold the events
	// horizon back (and vacuum) for good; ours are bounded well below this.
	if _, set := cfg.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"]; !set {
		cfg.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"] = "60s"
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open postgres store %s: %w", where(cfg), err)
	}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open postgres store %s: %w", where(cfg), err)
	}
	p := &Postgres{pool: pool, ns: namespace}
	var xmin string
	if err := pool.QueryRow(ctx, sqlHorizon).Scan(&xmin); err == nil {
		p.xids = true
	} else if !isCode(err, "42883") { // undefined_function: a server without them numbers by counter
		pool.Close()
		return nil, fmt.Errorf("open postgres store %s: %w", where(cfg), err)
	}
	return p, nil
}

func isCode(err error, code string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == code
}

// xidShift makes room below a transaction ID for the events it publishes
// in a partition: 65,536 each; IDs stay below 2^48 (epoch and xid) for
// ages.
const xidShift = 16

// horizon is the first events sequence that a transaction still running
// could take: the log below it is final.
func (p *Postgres) horizon(ctx context.Context) (uint64, bool, error) {
	if !p.xids {
		return 0, false, nil
	}
	if err := p.enter(ctx); err != nil {
		return 0, true, err
	}
	xmin, err := queryXID(ctx, p.pool, sqlHorizon)
	if err != nil {
		return 0, true, fmt.Errorf("events horizon: %w", err)
	}
	return xmin << xidShift, true, nil
}

// queryXID runs a query answering one transaction ID as text (xid8 has no
// binary form pgx reads into a uint64).
func queryXID(ctx context.Context, q querier, sql string) (uint64, error) {
	var s string
	if err := q.QueryRow(ctx, sql).Scan(&s); err != nil {
		return 0, err
	}
	xid, err := strconv.ParseUint(s, 10, 64)
	if err != nil || xid == 0 || xid >= 1<<(64-xidShift) {
		return 0, fmt.Errorf("transaction id %q out of range", s)
	}
	return xid, nil
}

// where names the database for error messages, without credentials.
func where(cfg *pgxpool.Config) string {
	return fmt.Sprintf("%s:%d/%s", cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database)
}

// migrate applies the steps the database has not recorded. A step that
// collides with another instance doing the same (a duplicate catalog row
// or table, a serialization failure) is tried again from the start.
func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	return retry(ctx, func(code string) bool {
		// unique_violation (of a catalog index), duplicate_table, duplicate_object (the table's row type)
		return retryable(code) || code == "23505" || code == "42P07" || code == "42710"
	}, func() error {
		if _, err := pool.Exec(ctx, sqlSchema); err != nil {
			return fmt.Errorf("create schema table: %w", err)
		}
		rows, err := pool.Query(ctx, sqlApplied)
		if err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		done, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		for _, m := range migrations {
			if slices.Contains(done, int64(m.version)) {
				continue
			}
			for _, stmt := range m.stmts {
				if _, err := pool.Exec(ctx, stmt); err != nil {
					return fmt.Errorf("migrate to version %d: %w", m.version, err)
				}
			}
			if _, err := pool.Exec(ctx, sqlApply, m.version); err != nil {
				return fmt.Errorf("record version %d: %w", m.version, err)
			}
		}
		return nil
	})
}

// enter fails once ctx has ended or the store is closed.
func (p *Postgres) enter(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if p.closed.Load() {
		return fmt.Errorf("postgres store %s: %w", p.ns, ErrClosed)
	}
	return nil
}

// Get returns a copy of the value at key, or ErrNotFound.
func (p *Postgres) Get(ctx context.Context, key string) ([]byte, error) {
	if err := p.enter(ctx); err != nil {
		return nil, err
	}
	return pgGet(ctx, p.pool, p.ns, key)
}

// querier is what a pool and a transaction share.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func pgGet(ctx context.Context, q querier, ns, key string) ([]byte, error) {
	var v []byte
	err := q.QueryRow(ctx, sqlGet, ns, []byte(key)).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get %q: %w", key, err)
	}
	return v, nil
}

// List returns up to limit entries under prefix, in byte order of their
// keys: a range scan of the primary key, k >= prefix AND k < prefixEnd.
func (p *Postgres) List(ctx context.Context, prefix string, limit int) ([]Entry, error) {
	return p.Scan(ctx, prefix, string(prefixEnd(prefix)), limit)
}

// Scan returns up to limit entries with start <= k < end, in byte order of
// their keys.
func (p *Postgres) Scan(ctx context.Context, start, end string, limit int) ([]Entry, error) {
	if err := p.enter(ctx); err != nil {
		return nil, err
	}
	sql, args := sqlList, []any{p.ns, []byte(start)}
	switch {
	case end == "" && limit > 0:
		sql, args = sqlListLimit, append(args, limit)
	case end != "" && limit <= 0:
		sql, args = sqlListEnd, append(args, []byte(end))
	case end != "":
		sql, args = sqlListEndLimit, append(args, []byte(end), limit)
	}
	rows, err := p.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("scan %q: %w", start, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Entry, error) {
		var k, v []byte
		err := r.Scan(&k, &v)
		return Entry{Key: string(k), Value: v}, err
	})
	if err != nil {
		return nil, fmt.Errorf("scan %q: %w", start, err)
	}
	return out, nil
}

// Update runs fn in a SERIALIZABLE transaction and commits it. A
// transaction that loses a conflict (SQLSTATE 40001 serialization failure,
// 40P01 deadlock), whether in fn's reads and writes or at commit, is
// rolled back and run again, fn included, after a short random backoff,
// up to MaxUpdateTries times and never past ctx. Commit returns once the
// server has the writes durably (its default synchronous_commit).
func (p *Postgres) Update(ctx context.Context, fn func(Tx) error) error {
	if err := p.enter(ctx); err != nil {
		return err
	}
	return retry(ctx, retryable, func() error { return p.try(ctx, fn) })
}

// try runs fn in one transaction.
func (p *Postgres) try(ctx context.Context, fn func(Tx) error) error {
	tx, err := p.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.Serializable})
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	committed := false
	defer func() {
		if !committed { // fn failed or panicked, or commit failed
			// Within ctx too: when ctx has ended, pgx drops the
			// connection instead, and the server rolls back.
			_ = tx.Rollback(ctx)
		}
	}()
	if err := fn(&pgTx{ctx: ctx, tx: tx, ns: p.ns, xids: p.xids}); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	committed = true
	return nil
}

// retryable reports whether a transaction that failed with SQLSTATE code
// may simply run again: it lost a conflict, and nothing of it committed.
func retryable(code string) bool {
	return code == "40001" || code == "40P01" // serialization_failure, deadlock_detected
}

// retry runs op until it succeeds, fails with an error whose SQLSTATE
// again does not accept, ctx ends, or MaxUpdateTries runs have failed.
func retry(ctx context.Context, again func(code string) bool, op func() error) error {
	b := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(2*time.Millisecond),
		backoff.WithMultiplier(2),
		backoff.WithMaxInterval(100*time.Millisecond),
		backoff.WithMaxElapsedTime(0), // ctx bounds the time
	)
	tries := 0
	err := backoff.Retry(func() error {
		tries++
		err := op()
		var pgErr *pgconn.PgError
		if err == nil || errors.As(err, &pgErr) && again(pgErr.Code) {
			return err
		}
		return backoff.Permanent(err)
	}, backoff.WithContext(backoff.WithMaxRetries(b, MaxUpdateTries-1), ctx))
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && again(pgErr.Code) {
		return fmt.Errorf("gave up after %d tries: %w", tries, err)
	}
	return err
}

// Check runs a trivial query: it fails when the database cannot be
// reached before ctx's deadline, or the store is closed.
func (p *Postgres) Check(ctx context.Context) error {
	if err := p.enter(ctx); err != nil {
		return err
	}
	var one int
	if err := p.pool.QueryRow(ctx, sqlCheck).Scan(&one); err != nil {
		return fmt.Errorf("check postgres store %s: %w", p.ns, err)
	}
	return nil
}

// Close waits for the connections in use to come back, then closes them
// all; closing again returns ErrClosed.
func (p *Postgres) Close() error {
	if p.closed.Swap(true) {
		return fmt.Errorf("postgres store %s: %w", p.ns, ErrClosed)
	}
	p.pool.Close()
	return nil
}

type pgTx struct {
	ctx  context.Context
	tx   pgx.Tx
	ns   string
	xids bool
	xid  uint64         // once asked for
	seqs map[int]uint64 // events published per partition
}

// EventSeq numbers the events published in t by its transaction ID:
// numbers no other transaction takes, with no row to contend for.
func (t *pgTx) EventSeq(partition int) (uint64, bool, error) {
	if !t.xids {
		return 0, false, nil
	}
	if t.xid == 0 {
		xid, err := queryXID(t.ctx, t.tx, sqlXID)
		if err != nil {
			return 0, true, fmt.Errorf("transaction id: %w", err)
		}
		t.xid, t.seqs = xid, map[int]uint64{}
	}
	n := t.seqs[partition]
	if n >= 1<<xidShift-1 {
		return 0, true, fmt.Errorf("more than %d events of partition %d in one transaction", 1<<xidShift-1, partition)
	}
	t.seqs[partition] = n + 1
	return t.xid<<xidShift | n, true, nil
}

func (t *pgTx) Get(key string) ([]byte, error) { return pgGet(t.ctx, t.tx, t.ns, key) }

func (t *pgTx) Put(key string, value []byte) error {
	if value == nil {
		value = []byte{} // nil would be NULL; an empty value is a value
	}
	if _, err := t.tx.Exec(t.ctx, sqlPut, t.ns, []byte(key), value); err != nil {
		return fmt.Errorf("put %q: %w", key, err)
	}
	return nil
}

func (t *pgTx) Delete(key string) error {
	if _, err := t.tx.Exec(t.ctx, sqlDelete, t.ns, []byte(key)); err != nil {
		return fmt.Errorf("delete %q: %w", key, err)
	}
	return nil
}
