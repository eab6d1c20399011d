// Package events is domain events between services: published inside the
// store transaction that makes the change, delivered to every subscribing
// group, in order per key, at least once, and applied effectively once by
// subscribers that keep their position in their own store. Failures go to
// the message hospital instead of blocking everything behind them.
//
//	ev := events.New(node, events.Config{Store: log})       // log: the service's store (store.EventLog)
//	ev.Declare("profile.visited", "visits.record")          // the topic, and the routes that publish it
//	err := ev.Update(ctx, func(tx events.Tx) error {
//		// ... the change itself, in tx ...
//		return ev.Publish(ctx, tx, "profile.visited", profileID, body)
//	})
//
//	ev.Subscribe("profile.visited", "notifications", func(ctx context.Context, tx events.Tx, e *events.Event) error {
//		// ... the projection, written in tx: it commits with the position ...
//	}, events.From("visits"))
//	ev.Start()
//
// # Publishing: the service's store is its log
//
// Publish writes the event into the transaction of the change (a
// transactional outbox): the event exists if and only if the change
// commits. There is no broker: each publishing service's store is its own
// log, split into Partitions by the event's key. Numbers follow commit
// order, so a reader that has seen position N of a partition has seen
// everything committed before N: no row appears behind a cursor later, as
// it can with a BIGSERIAL. Pebble runs one writer at a time and numbers by
// a counter written in the same batch; PostgreSQL numbers by transaction
// ID (SeqTx) and a reader reads only below the oldest transaction still
// running, so publishers never conflict on a counter row and nothing
// committed late is skipped. A ghost request never publishes.
//
// # Delivery: a stream per subscription, pushed at once, resumed from the position
//
// A subscription opens a stream call (nanobus streams, with the reader's
// credit bounding what is in flight) to an instance of the publishing
// service, from the position it committed last. The publisher sends what
// its log has after that position, then each event as soon as its
// transaction commits (a commit wakes the streams of that process; other
// instances' commits are seen within PollInterval). A stream that breaks
// (a publisher killed, a network cut) is opened again from the committed
// position: nothing is lost, and what was delivered twice is skipped,
// since the handler's effects and the new position commit in one
// transaction. One instance of each group reads a subscription at a time,
// under a lease kept in the group's store; its other instances stand by.
//
// # The message hospital
//
// A handler that fails is retried at once (Retries), then parked: the
// event is kept with its reason, handler, attempts and last error, and
// retried later with backoff (Delays); after the last delayed attempt it
// waits for an operator (Hospital: list, show, replay, discard, also on
// the bus route RouteHospital). While an event of a key is parked, the
// later events of that key wait behind it, in order; other keys flow.
// Replaying an event that was already healed, replayed or discarded does
// nothing: replays are deduplicated by event ID, and every action is
// recorded in the patient's history.
//
// # The cascade graph
//
// Declare and Subscribe say what a service publishes (and from which
// routes) and what it consumes (and publishes in turn); Declaration is what
// discovery registers in etcd with the node, from which `terminator graph`
// draws routes -> events -> handlers -> events for the whole fleet.
// Exercised lists the edges this process has carried, for marking the
// edges no test exercised.
package events
