package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof" // the profile of the peak, on the control address
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/nanobus/events"
	_ "github.com/terminator-gw/terminator/nanobus/transport" // the bus's tcp transport
	"github.com/terminator-gw/terminator/services/store"
	"github.com/terminator-gw/terminator/wire"
)

// The names the roles use on the bus and in JetStream.
const (
	pubService = "evpub"
	subService = "evsub"
	topic      = "bench.tick"
	group      = "bench"
	jsStream   = "BENCH"
	jsSubject  = "bench.tick"
	jsDurable  = "bench"
)

// roleFlags are what every role process takes.
type roleFlags struct {
	ctl     string        // control address, 127.0.0.1:port
	store   string        // data directory or postgres:// URL (terminator roles)
	peer    string        // the publisher's bus address (terminator subscriber)
	natsURL string        // (JetStream roles)
	life    time.Duration // the process exits by itself after this
	keys    int
}

func parseRole(name string, args []string) roleFlags {
	var f roleFlags
	fs := flag.NewFlagSet(name, flag.ExitOnError)
	fs.StringVar(&f.ctl, "ctl", "", "control address (127.0.0.1:port)")
	fs.StringVar(&f.store, "store", "", "store: a data directory or a postgres:// URL")
	fs.StringVar(&f.peer, "peer", "", "the publisher's bus address (tcp://127.0.0.1:port)")
	fs.StringVar(&f.natsURL, "nats", "", "nats-server URL")
	fs.DurationVar(&f.life, "life", 15*time.Minute, "exit after this long whatever happens")
	fs.IntVar(&f.keys, "keys", 64, "distinct event keys, spread over the partitions")
	_ = fs.Parse(args)
	return f
}

// role is a process of the system under test: it serves its control
// routes on f.ctl until SIGTERM, or its life ends.
func role(name string, args []string) error {
	f := parseRole(name, args)
	if host, _, err := net.SplitHostPort(f.ctl); err != nil || host != "127.0.0.1" {
		return fmt.Errorf("-ctl %q: want 127.0.0.1:port", f.ctl)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, f.life)
	defer cancel()
	mux := http.DefaultServeMux // net/http/pprof's routes are there
	var closeRole func()
	var err error
	switch name {
	case "pub":
		closeRole, err = servePub(ctx, f, mux)
	case "sub":
		closeRole, err = serveSub(ctx, f, mux)
	case "js-pub":
		closeRole, err = serveJSPub(ctx, f, mux)
	case "js-sub":
		closeRole, err = serveJSSub(ctx, f, mux)
	default:
		return fmt.Errorf("unknown role %q", name)
	}
	if err != nil {
		return err
	}
	defer closeRole()
	srv := &http.Server{Addr: f.ctl, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	ln, err := net.Listen("tcp", f.ctl)
	if err != nil {
		return err
	}
	go func() {
		<-ctx.Done()
		sctx, c := context.WithTimeout(context.Background(), 2*time.Second)
		defer c()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// reply writes v as JSON.
func reply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// publisherRoutes are the control routes of a publisher: /run starts a
// load (conc, rate; rate 0 is a closed loop), /stop ends it, /open and
// /close delimit the measured window, /info says how far it got.
func publisherRoutes(mux *http.ServeMux, d *driver, info func() map[string]any) {
	var c counter
	mux.HandleFunc("POST /run", func(w http.ResponseWriter, r *http.Request) {
		conc, _ := strconv.Atoi(r.FormValue("conc"))
		rate, _ := strconv.ParseFloat(r.FormValue("rate"), 64)
		d.start(max(conc, 1), rate)
		reply(w, "running")
	})
	mux.HandleFunc("POST /stop", func(w http.ResponseWriter, r *http.Request) {
		d.stop()
		reply(w, "stopped")
	})
	mux.HandleFunc("POST /open", func(w http.ResponseWriter, r *http.Request) { c.open(d); reply(w, "open") })
	mux.HandleFunc("POST /close", func(w http.ResponseWriter, r *http.Request) { reply(w, c.close(d)) })
	mux.HandleFunc("GET /info", func(w http.ResponseWriter, r *http.Request) {
		m := info()
		m["published"] = d.published.Load()
		m["failed"] = d.failed.Load()
		reply(w, m)
	})
}

// subscriberRoutes are the control routes of a subscriber.
func subscriberRoutes(mux *http.ServeMux, rec *recorder, info func() map[string]any) {
	mux.HandleFunc("POST /open", func(w http.ResponseWriter, r *http.Request) { rec.open(); reply(w, "open") })
	mux.HandleFunc("POST /close", func(w http.ResponseWriter, r *http.Request) { reply(w, rec.close()) })
	mux.HandleFunc("GET /info", func(w http.ResponseWriter, r *http.Request) {
		m := info()
		m["handled"] = rec.total.Load()
		m["bad"] = rec.bad.Load()
		reply(w, m)
	})
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// servePub is the terminator publisher: a bus node of service evpub with
// an events.Bus over its own store, each publish one transaction.
func servePub(ctx context.Context, f roleFlags, mux *http.ServeMux) (func(), error) {
	st, err := store.Open(ctx, f.store, pubService)
	if err != nil {
		return nil, err
	}
	node, err := nanobus.NewNode(nanobus.Config{Service: pubService, Logger: quiet})
	if err != nil {
		st.Close()
		return nil, err
	}
	bus, _ := events.New(node, events.Config{Store: store.EventLog(st), Logger: slog.Default()})
	if err := bus.Declare(topic, "bench"); err != nil {
		return nil, err
	}
	d := &driver{keys: f.keys, publish: func(ctx context.Context, key string, body []byte) error {
		return bus.Update(ctx, func(tx events.Tx) error { return bus.Publish(ctx, tx, topic, key, body) })
	}}
	publisherRoutes(mux, d, func() map[string]any { return map[string]any{"bus": node.Addr(), "ready": true} })
	return func() { d.stop(); bus.Close(); node.Close(); st.Close() }, nil
}

// serveSub is the terminator subscriber: a bus node of service evsub
// whose group reads the publisher's topic into its own store; the handler
// writes nothing but its position (committed with it by events) and
// records the latency.
func serveSub(ctx context.Context, f roleFlags, mux *http.ServeMux) (func(), error) {
	if f.peer == "" {
		return nil, errors.New("sub: -peer (the publisher's bus address) is required")
	}
	st, err := store.Open(ctx, f.store, subService)
	if err != nil {
		return nil, err
	}
	node, err := nanobus.NewNode(nanobus.Config{Service: subService, Logger: quiet})
	if err != nil {
		st.Close()
		return nil, err
	}
	bus, _ := events.New(node, events.Config{Store: store.EventLog(st), Logger: slog.Default()})
	rec := newRecorder()
	err = bus.Subscribe(topic, group, func(ctx context.Context, tx events.Tx, e *events.Event) error {
		rec.record(e.Body)
		return nil
	}, events.From(pubService))
	if err != nil {
		return nil, err
	}
	node.AddPeer(nanobus.Peer{Service: pubService, Addr: f.peer, Protocol: wire.ProtocolVersion})
	bus.Start()
	subscriberRoutes(mux, rec, func() map[string]any {
		s := bus.Stats()
		reading := len(s.Subscriptions) > 0 && s.Subscriptions[0].Reading
		return map[string]any{"ready": reading, "stats": s}
	})
	return func() { bus.Close(); node.Close(); st.Close() }, nil
}

// jsConnect connects to the nats-server and returns its JetStream, with
// the stream made (file storage, one replica).
func jsConnect(ctx context.Context, f roleFlags, name string) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := nats.Connect(f.natsURL, nats.Name(name), nats.Timeout(5*time.Second))
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := js.CreateOrUpdateStream(sctx, jetstream.StreamConfig{Name: jsStream, Subjects: []string{jsSubject},
		Storage: jetstream.FileStorage, Replicas: 1}); err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("stream %s: %w", jsStream, err)
	}
	return nc, js, nil
}

// serveJSPub publishes to the stream and waits for each ack (stored, and
// synced as the server's sync_interval says).
func serveJSPub(ctx context.Context, f roleFlags, mux *http.ServeMux) (func(), error) {
	nc, js, err := jsConnect(ctx, f, "evbench-pub")
	if err != nil {
		return nil, err
	}
	d := &driver{keys: f.keys, publish: func(ctx context.Context, key string, body []byte) error {
		_, err := js.Publish(ctx, jsSubject, body)
		return err
	}}
	publisherRoutes(mux, d, func() map[string]any { return map[string]any{"ready": nc.IsConnected()} })
	return func() { d.stop(); nc.Close() }, nil
}

// serveJSSub reads the stream with a durable pull consumer, acking each
// message explicitly after it is handled.
func serveJSSub(ctx context.Context, f roleFlags, mux *http.ServeMux) (func(), error) {
	nc, js, err := jsConnect(ctx, f, "evbench-sub")
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cons, err := js.CreateOrUpdateConsumer(cctx, jsStream, jetstream.ConsumerConfig{Durable: jsDurable,
		AckPolicy: jetstream.AckExplicitPolicy, DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("consumer %s: %w", jsDurable, err)
	}
	rec := newRecorder()
	cc, err := cons.Consume(func(m jetstream.Msg) {
		rec.record(m.Data())
		_ = m.Ack()
	})
	if err != nil {
		nc.Close()
		return nil, err
	}
	subscriberRoutes(mux, rec, func() map[string]any { return map[string]any{"ready": nc.IsConnected()} })
	return func() { cc.Stop(); nc.Close() }, nil
}
