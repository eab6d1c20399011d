package events

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"strconv"
	"time"

	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/wire"
)

// Keys of a publisher's log: the events of partition p by sequence, and
// the partition's counter. Keys starting with '~' are the events
// package's in every service's store.
func logKey(p int, seq uint64) string { return fmt.Sprintf("~ev/%x/%016x", p, seq) }
func logEnd(p int) string             { return fmt.Sprintf("~ev/%x/g", p) } // after every sequence: hex sorts below 'g'
func headKey(p int) string            { return fmt.Sprintf("~evh/%x", p) }
func pruneKey(p int) string           { return fmt.Sprintf("~evp/%x", p) } // the last sequence retention deleted

// partitionOf is the partition of key's events: its order is kept there.
func partitionOf(key string) int {
	h := fnv.New32a()
	h.Write([]byte(key))
	return int(h.Sum32() % Partitions)
}

// publishTx is a transaction of Update: it counts what was published, so
// that the commit wakes the streams.
type publishTx struct {
	Tx
	published int
}

// Update runs fn in a transaction of the Bus's store; once it commits, the
// events fn published go out at once (a transaction of the store's own
// Update commits them as well, seen within PollInterval).
func (b *Bus) Update(ctx context.Context, fn func(Tx) error) error {
	if b.st == nil {
		return ErrNoStore
	}
	var n int
	err := b.st.Update(ctx, func(tx Tx) error {
		ptx := &publishTx{Tx: tx}
		err := fn(ptx)
		n = ptx.published // the last run is the one that committed
		return err
	})
	if err == nil && n > 0 {
		b.stats.published.Add(int64(n))
		b.wake()
	}
	return err
}

// Publish writes an event into tx: it is published if and only if tx
// commits. ctx says what caused it: the request being handled (its
// X-Request-Id is the correlation ID) or the event being handled; a ghost
// request publishes nothing. topic must have been declared.
func (b *Bus) Publish(ctx context.Context, tx Tx, topic, key string, body []byte) error {
	b.mu.Lock()
	_, ok := b.declared[topic]
	b.mu.Unlock()
	if !ok {
		return fmt.Errorf("publish %q: %w (Declare it)", topic, ErrUndeclared)
	}
	if key == "" || len(key) > 256 {
		return fmt.Errorf("publish %q: key: want 1 to 256 bytes", topic)
	}
	e := Event{Topic: topic, Key: key, Time: time.Now().UTC(), Body: body}
	var err error
	from := ""
	if cause := eventOf(ctx); cause != nil {
		e.Causation = cause.ID
		e.Correlation = cmp.Or(cause.Correlation, cause.ID)
		from = GroupNode(b.node.Service(), cause.group)
	} else if req := nanobus.RequestOf(ctx); req != nil {
		if req.Ghost() {
			return nil // a copy for a version under test: no side effects
		}
		e.Causation = fmt.Sprintf("req:%016x-%016x", req.ID.Node, req.ID.Seq)
		e.Correlation = cmp.Or(string(req.Header.Get("X-Request-Id")), e.Causation)
		from = RouteNode(b.node.Service(), string(req.Route))
	}
	e.Partition = partitionOf(key)
	if e.Seq, err = b.nextSeq(tx, e.Partition); err != nil {
		return fmt.Errorf("publish %q: %w", topic, err)
	}
	e.ID = fmt.Sprintf("%s:%d:%d", b.node.Service(), e.Partition, e.Seq)
	rec, err := json.Marshal(&e)
	if err != nil {
		return err
	}
	if err := tx.Put(logKey(e.Partition, e.Seq), rec); err != nil {
		return err
	}
	if ptx, ok := tx.(*publishTx); ok {
		ptx.published++
	}
	if from != "" {
		b.exercised(Edge{From: from, To: TopicNode(topic)})
	}
	return nil
}

// nextSeq numbers partition's next event in tx: by the transaction when
// the store does (SeqTx), else by the partition's counter, written in tx.
func (b *Bus) nextSeq(tx Tx, partition int) (uint64, error) {
	inner := tx
	if ptx, ok := tx.(*publishTx); ok {
		inner = ptx.Tx
	}
	if st, ok := inner.(SeqTx); ok {
		if seq, ok, err := st.EventSeq(partition); ok || err != nil {
			return seq, err
		}
	}
	head := uint64(0)
	raw, err := tx.Get(headKey(partition))
	switch {
	case err == nil:
		if head, err = strconv.ParseUint(string(raw), 10, 64); err != nil {
			return 0, fmt.Errorf("counter of partition %d: %w", partition, err)
		}
	case !b.st.NotFound(err):
		return 0, err
	}
	return head + 1, tx.Put(headKey(partition), strconv.AppendUint(nil, head+1, 10))
}

// seqOf is the sequence in a log key.
func seqOf(key string) uint64 {
	n, _ := strconv.ParseUint(key[len(key)-16:], 16, 64)
	return n
}

// pruneLoop deletes the events older than the retention, now and then.
func (b *Bus) pruneLoop(ctx context.Context) {
	every := max(min(b.cfg.Retention/4, time.Minute), 100*time.Millisecond)
	for {
		for p := range Partitions {
			for ctx.Err() == nil {
				n, err := b.prune(ctx, p)
				if err != nil && ctx.Err() == nil {
					b.log.Warn("events: pruning the log", "partition", p, "err", err)
				}
				if err != nil || n < readBatch*4 {
					break
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}

// prune deletes the oldest events of partition p that are past the
// retention, a batch at most; it returns how many.
func (b *Bus) prune(ctx context.Context, p int) (int, error) {
	kvs, err := b.st.Scan(ctx, logKey(p, 0), logEnd(p), readBatch*4)
	if err != nil {
		return 0, err
	}
	cutoff := time.Now().Add(-b.cfg.Retention)
	var old []string
	for _, kv := range kvs {
		var e struct {
			Time time.Time `json:"time"`
		}
		if err := json.Unmarshal(kv.Value, &e); err != nil {
			return 0, fmt.Errorf("log entry %s: %w", kv.Key, err)
		}
		if !e.Time.Before(cutoff) {
			break // the log is in time order, give or take the clocks of its writers
		}
		old = append(old, kv.Key)
	}
	if len(old) == 0 {
		return 0, nil
	}
	err = b.st.Update(ctx, func(tx Tx) error {
		for _, k := range old {
			if err := tx.Delete(k); err != nil {
				return err
			}
		}
		return tx.Put(pruneKey(p), strconv.AppendUint(nil, seqOf(old[len(old)-1]), 10))
	})
	if err != nil {
		return 0, err
	}
	b.stats.pruned.Add(int64(len(old)))
	return len(old), nil
}

// readRequest opens a read stream: topic's events after the positions.
type readRequest struct {
	Topic string             `json:"topic"`
	After [Partitions]uint64 `json:"after"`
}

// readSpan is how long one read stream lasts before the reader opens the
// next from where it is: a stream is a call, and calls end.
const readSpan = 30 * time.Second

// readBatch is how many log entries a stream reads from the store at once.
const readBatch = 64

// maxReaders bounds the read streams a publisher serves at once: each
// polls the store while idle.
const maxReaders = 256

// heads reads the partitions' counters into h.
func (b *Bus) heads(ctx context.Context, h *[Partitions]uint64) error {
	return b.perPartition(ctx, "~evh/", h)
}

// pruneMarks reads into m the last sequence retention deleted, per
// partition.
func (b *Bus) pruneMarks(ctx context.Context, m *[Partitions]uint64) error {
	return b.perPartition(ctx, "~evp/", m)
}

// perPartition reads the numbers kept at prefix<partition> into v.
func (b *Bus) perPartition(ctx context.Context, prefix string, v *[Partitions]uint64) error {
	kvs, err := b.st.Scan(ctx, prefix, prefix[:len(prefix)-1]+"0", Partitions) // '0' follows '/'
	if err != nil {
		return err
	}
	for _, kv := range kvs {
		p, err := strconv.ParseUint(kv.Key[len(prefix):], 16, 8)
		if err != nil || p >= Partitions {
			return fmt.Errorf("log entry %q: not a partition", kv.Key)
		}
		if v[p], err = strconv.ParseUint(string(kv.Value), 10, 64); err != nil {
			return fmt.Errorf("log entry %s: %w", kv.Key, err)
		}
	}
	return nil
}

// bounds reads how far the log of each partition may be read into h: the
// partitions' counters, once what they count is durable; or, on a store
// that numbers by transaction, the horizon below which every partition's
// log is final. sequenced says which.
func (b *Bus) bounds(ctx context.Context, h *[Partitions]uint64) (sequenced bool, err error) {
	horizon, sequenced, err := b.st.Horizon(ctx)
	if err != nil {
		return sequenced, err
	}
	if sequenced {
		for p := range h {
			h[p] = max(horizon, 1) - 1
		}
		return true, nil
	}
	if err := b.heads(ctx, h); err != nil {
		return false, err
	}
	// Counted before waiting: what they count has then reached the disk.
	return false, b.st.WaitDurable(ctx)
}

// sendGap sends a marker: the reader's position moves to seq, past gap
// events it will never get (0: past events of other topics).
func (b *Bus) sendGap(w *nanobus.StreamWriter, p int, seq, gap uint64) error {
	mark, _ := json.Marshal(Event{Partition: p, Seq: seq, Gap: gap})
	return w.Send(wire.Headers{}, mark)
}

// serveRead streams the log's events of a topic after the reader's
// positions: what is there, then what commits, until the call ends. An
// entry of another topic is not sent, but the position after a run of
// them is (a chunk with no topic), so that a reader of a quiet topic does
// not read the same entries again after a restart.
func (b *Bus) serveRead(ctx context.Context, req *nanobus.Request, w *nanobus.StreamWriter) error {
	var rr readRequest
	if err := json.Unmarshal(req.Body, &rr); err != nil || rr.Topic == "" {
		return nanobus.Errorf(400, "events.read: want {\"topic\": name, \"after\": [positions]}")
	}
	select {
	case b.readers <- struct{}{}:
		defer func() { <-b.readers }()
	default:
		return nanobus.Errorf(503, "events.read: %d streams open already", maxReaders)
	}
	stop, _ := ctx.Deadline()
	stop = stop.Add(-time.Second) // end cleanly, with an end frame, before the deadline
	poll := time.NewTicker(b.cfg.PollInterval)
	defer poll.Stop()
	// The head goes at once, with where the stream starts: the reader's
	// call returns now, not with the first event.
	first, _ := json.Marshal(Event{Partition: 0, Seq: rr.After[0]})
	if err := w.Send(wire.Headers{}, first); err != nil {
		return err
	}
	var heads, last, marks, scanned [Partitions]uint64
	for time.Now().Before(stop) {
		changed := b.changes() // before reading: a commit after the read wakes us
		// One read says which partitions have more: an idle stream costs
		// the store one small query per poll.
		sequenced, err := b.bounds(ctx, &heads)
		if err != nil {
			return err
		}
		if sequenced && heads != last { // the horizon moved: retention may have too
			if err := b.pruneMarks(ctx, &marks); err != nil {
				return err
			}
			last = heads
		}
		sent := false
		for p := range Partitions {
			from := rr.After[p]
			if sequenced {
				// Numbers have holes (by transaction): what was read up to the
				// horizon need not be read again.
				from = max(from, scanned[p])
				if marks[p] > rr.After[p] { // retention deleted events the reader never got
					if err := b.sendGap(w, p, marks[p], 1); err != nil {
						return err
					}
					rr.After[p], from, sent = marks[p], max(from, marks[p]), true
				}
			}
			if heads[p] <= from {
				continue
			}
			entries, err := b.st.Scan(ctx, logKey(p, from+1), logKey(p, heads[p]+1), readBatch)
			if err != nil {
				return err
			}
			if sequenced {
				scanned[p] = heads[p]
				if len(entries) == readBatch {
					scanned[p] = seqOf(entries[len(entries)-1].Key)
				}
			} else {
				// Counted sequences have no holes but those retention made:
				// the reader is told how many it will never get.
				next := heads[p] + 1
				if len(entries) > 0 {
					next = seqOf(entries[0].Key)
				}
				if next > rr.After[p]+1 {
					if err := b.sendGap(w, p, next-1, next-1-rr.After[p]); err != nil {
						return err
					}
					rr.After[p], sent = next-1, true
				}
			}
			skipped := false
			for _, kv := range entries {
				var e struct {
					Topic string `json:"topic"`
					Seq   uint64 `json:"seq"`
				}
				if err := json.Unmarshal(kv.Value, &e); err != nil {
					return fmt.Errorf("log entry %s: %w", kv.Key, err)
				}
				if e.Seq <= rr.After[p] {
					continue // behind a retention mark read since
				}
				rr.After[p] = e.Seq
				if e.Topic != rr.Topic {
					skipped = true
					continue
				}
				skipped = false
				if err := w.Send(wire.Headers{}, kv.Value); err != nil {
					return err
				}
				sent = true
			}
			if skipped {
				if err := b.sendGap(w, p, rr.After[p], 0); err != nil {
					return err
				}
				sent = true
			}
		}
		if sent {
			continue
		}
		select {
		case <-changed:
		case <-poll.C:
		case <-ctx.Done():
			return nil
		case <-b.ctx.Done(): // the Bus closes: the reader opens its next stream elsewhere
			return nil
		case <-time.After(time.Until(stop)):
		}
	}
	return nil
}
