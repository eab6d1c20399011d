package role

import (
	"compress/gzip"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// otlpReceiver is an OTLP/HTTP trace receiver on loopback: what a
// collector is to the processes, keeping every span it is sent.
type otlpReceiver struct {
	addr string
	mu   sync.Mutex
	got  []gotSpan
}

// gotSpan is a received span, flattened: IDs in hex, attributes and its
// resource's attributes as strings.
type gotSpan struct {
	trace, id, parent string
	name              string
	kind              tracepb.Span_SpanKind
	status            tracepb.Status_StatusCode
	message           string
	attrs, res        map[string]string
}

func (s gotSpan) String() string {
	return fmt.Sprintf("%s %s %q (%s, parent %s, status %v)", s.res["service.name"], s.kind, s.name, s.id, s.parent, s.status)
}

func startReceiver(t *testing.T) *otlpReceiver {
	t.Helper()
	r := &otlpReceiver{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(r.serve), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return r
}

func (r *otlpReceiver) serve(w http.ResponseWriter, req *http.Request) {
	if req.URL.Path != "/v1/traces" || req.Method != "POST" {
		http.Error(w, "not an OTLP trace export", http.StatusNotFound)
		return
	}
	var body io.Reader = io.LimitReader(req.Body, 16<<20)
	if req.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	b, err := io.ReadAll(body)
	var export coltracepb.ExportTraceServiceRequest
	if err == nil {
		err = proto.Unmarshal(b, &export)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.record(&export)
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(out)
}

// record keeps the spans of an export.
func (r *otlpReceiver) record(export *coltracepb.ExportTraceServiceRequest) {
	r.mu.Lock()
	for _, rs := range export.ResourceSpans {
		res := attrMap(rs.GetResource().GetAttributes())
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				r.got = append(r.got, gotSpan{trace: hex.EncodeToString(s.TraceId), id: hex.EncodeToString(s.SpanId),
					parent: hex.EncodeToString(s.ParentSpanId), name: s.Name, kind: s.Kind,
					status: s.GetStatus().GetCode(), message: s.GetStatus().GetMessage(), attrs: attrMap(s.Attributes), res: res})
			}
		}
	}
	r.mu.Unlock()
}

// grpcReceiver is otlpReceiver's OTLP/gRPC trace service.
type grpcReceiver struct {
	coltracepb.UnimplementedTraceServiceServer
	r *otlpReceiver
}

func (g grpcReceiver) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	g.r.record(req)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// startGRPCReceiver is startReceiver over gRPC.
func startGRPCReceiver(t *testing.T) *otlpReceiver {
	t.Helper()
	r := &otlpReceiver{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, grpcReceiver{r: r})
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return r
}

func (r *otlpReceiver) all() []gotSpan {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]gotSpan(nil), r.got...)
}

func attrMap(kvs []*commonpb.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		m[kv.Key] = anyString(kv.Value)
	}
	return m
}

func anyString(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_IntValue:
		return fmt.Sprint(x.IntValue)
	case *commonpb.AnyValue_BoolValue:
		return fmt.Sprint(x.BoolValue)
	case *commonpb.AnyValue_DoubleValue:
		return fmt.Sprint(x.DoubleValue)
	case *commonpb.AnyValue_ArrayValue:
		var parts []string
		for _, e := range x.ArrayValue.Values {
			parts = append(parts, anyString(e))
		}
		return strings.Join(parts, ",")
	}
	return ""
}

// traceOf is every span of the trace whose front span served the request
// with ID reqID.
func (r *otlpReceiver) traceOf(reqID string) []gotSpan {
	r.mu.Lock()
	defer r.mu.Unlock()
	tid := ""
	for _, s := range r.got {
		if s.kind == tracepb.Span_SPAN_KIND_SERVER && s.attrs["http.request.header.x-request-id"] == reqID {
			tid = s.trace
		}
	}
	var out []gotSpan
	for _, s := range r.got {
		if tid != "" && s.trace == tid {
			out = append(out, s)
		}
	}
	return out
}

// one finds the one span of the trace that service recorded, of kind, named name.
func one(t *testing.T, spans []gotSpan, service string, kind tracepb.Span_SpanKind, name string) gotSpan {
	t.Helper()
	var found []gotSpan
	for _, s := range spans {
		if s.res["service.name"] == service && s.kind == kind && s.name == name {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d %s spans of %s named %q, want 1; the trace: %v", len(found), kind, service, name, spans)
	}
	return found[0]
}

func childOf(t *testing.T, child, parent gotSpan) {
	t.Helper()
	if child.parent != parent.id || child.trace != parent.trace {
		t.Errorf("%v: want it the child of %v", child, parent)
	}
}

func wantAttrs(t *testing.T, s gotSpan, attrs map[string]string, want ...string) {
	t.Helper()
	for i := 0; i < len(want); i += 2 {
		if got := attrs[want[i]]; got != want[i+1] {
			t.Errorf("%v: %s = %q, want %q", s, want[i], got, want[i+1])
		}
	}
}

// The page GET /profiles/{id}, through a front, web, profiles and
// notifications (each a process's role, on one etcd), exported over OTLP
// to a receiver: one trace per request, whose tree is the path of the
// request, hop by hop; the front's span is the root, or the child of the
// traceparent the client sent; a call that fails is marked so. Spans are
// sent only when the processes stop: what they still held is flushed.
func TestTracesOfAPage(t *testing.T) {
	recv := startReceiver(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+recv.addr)
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "")
	t.Setenv("OTEL_TRACES_EXPORTER", "")
	t.Setenv("OTEL_SERVICE_NAME", "")
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "")
	t.Setenv("OTEL_TRACES_SAMPLER", "")      // the default: parent-based ratio,
	t.Setenv("OTEL_TRACES_SAMPLER_ARG", "1") // here of every trace

	endpoints, _ := etcdFor(t)
	config := func() Config {
		cfg := testConfig(t, endpoints)
		cfg.Version = "v7"
		cfg.CalleeWait = 100 * time.Millisecond // web calls visits and flirts too: not run here
		return cfg
	}
	notifications := startRole(t, "notifications", config())
	profiles := startRole(t, "profiles", config())
	web := startRole(t, "web", config())
	cfg := config()
	cfg.Front.Listen = "127.0.0.1:0"
	front := startRole(t, "front", cfg)

	client := &http.Client{Timeout: 5 * time.Second}
	do := func(method, path, reqID, traceparent, body string) (int, string) {
		req, err := http.NewRequest(method, "http://"+front.FrontAddr()+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Request-Id", reqID)
		if traceparent != "" {
			req.Header.Set("Traceparent", traceparent)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	eventually(t, "PUT /profiles/ann through the front", func() bool {
		status, _ := do("PUT", "/profiles/ann", "put-ann", "", `{"name":"Ann","age":31,"city":"Lyon","bio":"hiker"}`)
		return status == 200
	})
	if status, body := do("GET", "/profiles/ann", "page-root", "", ""); status != 200 || !strings.Contains(body, `"visits":`) {
		t.Fatalf("GET /profiles/ann: %d %s", status, body)
	}
	const clientTrace, clientSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	if status, body := do("GET", "/profiles/ann", "page-child", "00-"+clientTrace+"-"+clientSpan+"-01", ""); status != 200 {
		t.Fatalf("GET /profiles/ann with a traceparent: %d %s", status, body)
	}
	// Without notifications, the page comes without its counts: web's
	// call to it fails.
	notifications.Stop()
	missing := ""
	for i := 0; missing == "" && i < 500; i++ {
		id := fmt.Sprintf("page-missing-%d", i)
		if status, body := do("GET", "/profiles/ann", id, "", ""); status == 200 && strings.Contains(body, `"missing"`) {
			missing = id
		}
	}
	if missing == "" {
		t.Fatal("the page never came without its counts once notifications stopped")
	}
	// The status says where spans go.
	if status, _, js := get(t, front.AdminAddr(), "/status.json", ""); status != 200 ||
		!strings.Contains(js, `"traces"`) || !strings.Contains(js, `"endpoint": "http://`+recv.addr+`"`) {
		t.Errorf("status.json: %d, without where traces go: %.1000s", status, js)
	}
	if _, _, page := get(t, front.AdminAddr(), "/status/", ""); !strings.Contains(page, "spans of terminator go over OTLP (http/protobuf) to http://"+recv.addr) {
		t.Errorf("status page does not say where traces go: %.2000s", page)
	}
	for _, p := range []*Process{front, web, profiles} {
		p.Stop() // each exports what it holds as it stops
	}

	var spans []gotSpan
	eventually(t, "the spans of the page", func() bool { spans = recv.traceOf("page-root"); return len(spans) >= 7 })
	if len(spans) != 7 {
		t.Errorf("%d spans in the page's trace, want 7: %v", len(spans), spans)
	}
	const page = "GET /profiles/{id}"
	serverKind, clientKind := tracepb.Span_SPAN_KIND_SERVER, tracepb.Span_SPAN_KIND_CLIENT
	frontSpan := one(t, spans, "terminator", serverKind, page)
	frontCall := one(t, spans, "terminator", clientKind, page)
	webSpan := one(t, spans, "web", serverKind, page)
	profilesCall := one(t, spans, "web", clientKind, "profiles.get")
	countsCall := one(t, spans, "web", clientKind, "notifications.counts")
	profilesSpan := one(t, spans, "profiles", serverKind, "profiles.get")
	countsSpan := one(t, spans, "notifications", serverKind, "notifications.counts")
	if frontSpan.parent != "" {
		t.Errorf("the front's span %v has a parent; want it the root", frontSpan)
	}
	childOf(t, frontCall, frontSpan)
	childOf(t, webSpan, frontCall)
	childOf(t, profilesCall, webSpan)
	childOf(t, countsCall, webSpan)
	childOf(t, profilesSpan, profilesCall)
	childOf(t, countsSpan, countsCall)
	wantAttrs(t, frontSpan, frontSpan.attrs, "http.request.method", "GET", "http.route", "/profiles/{id}",
		"url.path", "/profiles/ann", "http.response.status_code", "200", "nanobus.service", "web", "nanobus.version", "v7",
		"client.address", "127.0.0.1")
	wantAttrs(t, frontSpan, frontSpan.res, "service.name", "terminator", "service.version", "v7", "terminator.role", "front")
	wantAttrs(t, frontCall, frontCall.attrs, "rpc.system.name", "nanobus", "rpc.method", page, "nanobus.service", "web",
		"nanobus.version", "v7", "rpc.response.status_code", "200", "server.address", "127.0.0.1")
	wantAttrs(t, webSpan, webSpan.attrs, "rpc.response.status_code", "200", "nanobus.service", "web")
	wantAttrs(t, webSpan, webSpan.res, "service.version", "v7", "terminator.role", "web")
	wantAttrs(t, profilesCall, profilesCall.attrs, "nanobus.service", "profiles", "rpc.response.status_code", "200")
	for _, s := range spans {
		if s.status != tracepb.Status_STATUS_CODE_UNSET {
			t.Errorf("%v: status %v %q, want none (it went well)", s, s.status, s.message)
		}
	}

	// The client's traceparent is the front span's parent: one trace with
	// the client's, the same tree below it.
	spans = recv.traceOf("page-child")
	if len(spans) != 7 {
		t.Errorf("%d spans in the trace of the page asked with a traceparent, want 7: %v", len(spans), spans)
	}
	frontSpan = one(t, spans, "terminator", serverKind, page)
	if frontSpan.trace != clientTrace || frontSpan.parent != clientSpan {
		t.Errorf("front's span %v in trace %s: want the child of the client's %s in %s", frontSpan, frontSpan.trace, clientSpan, clientTrace)
	}
	childOf(t, one(t, spans, "web", serverKind, page), one(t, spans, "terminator", clientKind, page))

	// The call that failed is an error, named; the page around it is not.
	spans = recv.traceOf(missing)
	countsCall = one(t, spans, "web", clientKind, "notifications.counts")
	if countsCall.status != tracepb.Status_STATUS_CODE_ERROR || countsCall.attrs["error.type"] == "" || countsCall.message == "" {
		t.Errorf("the failed call to notifications: %v, error.type %q, message %q; want an error, named",
			countsCall, countsCall.attrs["error.type"], countsCall.message)
	}
	frontSpan = one(t, spans, "terminator", serverKind, page)
	if frontSpan.status == tracepb.Status_STATUS_CODE_ERROR || frontSpan.attrs["http.response.status_code"] != "200" {
		t.Errorf("the page without its counts: %v, %s; want a 200, no error", frontSpan, frontSpan.attrs["http.response.status_code"])
	}
}

// The environment decides: no endpoint, no tracing; a sampler, ratio or
// protocol out of what the specification names is refused, naming the
// variable.
func TestTracingFromEnvironment(t *testing.T) {
	for _, c := range []struct {
		name    string
		env     map[string]string
		on      bool
		sampler string // in the sampler's description
		err     string
	}{
		{name: "no endpoint", env: map[string]string{"OTEL_TRACES_SAMPLER": "always_on"}},
		{name: "default sampler", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"},
			on: true, sampler: "ParentBased{root:TraceIDRatioBased{0.01}"},
		{name: "traces endpoint, ratio", env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces",
			"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.5"}, on: true, sampler: "TraceIDRatioBased{0.5}"},
		{name: "grpc", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
			"OTEL_TRACES_SAMPLER": "always_on"}, on: true, sampler: "AlwaysOnSampler"},
		{name: "exporter none", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_TRACES_EXPORTER": "none"}},
		{name: "sdk disabled", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_SDK_DISABLED": "true"}},
		{name: "unknown sampler", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_TRACES_SAMPLER": "sometimes"},
			err: `OTEL_TRACES_SAMPLER="sometimes": want always_on`},
		{name: "ratio over 1", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_TRACES_SAMPLER_ARG": "2"},
			err: `OTEL_TRACES_SAMPLER_ARG="2": want a share of traces from 0 to 1`},
		{name: "ratio not a number", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
			"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1%"}, err: `OTEL_TRACES_SAMPLER_ARG="1%"`},
		{name: "http/json", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
			err: `OTEL_EXPORTER_OTLP_PROTOCOL="http/json": want http/protobuf or grpc`},
		{name: "other exporter", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_TRACES_EXPORTER": "zipkin"},
			err: `OTEL_TRACES_EXPORTER="zipkin": want otlp or none`},
	} {
		t.Run(c.name, func(t *testing.T) {
			tr, err := newTracing(context.Background(), func(k string) string { return c.env[k] }, "front", "v1", quiet)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err %v, want it to say %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (tr != nil) != c.on {
				t.Fatalf("tracing on: %v, want %v", tr != nil, c.on)
			}
			if tr == nil {
				if tr.provider("x") != nil {
					t.Error("no tracing, yet a provider")
				}
				return
			}
			defer tr.shutdown(context.Background())
			if d := tr.sampler.Description(); !strings.Contains(d, c.sampler) {
				t.Errorf("sampler %s, want %s", d, c.sampler)
			}
			if tr.provider("web") == nil || tr.provider("web") != tr.provider("web") {
				t.Error("a service's provider is not made once and kept")
			}
		})
	}
}

// Both OTLP protocols export, each service of a process under its own
// service.name with the process's role and version, what is held flushed
// on shutdown.
func TestTracesExportOverBothProtocols(t *testing.T) {
	for _, c := range []struct {
		protocol string
		start    func(*testing.T) *otlpReceiver
	}{
		{"http/protobuf", startReceiver},
		{"grpc", startGRPCReceiver},
	} {
		t.Run(c.protocol, func(t *testing.T) {
			recv := c.start(t)
			env := map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + recv.addr, "OTEL_EXPORTER_OTLP_PROTOCOL": c.protocol,
				"OTEL_TRACES_SAMPLER": "always_on", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "",
				"OTEL_SERVICE_NAME": "", "OTEL_RESOURCE_ATTRIBUTES": ""}
			for k, v := range env {
				t.Setenv(k, v) // the exporter reads the process's environment
			}
			tr, err := newTracing(context.Background(), os.Getenv, "all", "v9", quiet)
			if err != nil || tr == nil {
				t.Fatalf("tracing: %v, %v", tr, err)
			}
			for _, service := range []string{"web", "profiles"} {
				_, span := tr.provider(service).Tracer("test").Start(context.Background(), "work of "+service)
				span.End()
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := tr.shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			got := map[string]gotSpan{}
			for _, s := range recv.all() {
				got[s.name] = s
			}
			for _, service := range []string{"web", "profiles"} {
				s, ok := got["work of "+service]
				if !ok {
					t.Errorf("no span of %s received; got %v", service, recv.all())
					continue
				}
				wantAttrs(t, s, s.res, "service.name", service, "service.version", "v9", "terminator.role", "all",
					"service.namespace", "terminator")
			}
		})
	}
}
