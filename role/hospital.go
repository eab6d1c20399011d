package role

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/terminator-gw/terminator/discovery"
	"github.com/terminator-gw/terminator/discovery/rollout"
	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/nanobus/events"
	"github.com/terminator-gw/terminator/wire"
)

// `terminator hospital`: the message hospital of every subscribing service
// (package events), through the bus route each serves (events.RouteHospital).
// The command joins the bus as a caller-only node, as the front does, since
// the hospital lives in each service's store and only the service can act
// on it: a replay must run the service's own handler, under its group's
// reader, for the order of the key to hold.

// hospitalEtcdWait bounds the command's first list of the registry, and
// hospitalPeerWait how long it waits to connect to an instance of a
// service: an operator at a terminal would rather hear "unreachable" than
// wait.
const (
	hospitalEtcdWait = 10 * time.Second
	hospitalPeerWait = 5 * time.Second
	hospitalCallWait = 10 * time.Second // list and show
)

// hospitalCmd is one run of the command: its flags, and the bus node and
// watcher it joins with.
type hospitalCmd struct {
	stdout, stderr io.Writer

	etcd     discovery.ClientConfig
	bus      BusConfig
	service  string
	json     bool
	open     bool
	operator string
	wait     time.Duration

	node    *nanobus.Node
	w       *discovery.Watcher
	closeFn func() // leaves the bus and etcd
}

func hospitalUsage(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprint(tw, "usage: terminator hospital <command> [flags]\n\n")
	fmt.Fprint(tw, "  list [-open]\tthe patients of every subscribing service: events a handler kept failing on\n")
	fmt.Fprint(tw, "  show ID\tone patient, with its history\n")
	fmt.Fprint(tw, "  replay ID\trun the handler on it again, now (once it succeeds, the events of its key that waited go)\n")
	fmt.Fprint(tw, "  discard ID\tdrop it (the events of its key that waited go)\n")
	fmt.Fprintf(tw, "\nEvery command takes -service S (only that service), -json (the raw answers), -etcd-endpoints\n")
	fmt.Fprintf(tw, "(default %s, the embedded etcd of terminator all), the other -etcd-* flags and the -bus-* flags;\n", rollout.DefaultEndpoint)
	fmt.Fprint(tw, "\"terminator hospital <command> -h\" lists them with their environment variables.\n")
	tw.Flush()
}

// Hospital runs `terminator hospital <list|show|replay|discard> ...` with
// args (the words after "hospital") and returns the exit code: 0, 1 on
// failure, 2 on bad usage.
func Hospital(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		hospitalUsage(stderr)
		return 2
	}
	op, args := args[0], args[1:]
	wantID := 1
	switch op {
	case "list":
		wantID = 0
	case "show", "replay", "discard":
	default:
		fmt.Fprintf(stderr, "terminator hospital: unknown command %q\n\n", op)
		hospitalUsage(stderr)
		return 2
	}
	c := &hospitalCmd{stdout: stdout, stderr: stderr}
	pos, err := c.parse(op, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if len(pos) != wantID {
		if wantID == 0 {
			fmt.Fprintf(stderr, "terminator hospital list: unexpected arguments %q\n", pos)
		} else {
			fmt.Fprintf(stderr, "terminator hospital %s: want one patient ID, e.g. notifications@visits:3:17\n", op)
		}
		return 2
	}
	if err := c.join(ctx); err != nil {
		fmt.Fprintf(stderr, "terminator hospital %s: %v\n", op, err)
		return 1
	}
	defer c.close()
	if op == "list" {
		err = c.list(ctx)
	} else {
		err = c.act(ctx, op, pos[0])
	}
	if err != nil {
		fmt.Fprintf(stderr, "terminator hospital %s: %v\n", op, err)
		return 1
	}
	return 0
}

// parse reads the flags from the environment and args, flags and
// positional arguments in any order (operators write the flags last, and
// the flag package stops at the first positional argument).
func (c *hospitalCmd) parse(op string, args []string) ([]string, error) {
	fs := flag.NewFlagSet("hospital "+op, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	c.etcd.Endpoints = []string{rollout.DefaultEndpoint}
	c.etcd.RegisterFlags(fs)
	fs.Lookup("etcd-endpoints").Usage = "comma-separated etcd client URLs"
	c.bus.Listen = "tcp://127.0.0.1:0"
	fs.StringVar(&c.bus.Listen, "bus-listen", c.bus.Listen, "bus address this command listens on for its answers")
	fs.StringVar(&c.bus.Advertise, "bus-advertise", "", "bus address the services answer to, when listening on 0.0.0.0")
	fs.StringVar(&c.bus.CA, "bus-ca", "", "bus TLS: CA file that signs every bus member's certificate (with -bus-cert and -bus-key)")
	fs.StringVar(&c.bus.Cert, "bus-cert", "", "bus TLS: this command's certificate")
	fs.StringVar(&c.bus.Key, "bus-key", "", "bus TLS: its key")
	fs.StringVar(&c.service, "service", "", "only this service's hospital (default: every service that subscribes)")
	fs.BoolVar(&c.json, "json", false, "print the services' answers as JSON")
	fs.StringVar(&c.operator, "operator", os.Getenv("USER"), "who asks, recorded in the patient's history")
	if op == "list" {
		fs.BoolVar(&c.open, "open", false, "only the patients still retrying or parked")
	}
	if op == "replay" || op == "discard" {
		// Past the service's own bound on the route (30s), it answers
		// "asked, not done yet" (202); a shorter wait ends with a show.
		fs.DurationVar(&c.wait, "wait", 35*time.Second, "how long to wait for the group's reader to carry it out")
	}
	env := CommandEnvName("hospital")
	fs.VisitAll(func(f *flag.Flag) { f.Usage += " (env " + env(f.Name) + ")" })
	fs.Usage = func() {
		id := " ID"
		if op == "list" {
			id = ""
		}
		fmt.Fprintf(fs.Output(), "usage: terminator hospital %s%s [flags]\n", op, id)
		fs.PrintDefaults()
	}
	flags, pos := rollout.SplitArgs(fs, args)
	fs.SetOutput(io.Discard) // ParseEnv's errors say what a value should be; flag's do not
	err := ParseEnv(fs, flags, env)
	fs.SetOutput(c.stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(c.stderr, err)
		}
		if !strings.HasPrefix(err.Error(), "environment ") {
			fs.Usage()
		}
		return nil, err
	}
	if (op == "replay" || op == "discard") && (c.wait < time.Second || c.wait > 10*time.Minute) {
		fmt.Fprintf(c.stderr, "-wait %v: want 1s to 10m0s\n", c.wait)
		return nil, errors.New("usage")
	}
	return pos, nil
}

// join connects to etcd, lists the registry and joins the bus as a node
// that serves nothing, fed the instances by a watcher as the front is.
func (c *hospitalCmd) join(ctx context.Context) error {
	cli, err := c.etcd.Dial(ctx) // within -etcd-dial-timeout, or an error naming the endpoints
	if err != nil {
		return err
	}
	// The node and watcher log their warnings (etcd unreachable, a peer
	// refused) where the operator sees them; the rest is noise here.
	log := slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	p := &Process{cfg: Config{Bus: c.bus}, log: log}
	p.cfg.Bus.Limits.SetDefaults()
	p.cfg.Front.FixedLimit = true // it serves nothing: no limit to adapt
	p.stops = append(p.stops, func() { cli.Close() })
	node, _, err := p.newNode("")
	if err != nil {
		p.Stop()
		return err
	}
	p.stops = append(p.stops, func() { node.Close() })
	wctx, cancel := context.WithTimeout(ctx, hospitalEtcdWait)
	defer cancel()
	w, err := p.watch(wctx, cli, node, true)
	if err != nil {
		p.Stop()
		return fmt.Errorf("list the registry at %s: %w", strings.Join(c.etcd.Endpoints, ","), err)
	}
	p.stops = append(p.stops, w.Close)
	c.node, c.w = node, w
	c.closeFn = p.Stop
	return nil
}

func (c *hospitalCmd) close() {
	if c.closeFn != nil {
		c.closeFn()
	}
}

// hospitals is the services whose registrations declare subscriptions
// (each keeps a hospital), sorted; only, when not empty, keeps that one.
func hospitals(regs []discovery.Registration, only string) []string {
	var out []string
	for _, r := range regs {
		if r.Events == nil || len(r.Events.Subscribes) == 0 || only != "" && r.Service != only || slices.Contains(out, r.Service) {
			continue
		}
		out = append(out, r.Service)
	}
	slices.Sort(out)
	return out
}

// services is the services to ask, or an error saying why there are none.
func (c *hospitalCmd) services() ([]string, error) {
	svcs := hospitals(c.w.Snapshot(), c.service)
	if len(svcs) == 0 {
		if c.service != "" {
			return nil, fmt.Errorf("no registered instance of %s declares a subscription: it has no hospital", c.service)
		}
		return nil, errors.New("no registered service declares a subscription: there is no hospital")
	}
	return svcs, nil
}

// errNotHere is a 404 from a service: it holds no such patient.
var errNotHere = errors.New("no such patient")

// call asks one instance of service's hospital, and returns the answer's
// status and body (a status other than 200 or 202 is an error).
func (c *hospitalCmd) call(ctx context.Context, service string, hr events.HospitalRequest, wait time.Duration) (int, []byte, error) {
	rctx, cancel := context.WithTimeout(ctx, hospitalPeerWait)
	err := c.node.WaitReady(rctx, service)
	cancel()
	if err != nil {
		return 0, nil, fmt.Errorf("%s: no instance reachable within %v: %w", service, hospitalPeerWait, err)
	}
	body, err := json.Marshal(hr)
	if err != nil {
		return 0, nil, err
	}
	req := wire.Request{Route: []byte(events.RouteHospital), Body: body}
	if c.operator != "" {
		req.Header.Add("X-Operator", c.operator)
	}
	cctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	resp, err := c.node.Do(cctx, service, &req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s: %s: %w", service, events.RouteHospital, err)
	}
	defer resp.Release()
	status, out := resp.Status, slices.Clone(resp.Body)
	switch {
	case status == 404 && hr.Op != "list":
		return status, out, errNotHere
	case status != 200 && status != 202:
		return status, out, fmt.Errorf("%s: %s answered %d: %s", service, events.RouteHospital, status, strings.TrimSpace(string(out)))
	}
	return status, out, nil
}

// hospitalRow is one patient of a list, with the service that keeps it.
type hospitalRow struct {
	service string
	events.Patient
}

// list prints the patients of every service asked; a service that does not
// answer is reported, and the others are printed all the same.
func (c *hospitalCmd) list(ctx context.Context) error {
	svcs, err := c.services()
	if err != nil {
		return err
	}
	raw := map[string]json.RawMessage{}
	var rows []hospitalRow
	var errs []error
	for _, s := range svcs {
		_, body, err := c.call(ctx, s, events.HospitalRequest{Op: "list"}, hospitalCallWait)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var ps []events.Patient
		if err := json.Unmarshal(body, &ps); err != nil {
			errs = append(errs, fmt.Errorf("%s: the patients: %w", s, err))
			continue
		}
		kept := ps[:0]
		for _, p := range ps {
			if !c.open || open(&p) {
				kept = append(kept, p)
				rows = append(rows, hospitalRow{s, p})
			}
		}
		if c.open {
			body, _ = json.Marshal(kept)
		}
		raw[s] = body
	}
	if c.json {
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(raw); err != nil {
			return err
		}
		return errors.Join(errs...)
	}
	slices.SortStableFunc(rows, func(a, b hospitalRow) int {
		if a.service != b.service {
			return strings.Compare(a.service, b.service)
		}
		return a.Parked.Compare(b.Parked)
	})
	if len(rows) == 0 {
		fmt.Fprintf(c.stdout, "no patients (asked %s)\n", strings.Join(svcs, ", "))
		return errors.Join(errs...)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tID\tSTATE\tHANDLER\tKEY\tATTEMPTS\tWAITING\tPARKED AT\tLAST ERROR")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", r.service, r.ID, r.State, r.Handler, truncate(r.Event.Key, 24),
			r.Attempts, waiting(&r.Patient), r.Parked.UTC().Format(time.DateTime), truncate(oneLine(r.LastError), 60))
	}
	tw.Flush()
	return errors.Join(errs...)
}

// act shows, replays or discards patient id: it finds the service that
// keeps it (those whose subscriptions match the group and publisher in the
// ID first: "<group>@<publisher>:<partition>:<seq>"), then asks it.
func (c *hospitalCmd) act(ctx context.Context, op, id string) error {
	svcs, err := c.services()
	if err != nil {
		return err
	}
	group, event, _ := strings.Cut(id, "@")
	from, _, _ := strings.Cut(event, ":")
	matches := func(s string) bool {
		for _, r := range c.w.Snapshot() {
			if r.Service == s && r.Events != nil && slices.ContainsFunc(r.Events.Subscribes, func(sub events.Subscription) bool {
				return sub.Group == group && sub.From == from
			}) {
				return true
			}
		}
		return false
	}
	slices.SortStableFunc(svcs, func(a, b string) int {
		ma, mb := matches(a), matches(b)
		switch {
		case ma == mb:
			return 0
		case ma:
			return -1
		}
		return 1
	})
	var errs []error
	for _, s := range svcs {
		_, body, err := c.call(ctx, s, events.HospitalRequest{Op: "show", ID: id}, hospitalCallWait)
		if errors.Is(err, errNotHere) {
			continue
		}
		if err != nil {
			// It may be there: say so rather than "no such patient".
			errs = append(errs, err)
			continue
		}
		var before events.Patient
		if err := json.Unmarshal(body, &before); err != nil {
			return fmt.Errorf("%s: patient %s: %w", s, id, err)
		}
		if op == "show" {
			return c.print(s, body, &before)
		}
		return c.treat(ctx, s, op, &before)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("patient %s not found in the services that answered (%w)", id, err)
	}
	return fmt.Errorf("no patient %s in %s", id, strings.Join(svcs, ", "))
}

// treat asks service to replay or discard the patient before was, and
// prints the outcome: done (or, for a patient already done with, the
// no-op the service recorded), or not done yet (an error: the reader has
// not carried it out within the wait).
func (c *hospitalCmd) treat(ctx context.Context, service, op string, before *events.Patient) error {
	status, body, err := c.call(ctx, service, events.HospitalRequest{Op: op, ID: before.ID}, c.wait)
	if errors.Is(err, nanobus.ErrDeadline) || errors.Is(err, context.DeadlineExceeded) {
		// The service answers once its reader has done it, or at its own
		// deadline; a shorter wait than that hears neither.
		status, body, err = c.call(ctx, service, events.HospitalRequest{Op: "show", ID: before.ID}, hospitalCallWait)
		if err == nil {
			status = 202
		}
	}
	if err != nil {
		return err
	}
	var p events.Patient
	if err := json.Unmarshal(body, &p); err != nil {
		return fmt.Errorf("%s: patient %s: %w", service, before.ID, err)
	}
	if c.json {
		fmt.Fprintf(c.stdout, "%s\n", body)
	}
	switch {
	case !open(before):
		if !c.json {
			fmt.Fprintf(c.stdout, "%s: nothing to do: the event was %s already (the %s is recorded in its history)\n", p.ID, before.State, op)
		}
		return nil
	case status == 202 || p.Request != "":
		if !c.json {
			fmt.Fprintf(c.stdout, "%s: %s asked, not done yet: the group's reader carries it out when it next reads (terminator hospital show %s)\n", p.ID, op, p.ID)
		}
		return fmt.Errorf("%s of %s: not done within %v", op, p.ID, c.wait)
	case p.State == events.StateReplayed || p.State == events.StateDiscarded:
		if !c.json {
			fmt.Fprintf(c.stdout, "%s: %s", p.ID, p.State)
			if op == "replay" {
				fmt.Fprint(c.stdout, ": the handler applied it")
			}
			if before.Waiting > 0 {
				fmt.Fprintf(c.stdout, "; the %d events of key %s that waited behind it go now", before.Waiting, p.Event.Key)
			}
			fmt.Fprintln(c.stdout)
		}
		return nil
	}
	if !c.json {
		fmt.Fprintf(c.stdout, "%s: still %s: the handler failed again: %s\n", p.ID, p.State, p.LastError)
	}
	return fmt.Errorf("%s of %s: the handler failed: %s", op, p.ID, p.LastError)
}

// print shows one patient, readable, or its JSON.
func (c *hospitalCmd) print(service string, raw []byte, p *events.Patient) error {
	if c.json {
		_, err := fmt.Fprintf(c.stdout, "%s\n", raw)
		return err
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	state := p.State
	switch {
	case p.Request != "":
		state += " (" + p.Request + " asked, not done yet)"
	case p.State == events.StateRetrying:
		state += fmt.Sprintf(" (next retry %s)", p.NextRetry.UTC().Format(time.DateTime))
	case p.State == events.StateParked:
		state += " (retries exhausted: waits for an operator)"
	}
	fmt.Fprintf(tw, "patient\t%s\n", p.ID)
	fmt.Fprintf(tw, "service\t%s\n", service)
	fmt.Fprintf(tw, "handler\t%s\n", p.Handler)
	fmt.Fprintf(tw, "state\t%s\n", state)
	fmt.Fprintf(tw, "reason\t%s\n", p.Reason)
	fmt.Fprintf(tw, "event\t%s %s, key %s, published %s\n", p.Event.ID, p.Event.Topic, p.Event.Key, p.Event.Time.UTC().Format(time.RFC3339Nano))
	if p.Event.Correlation != "" || p.Event.Causation != "" {
		fmt.Fprintf(tw, "caused by\t%s (correlation %s)\n", p.Event.Causation, p.Event.Correlation)
	}
	if len(p.Event.Body) > 0 {
		fmt.Fprintf(tw, "body\t%s\n", truncate(oneLine(string(p.Event.Body)), 200))
	}
	fmt.Fprintf(tw, "attempts\t%d\n", p.Attempts)
	if open(p) {
		fmt.Fprintf(tw, "waiting\t%d later events of its key\n", p.Waiting)
	}
	fmt.Fprintf(tw, "parked at\t%s\n", p.Parked.UTC().Format(time.RFC3339Nano))
	fmt.Fprintf(tw, "last error\t%s\n", p.LastError)
	tw.Flush()
	fmt.Fprintln(c.stdout, "history:")
	for _, n := range p.History {
		fmt.Fprintf(c.stdout, "  %s  %s\n", n.At.UTC().Format("2006-01-02 15:04:05.000"), n.What)
	}
	return nil
}

// open reports whether p still waits for a treatment (events' own test
// is unexported).
func open(p *events.Patient) bool {
	return p.State == events.StateRetrying || p.State == events.StateParked
}

// waiting is how many events wait behind p, for a table: "-" once p is
// done with. (The service counts them for open patients only; the count a
// closed one carries is the one stored when an operator last asked.)
func waiting(p *events.Patient) string {
	if !open(p) {
		return "-"
	}
	return strconv.Itoa(p.Waiting)
}

func truncate(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
