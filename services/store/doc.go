// Package store is the domain services' durable data: a small key-value
// interface (keys are short strings, values JSON documents) with two
// implementations. Pebble is the embedded default: one process per data
// directory, every write synced. PostgreSQL is what a fleet shares: any
// number of instances, and two versions of a service during a rollout,
// read and write the same data.
//
// Writes go through Update, a transaction whose reads and writes commit
// together or not at all; a store may run fn again after a conflict with
// another writer, so fn must not have effects outside its Tx.
//
// Open picks the implementation from one setting (the binary's -store
// flag): a postgres:// URL, or a data directory. Both pass one suite,
// package storetest; package pgtest runs a real PostgreSQL for tests.
//
// # PostgreSQL
//
// Every service is a namespace in one table, terminator_store, keyed by
// (ns, k): visits and flirts both keep "n/<id>", and neither sees the
// other's. Keys and values are BYTEA, so keys sort in byte order whatever
// the server's collation, as in Pebble; List is a range scan of the
// primary key (k >= prefix AND k < prefixEnd(prefix), ORDER BY k, LIMIT).
// The schema is created or migrated when a store opens: the versions
// applied are rows of terminator_store_schema; each step is idempotent
// DDL run statement by statement, and an instance that collides with
// another starting at the same moment (SQLSTATE 23505, 42P07, 42710,
// 40001) starts over, a bounded number of times. Steps only ever add, so
// an older version keeps running on a newer schema during a rollout.
//
// Update is a SERIALIZABLE transaction; one that fails with a
// serialization failure or deadlock (40001, 40P01), at any statement or at
// commit, is rolled back and run again after a jittered exponential
// backoff, at most MaxUpdateTries times and never past ctx. Commit waits
// for the server's durable write (its synchronous_commit default). Every
// query runs on the caller's context: a deadline that passes cancels the
// query (pgx closes that connection; the pool opens another).
//
// # Portability: CockroachDB and YugabyteDB
//
// The SQL sticks to what the Postgres-protocol distributed databases
// accept as well: no advisory locks, no system columns (xmin, xmax), no
// LISTEN, no PostgreSQL-only syntax where a standard form exists. We
// cannot run those databases here (no image can be pulled), so each
// statement was checked against their documentation instead, not run:
//
//   - CREATE TABLE IF NOT EXISTS with TEXT, BYTEA, INT, TIMESTAMPTZ
//     DEFAULT CURRENT_TIMESTAMP and a composite PRIMARY KEY: CockroachDB
//     (BYTEA is an alias of its BYTES) and YugabyteDB YSQL (BYTEA, as in
//     PostgreSQL 15). In YugabyteDB, PRIMARY KEY (ns, k) hashes ns and
//     keeps k in ascending order within it: a namespace's range scans stay
//     on one tablet, in key order.
//   - DDL outside explicit transactions, one statement at a time:
//     CockroachDB documents schema changes in explicit transactions as not
//     fully atomic, and recommends one per implicit transaction.
//   - INSERT ... ON CONFLICT (ns, k) DO UPDATE SET v = excluded.v, and ON
//     CONFLICT (version) DO NOTHING: both document this PostgreSQL form
//     (CockroachDB also has UPSERT, which we do not use).
//   - SELECT ... WHERE ns = $1 AND k >= $2 AND k < $3 ORDER BY k LIMIT $4,
//     SELECT 1: plain selection queries in both.
//   - BEGIN ISOLATION LEVEL SERIALIZABLE (what pgx sends): CockroachDB's
//     default level; YugabyteDB supports Serializable in YSQL. Both return
//     SQLSTATE 40001 for a transaction the client must retry, at any
//     statement or at COMMIT, which is the retry above.
//
// pgx's default statement cache uses the extended protocol's prepared
// statements, which both accept. Behind a pooler in transaction mode, add
// default_query_exec_mode=exec to the URL.
package store
