package terminator_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/nanobus/nanobustest"
	"github.com/terminator-gw/terminator/terminator"
)

// A traced front records a server span per request: named after the
// route it matched (or the method alone), with its status, an error for a
// 5xx; the service gets the traceparent of the front's call, in the
// client's trace when it sent one.
func TestFrontSpans(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })

	svc := nanobustest.NewNode(t, nanobus.Config{Service: "items", Version: "v3"})
	must(t, svc.Handle("GET /items/{id}", func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		return nanobus.Reply{Body: req.TraceParent}, nil
	}))
	must(t, svc.Handle("GET /fail", func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		return nanobus.Reply{}, errors.New("disk on fire")
	}))
	node := nanobustest.NewNode(t, nanobus.Config{TracerProvider: tp})
	nanobustest.Connect(t, node, svc)
	srv, err := terminator.New(terminator.Config{Listen: "127.0.0.1:0"}, node, quiet)
	if err != nil {
		t.Fatal(err)
	}
	srv.SetTracerProvider(tp)
	srv.SetRoutes(terminator.PublicRoutes(svc.Peer()))
	must(t, srv.Start())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Drain(ctx)
		srv.Close()
	})
	base := "http://" + srv.Addr()

	const clientTrace, clientSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	for i, c := range []struct {
		name, path, traceparent string
		status                  int
		span                    string // the span's name
		route                   string // http.route, "" for none
		failed                  bool
	}{
		{name: "route", path: "/items/7", status: 200, span: "GET /items/{id}", route: "/items/{id}"},
		{name: "client's trace", path: "/items/8", traceparent: "00-" + clientTrace + "-" + clientSpan + "-01", status: 200,
			span: "GET /items/{id}", route: "/items/{id}"},
		{name: "no route", path: "/nope", status: 404, span: "GET"},
		{name: "handler fails", path: "/fail", status: 500, span: "GET /fail", route: "/fail", failed: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			reqID := "span-" + strconv.Itoa(i)
			// A header that is not UTF-8 (obs-text) makes a valid attribute:
			// one invalid string would fail the export of a whole batch.
			h := map[string]string{"X-Request-Id": reqID, "User-Agent": "probe/1 \xff\xfe"}
			if c.traceparent != "" {
				h["Traceparent"] = c.traceparent
			}
			resp, body := get(t, base+c.path, h)
			if resp.StatusCode != c.status {
				t.Fatalf("GET %s: %d %s, want %d", c.path, resp.StatusCode, body, c.status)
			}
			var span sdktrace.ReadOnlySpan
			nanobustest.Eventually(t, "the front's span", func() bool {
				for _, s := range rec.Ended() {
					if s.SpanKind() == trace.SpanKindServer && attrOf(s, "http.request.header.x-request-id") == reqID {
						span = s
					}
				}
				return span != nil
			})
			if ua := attrOf(span, "user_agent.original"); !utf8.ValidString(ua) || !strings.HasPrefix(ua, "probe/1 ") {
				t.Errorf("user_agent.original %q: want the client's, valid UTF-8", ua)
			}
			if span.Name() != c.span {
				t.Errorf("span named %q, want %q", span.Name(), c.span)
			}
			if got := attrOf(span, "http.response.status_code"); got != strconv.Itoa(c.status) {
				t.Errorf("http.response.status_code %q, want %d", got, c.status)
			}
			if got := attrOf(span, "http.route"); got != c.route {
				t.Errorf("http.route %q, want %q", got, c.route)
			}
			if failed := span.Status().Code == codes.Error; failed != c.failed || (c.failed && attrOf(span, "error.type") != "500") {
				t.Errorf("span status %v, error.type %q; want an error: %v", span.Status(), attrOf(span, "error.type"), c.failed)
			}
			if c.status != 200 {
				return
			}
			if attrOf(span, "nanobus.service") != "items" || attrOf(span, "nanobus.version") != "v3" {
				t.Errorf("service %q, version %q, want items v3", attrOf(span, "nanobus.service"), attrOf(span, "nanobus.version"))
			}
			// The service was sent the front's call, in the span's trace.
			sc := span.SpanContext()
			if !strings.HasPrefix(body, "00-"+sc.TraceID().String()+"-") || strings.Contains(body, sc.SpanID().String()) {
				t.Errorf("the service got traceparent %q; want the call's, a child of span %v", body, sc)
			}
			if c.traceparent != "" && (sc.TraceID().String() != clientTrace || span.Parent().SpanID().String() != clientSpan) {
				t.Errorf("span %v with parent %v: want the child of the client's %s", sc, span.Parent(), c.traceparent)
			}
			if c.traceparent == "" && span.Parent().IsValid() {
				t.Errorf("span has a parent %v: want a root", span.Parent())
			}
		})
	}
}

// A request fasthttp refuses before any route (here: a head over the
// limit) is a span too, with its status.
func TestFrontSpanOfUnreadableRequest(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	node := nanobustest.NewNode(t, nanobus.Config{TracerProvider: tp})
	srv, err := terminator.New(terminator.Config{Listen: "127.0.0.1:0"}, node, quiet)
	if err != nil {
		t.Fatal(err)
	}
	srv.SetTracerProvider(tp)
	must(t, srv.Start())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Drain(ctx)
		srv.Close()
	})
	resp, _ := get(t, "http://"+srv.Addr()+"/items/1", map[string]string{"X-Big": strings.Repeat("a", 9000)})
	if resp.StatusCode != 431 {
		t.Fatalf("a 9 KB head: %d, want 431", resp.StatusCode)
	}
	var span sdktrace.ReadOnlySpan
	nanobustest.Eventually(t, "the span of the refused request", func() bool {
		for _, s := range rec.Ended() {
			span = s
		}
		return span != nil
	})
	if span.Name() != "HTTP" || attrOf(span, "http.response.status_code") != "431" ||
		attrOf(span, "http.request.header.x-request-id") != resp.Header.Get("X-Request-Id") {
		t.Errorf("span %q, status %s, request ID %q; want HTTP, 431, %q", span.Name(), attrOf(span, "http.response.status_code"),
			attrOf(span, "http.request.header.x-request-id"), resp.Header.Get("X-Request-Id"))
	}
}

func attrOf(s sdktrace.ReadOnlySpan, key string) string {
	for _, a := range s.Attributes() {
		if string(a.Key) == key {
			if a.Value.Type() == attribute.STRINGSLICE { // a header's values
				return strings.Join(a.Value.AsStringSlice(), ",")
			}
			return a.Value.Emit()
		}
	}
	return ""
}
