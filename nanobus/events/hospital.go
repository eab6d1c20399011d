package events

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/terminator-gw/terminator/nanobus"
)

// Patient is an event a handler failed on, kept in the subscribing
// service's store with what happened to it.
type Patient struct {
	ID        string    `json:"id"` // "<group>@<event ID>"
	Event     Event     `json:"event"`
	Group     string    `json:"group"`
	From      string    `json:"from"`
	Handler   string    `json:"handler"` // the subscription: "<group>/<from>/<topic>"
	State     string    `json:"state"`   // see the State constants
	Reason    string    `json:"reason"`  // why it was parked
	Attempts  int       `json:"attempts"`
	LastError string    `json:"last_error"`
	Parked    time.Time `json:"parked"`
	NextRetry time.Time `json:"next_retry,omitzero"` // zero: waits for an operator
	Request   string    `json:"request,omitempty"`   // "replay" or "discard", asked by an operator, not yet done
	Waiting   int       `json:"waiting"`             // later events of its key queued behind it
	History   []Note    `json:"history"`
}

// Note is one thing that happened to a patient.
type Note struct {
	At   time.Time `json:"at"`
	What string    `json:"what"`
}

// A patient's states.
const (
	StateRetrying  = "retrying"  // delayed retries are due
	StateParked    = "parked"    // retries exhausted: waits for an operator
	StateHealed    = "healed"    // a delayed retry applied it
	StateReplayed  = "replayed"  // an operator's replay applied it
	StateDiscarded = "discarded" // an operator dropped it
)

func (p *Patient) open() bool { return p.State == StateRetrying || p.State == StateParked }

func (p *Patient) note(format string, args ...any) {
	p.History = append(p.History, Note{At: time.Now().UTC(), What: fmt.Sprintf(format, args...)})
}

const hospitalPrefix = "~hosp/"

func patientKey(id string) string { return hospitalPrefix + id }

// park keeps e in the hospital: the position moves past it, and its key's
// later events queue behind it.
func (s *subscription) park(ctx context.Context, e *Event, cause error) error {
	p := Patient{ID: s.decl.Group + "@" + e.ID, Event: *e, Group: s.decl.Group, From: s.decl.From, Handler: s.String(),
		State: StateRetrying, Reason: "the handler failed", Attempts: s.retries + 1, LastError: cause.Error(), Parked: time.Now().UTC()}
	p.schedule(s.delays, 0)
	p.note("parked after %d attempts: %v", p.Attempts, cause)
	err := s.st.Update(ctx, func(tx Tx) error {
		pos, err := s.positions(tx)
		if err != nil {
			return err
		}
		pos[e.Partition] = max(pos[e.Partition], e.Seq)
		if err := savePatient(tx, &p); err != nil {
			return err
		}
		if err := tx.Put(s.parkKey(e.Key), []byte(p.ID)); err != nil {
			return err
		}
		return writeJSON(tx, s.posKey(), pos)
	})
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.pos[e.Partition] = max(s.pos[e.Partition], e.Seq)
	s.patients++
	s.mu.Unlock()
	s.b.stats.parked.Add(1)
	s.b.log.Warn("events: parked in the hospital", "patient", p.ID, "handler", p.Handler, "key", e.Key, "err", cause)
	return nil
}

// schedule sets the next delayed retry after the done-th, or none.
func (p *Patient) schedule(delays []time.Duration, done int) {
	if done < len(delays) {
		p.State, p.NextRetry = StateRetrying, time.Now().Add(delays[done]).UTC()
		return
	}
	p.State, p.NextRetry = StateParked, time.Time{}
}

// treat looks after this subscription's patients: delayed retries that are
// due, and what operators asked.
func (s *subscription) treat(ctx context.Context) {
	kvs, err := s.st.Scan(ctx, patientKey(s.decl.Group+"@"+s.decl.From+":"), patientKey(s.decl.Group+"@"+s.decl.From+";"), 0)
	if err != nil {
		return
	}
	open := 0
	for _, kv := range kvs {
		var p Patient
		if json.Unmarshal(kv.Value, &p) != nil || p.Handler != s.String() || !p.open() {
			continue
		}
		open++
		due := p.Request != "" || p.State == StateRetrying && !time.Now().Before(p.NextRetry)
		if !due {
			continue
		}
		if err := s.heal(ctx, &p); err != nil {
			s.b.log.Warn("events: treating a patient", "patient", p.ID, "err", err)
			continue
		}
		if !p.open() {
			open--
		}
	}
	s.mu.Lock()
	s.patients = open
	s.mu.Unlock()
}

// heal does what is due for p: a discard, or an attempt (a replay or a
// delayed retry); once p is done with, the events of its key that waited
// behind it go, in order.
func (s *subscription) heal(ctx context.Context, p *Patient) error {
	// Each step reads the patient again in its transaction: an operator
	// may have asked something since the scan, and nothing done is undone.
	var request string
	var closed bool
	err := s.st.Update(ctx, func(tx Tx) error {
		cur, err := s.b.patientIn(tx, p.ID)
		if err != nil || !cur.open() {
			closed = err == nil
			return err
		}
		*p = *cur
		request, p.Request = p.Request, ""
		if request == "discard" {
			p.State = StateDiscarded
			p.note("discarded by an operator")
			return savePatient(tx, p)
		}
		p.Attempts++
		if err := s.call(ctx, tx, &p.Event); err != nil {
			return err
		}
		if request == "replay" {
			p.State = StateReplayed
			p.note("replayed by an operator: applied")
		} else {
			p.State = StateHealed
			p.note("retry %d: applied", p.Attempts)
		}
		return savePatient(tx, p)
	})
	var he handlerError
	switch {
	case err == nil && closed:
		return nil
	case err == nil:
		switch request {
		case "discard":
			s.b.stats.discarded.Add(1)
		case "replay":
			s.b.stats.replayed.Add(1)
		}
		if request != "discard" {
			s.b.stats.healed.Add(1)
			s.b.stats.delivered.Add(1)
			s.b.exercised(s.edge)
		}
		return s.release(ctx, p.Event.Key)
	case !errors.As(err, &he):
		return err
	}
	s.b.stats.failed.Add(1)
	return s.st.Update(ctx, func(tx Tx) error {
		cur, err := s.b.patientIn(tx, p.ID)
		if err != nil || !cur.open() {
			return err
		}
		*p = *cur
		p.Attempts++
		p.LastError = he.Error()
		if request == "replay" {
			p.Request = ""
			p.note("replayed by an operator: failed: %v", he.err)
			return savePatient(tx, p)
		}
		done := 0
		for _, n := range p.History {
			if strings.HasPrefix(n.What, "retry ") {
				done++
			}
		}
		p.note("retry %d: failed: %v", done+1, he.err)
		p.schedule(s.delays, done+1)
		return savePatient(tx, p)
	})
}

// savePatient writes p; how many events wait behind it is counted when it
// is read, not kept.
func savePatient(tx Tx, p *Patient) error {
	p.Waiting = 0
	return writeJSON(tx, patientKey(p.ID), p)
}

// patientIn reads patient id in tx.
func (b *Bus) patientIn(tx Tx, id string) (*Patient, error) {
	raw, err := tx.Get(patientKey(id))
	if b.st.NotFound(err) {
		return nil, nanobus.Errorf(404, "hospital: no patient %q", id)
	}
	if err != nil {
		return nil, err
	}
	var p Patient
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, fmt.Errorf("patient %s: %w", id, err)
	}
	return &p, nil
}

// release applies the events of key that waited behind a patient, in
// order, until none is left (the key flows again) or one fails (it is the
// key's patient now, and the rest wait behind it).
func (s *subscription) release(ctx context.Context, key string) error {
	prefix := s.prefix + "queue/" + hexOf(key) + "/"
	for {
		kvs, err := s.st.Scan(ctx, prefix, prefix+"~", 1)
		if err != nil {
			return err
		}
		if len(kvs) == 0 {
			return s.st.Update(ctx, func(tx Tx) error { return tx.Delete(s.parkKey(key)) })
		}
		var e Event
		if err := json.Unmarshal(kvs[0].Value, &e); err != nil {
			return fmt.Errorf("queued event %s: %w", kvs[0].Key, err)
		}
		var herr error
		for range s.retries + 1 {
			herr = s.st.Update(ctx, func(tx Tx) error {
				if err := s.call(ctx, tx, &e); err != nil {
					return err
				}
				return tx.Delete(kvs[0].Key)
			})
			var he handlerError
			if herr == nil || !errors.As(herr, &he) {
				break
			}
			s.b.stats.failed.Add(1)
		}
		var he handlerError
		switch {
		case herr == nil:
			s.b.stats.delivered.Add(1)
			continue
		case !errors.As(herr, &he):
			return herr
		}
		// e is the key's patient now; the rest stay queued behind it.
		p := Patient{ID: s.decl.Group + "@" + e.ID, Event: e, Group: s.decl.Group, From: s.decl.From, Handler: s.String(),
			Reason: "the handler failed (it had waited behind another)", Attempts: s.retries + 1, LastError: herr.Error(), Parked: time.Now().UTC()}
		p.schedule(s.delays, 0)
		p.note("parked after %d attempts: %v", p.Attempts, herr)
		s.b.stats.parked.Add(1)
		return s.st.Update(ctx, func(tx Tx) error {
			if err := savePatient(tx, &p); err != nil {
				return err
			}
			if err := tx.Delete(kvs[0].Key); err != nil {
				return err
			}
			return tx.Put(s.parkKey(key), []byte(p.ID))
		})
	}
}

// HospitalRequest is what RouteHospital takes: Op "list", "show",
// "replay" or "discard"; ID the patient's for all but list.
type HospitalRequest struct {
	Op string `json:"op"`
	ID string `json:"id,omitempty"`
}

// serveHospital answers RouteHospital: the patients (list, a JSON array),
// one of them (show), or an operator's replay or discard, which the
// group's reader carries out (it alone applies the group's events, so
// the order of a key holds); the answer is the patient once it has.
func (b *Bus) serveHospital(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
	var hr HospitalRequest
	if err := json.Unmarshal(req.Body, &hr); err != nil {
		return nanobus.Reply{}, nanobus.Errorf(400, "hospital: want {\"op\": list|show|replay|discard, \"id\": patient}")
	}
	switch hr.Op {
	case "list":
		ps, err := b.Patients(ctx)
		if err != nil {
			return nanobus.Reply{}, err
		}
		return nanobus.JSON(200, ps)
	case "show":
		p, err := b.patient(ctx, hr.ID)
		if err != nil {
			return nanobus.Reply{}, err
		}
		return nanobus.JSON(200, p)
	case "replay", "discard":
		operator := cmp.Or(string(req.Header.Get("X-Operator")), "unnamed")
		var p *Patient
		err := b.st.Update(ctx, func(tx Tx) error {
			var err error
			if p, err = b.patientIn(tx, hr.ID); err != nil {
				return err
			}
			if !p.open() { // deduplicated: it was applied, or dropped, once
				p.note("%s asked by an operator (%s): nothing to do, the event was %s", hr.Op, operator, p.State)
			} else {
				p.Request = hr.Op
				p.note("%s asked by an operator (%s)", hr.Op, operator)
			}
			return savePatient(tx, p)
		})
		if err != nil {
			return nanobus.Reply{}, err
		}
		if p.Request == "" {
			return nanobus.JSON(200, p)
		}
		b.pokeAll()
		// The group's reader does it; answer once it has, or, a little
		// before the call's deadline, that it was asked.
		dl, _ := ctx.Deadline()
		giveUp := time.NewTimer(time.Until(dl) - 500*time.Millisecond)
		defer giveUp.Stop()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-giveUp.C:
				return nanobus.JSON(202, p)
			case <-tick.C:
			}
			if q, err := b.patient(ctx, hr.ID); err == nil && q.Request == "" {
				return nanobus.JSON(200, q)
			}
		}
	}
	return nanobus.Reply{}, nanobus.Errorf(400, "hospital: unknown op %q: want list, show, replay or discard", hr.Op)
}

func (b *Bus) pokeAll() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, s := range b.subs {
		select {
		case s.poke <- struct{}{}:
		default:
		}
	}
}

// Patients returns the hospital's patients of every subscription of the
// service, healed and discarded ones too, with how many events wait
// behind each open one.
func (b *Bus) Patients(ctx context.Context) ([]Patient, error) {
	kvs, err := b.st.Scan(ctx, hospitalPrefix, hospitalPrefix+"\xff", 0)
	if err != nil {
		return nil, err
	}
	out := make([]Patient, 0, len(kvs))
	for _, kv := range kvs {
		var p Patient
		if err := json.Unmarshal(kv.Value, &p); err != nil {
			return nil, fmt.Errorf("patient %s: %w", kv.Key, err)
		}
		if p.open() {
			b.countWaiting(ctx, &p)
		}
		out = append(out, p)
	}
	return out, nil
}

func (b *Bus) countWaiting(ctx context.Context, p *Patient) {
	prefix := "~sub/" + p.Handler + "/queue/" + hexOf(p.Event.Key) + "/"
	if kvs, err := b.st.Scan(ctx, prefix, prefix+"~", 1000); err == nil {
		p.Waiting = len(kvs)
	}
}

func (b *Bus) patient(ctx context.Context, id string) (*Patient, error) {
	raw, err := b.st.Get(ctx, patientKey(id))
	if b.st.NotFound(err) {
		return nil, nanobus.Errorf(404, "hospital: no patient %q", id)
	}
	if err != nil {
		return nil, err
	}
	var p Patient
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, err
	}
	if p.open() {
		b.countWaiting(ctx, &p)
	}
	return &p, nil
}
