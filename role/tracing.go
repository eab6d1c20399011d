package role

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/time/rate"
)

// DefaultTraceRatio is the share of new traces recorded when
// OTEL_TRACES_SAMPLER is not set: the sampler is then parent-based, with
// this ratio for requests that come without a sampled parent.
const DefaultTraceRatio = 0.01

// attrRole is the resource attribute naming the role the process runs
// ("all", "front", "profiles"...).
const attrRole = attribute.Key("terminator.role")

// tracing is a process's span export, configured by the standard
// OpenTelemetry environment: one OTLP exporter, and one tracer provider per
// service the process runs (each with its own service.name), sharing it.
// A nil *tracing records nothing.
type tracing struct {
	exp      sdktrace.SpanExporter
	sampler  sdktrace.Sampler
	role     string
	version  string
	endpoint string // for the status: without credentials
	protocol string

	mu        sync.Mutex
	providers map[string]*sdktrace.TracerProvider
}

// newTracing sets up span export from the environment (getenv): nil, and
// no cost anywhere, unless OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set. The exporter itself reads the
// rest of the OTLP variables (headers, timeout, TLS, compression).
func newTracing(ctx context.Context, getenv func(string) string, role, version string, log *slog.Logger) (*tracing, error) {
	endpoint := cmp.Or(getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), getenv("OTEL_EXPORTER_OTLP_ENDPOINT"))
	if endpoint == "" || strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") {
		return nil, nil
	}
	switch e := getenv("OTEL_TRACES_EXPORTER"); e {
	case "", "otlp":
	case "none":
		return nil, nil
	default:
		return nil, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: want otlp or none", e)
	}
	sampler, err := samplerFrom(getenv)
	if err != nil {
		return nil, err
	}
	var exp sdktrace.SpanExporter
	proto := cmp.Or(getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"), getenv("OTEL_EXPORTER_OTLP_PROTOCOL"), "http/protobuf")
	switch proto {
	case "http/protobuf":
		exp, err = otlptracehttp.New(ctx)
	case "grpc":
		exp, err = otlptracegrpc.New(ctx)
	default:
		return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL=%q: want http/protobuf or grpc", proto)
	}
	if err != nil {
		return nil, fmt.Errorf("OTLP trace exporter for %s: %w", endpoint, err)
	}
	// The SDK reports failed exports through the global error handler: to
	// the process's log, at a bounded rate (a collector that is down
	// fails every batch).
	every := &rate.Sometimes{Interval: 10 * time.Second}
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		every.Do(func() { log.Warn("trace export failing", "endpoint", endpoint, "err", err) })
	}))
	log.Info("exporting traces over OTLP", "endpoint", endpoint, "sampler", sampler.Description())
	if u, err := url.Parse(endpoint); err == nil && u.User != nil {
		u.User = nil
		endpoint = u.String()
	}
	return &tracing{exp: exp, sampler: sampler, role: role, version: version, endpoint: endpoint, protocol: proto,
		providers: map[string]*sdktrace.TracerProvider{}}, nil
}

// provider is the tracer provider of service's spans, nil when t is: a
// nil interface, which the bus and the front read as "no spans".
func (t *tracing) provider(service string) trace.TracerProvider {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if tp := t.providers[service]; tp != nil {
		return tp
	}
	// Later detectors win: the environment's OTEL_SERVICE_NAME and
	// OTEL_RESOURCE_ATTRIBUTES over what the process says of itself.
	res, err := resource.New(context.Background(),
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithAttributes(semconv.ServiceName(service), semconv.ServiceVersion(t.version),
			semconv.ServiceNamespace("terminator"), attrRole.String(t.role)),
		resource.WithFromEnv(),
	)
	if err != nil && res == nil {
		res = resource.NewSchemaless(semconv.ServiceName(service), semconv.ServiceVersion(t.version), attrRole.String(t.role))
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(sharedExporter{t.exp}), sdktrace.WithResource(res),
		sdktrace.WithSampler(t.sampler))
	t.providers[service] = tp
	return tp
}

// shutdown ends every provider, which exports the spans they still hold,
// then the exporter: after the parts that make spans have stopped.
func (t *tracing) shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var errs []error
	for name, tp := range t.providers {
		if err := tp.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("spans of %s: %w", name, err))
		}
	}
	if err := t.exp.Shutdown(ctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// sharedExporter is the process's exporter as one provider sees it: a
// provider's shutdown leaves it open for the others (tracing.shutdown
// closes it last).
type sharedExporter struct{ sdktrace.SpanExporter }

func (sharedExporter) Shutdown(context.Context) error { return nil }

// samplerFrom reads OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG as
// the specification names them. Unset, the sampler follows the parent's
// decision (a caller's traceparent, or the span that made the call) and
// records DefaultTraceRatio of new traces (or OTEL_TRACES_SAMPLER_ARG's
// share).
func samplerFrom(getenv func(string) string) (sdktrace.Sampler, error) {
	name, arg := getenv("OTEL_TRACES_SAMPLER"), getenv("OTEL_TRACES_SAMPLER_ARG")
	ratio := func(def float64) (float64, error) {
		if arg == "" {
			return def, nil
		}
		r, err := strconv.ParseFloat(arg, 64)
		if err != nil || r < 0 || r > 1 {
			return 0, fmt.Errorf("OTEL_TRACES_SAMPLER_ARG=%q: want a share of traces from 0 to 1, e.g. 0.01", arg)
		}
		return r, nil
	}
	switch name {
	case "":
		r, err := ratio(DefaultTraceRatio)
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(r)), err
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case "traceidratio":
		r, err := ratio(1)
		return sdktrace.TraceIDRatioBased(r), err
	case "parentbased_traceidratio":
		r, err := ratio(1)
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(r)), err
	}
	return nil, fmt.Errorf("OTEL_TRACES_SAMPLER=%q: want always_on, always_off, traceidratio, "+
		"parentbased_always_on, parentbased_always_off or parentbased_traceidratio", name)
}

// startTracing sets up span export from the environment; it stops (the
// spans still held exported) after every other part of the process.
func (p *Process) startTracing(ctx context.Context, role string) error {
	t, err := newTracing(ctx, os.Getenv, role, p.cfg.Version, p.log)
	if err != nil {
		return fmt.Errorf("traces: %w", err)
	}
	if t == nil {
		return nil
	}
	p.trace = t
	p.admin.Section(Section{Name: "traces", Status: func() any { return t.status() }, Page: tracesPage})
	p.stops = append(p.stops, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := t.shutdown(sctx); err != nil {
			p.log.Warn("exporting the last spans failed", "err", err)
		}
	})
	return nil
}

// tracesStatus is the traces section of the status: where spans go, how
// they are sampled, and the services that record them.
type tracesStatus struct {
	Endpoint string   `json:"endpoint"`
	Protocol string   `json:"protocol"`
	Sampler  string   `json:"sampler"`
	Services []string `json:"services"`
}

func (t *tracing) status() tracesStatus {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := tracesStatus{Endpoint: t.endpoint, Protocol: t.protocol, Sampler: t.sampler.Description()}
	for name := range t.providers {
		st.Services = append(st.Services, name)
	}
	slices.Sort(st.Services)
	return st
}

var tracesPage = template.Must(template.New("traces").Parse(
	`<p>spans of {{range $i, $s := .Services}}{{if $i}}, {{end}}{{$s}}{{end}} go over OTLP ({{.Protocol}}) to {{.Endpoint}}; sampler {{.Sampler}}</p>`))
