package peers

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/terminator-gw/terminator/services/notifications"

	"github.com/valyala/fasthttp"

	"github.com/terminator-gw/terminator/services/store"
)

// DefaultTimeout is the page's deadline, the terminator's default.
const DefaultTimeout = 3 * time.Second

// optionalShare is the part of the deadline the counts may take, as in the
// terminator's web: the rest covers the reply.
const optionalShare = 0.8

// Caller makes one call to a domain role's route for profile id and returns
// the answer's body (a copy the caller keeps), or a *StatusError for a
// refusal, or another error for a failed call.
type Caller func(ctx context.Context, role, id string) ([]byte, error)

// Aggregator serves the page, calling the domain services through call.
type Aggregator struct {
	call    Caller
	timeout time.Duration
}

// NewAggregator returns an aggregator whose page has the given deadline
// (DefaultTimeout when 0).
func NewAggregator(call Caller, timeout time.Duration) *Aggregator {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &Aggregator{call: call, timeout: timeout}
}

// Handle is the aggregator's fasthttp handler: GET /profiles/{id}.
func (a *Aggregator) Handle(rc *fasthttp.RequestCtx) {
	id, ok := strings.CutPrefix(string(rc.Path()), "/profiles/")
	if !ok || strings.Contains(id, "/") || !rc.IsGet() {
		rc.Error("no route for "+string(rc.Method())+" "+string(rc.Path()), fasthttp.StatusNotFound)
		return
	}
	if !store.ValidID(id) {
		rc.Error("bad profile id "+strconv.Quote(id), fasthttp.StatusBadRequest)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), a.timeout)
	defer cancel()
	optional, cancelOptional := context.WithTimeout(ctx, time.Duration(float64(a.timeout)*optionalShare))
	defer cancelOptional()

	var counts []byte
	var countsErr error
	done := make(chan struct{})
	go func() { defer close(done); counts, countsErr = a.call(optional, RoleCounts, id) }()
	profile, err := a.call(ctx, RoleProfiles, id)
	<-done
	if err != nil {
		var se *StatusError
		switch {
		case errors.As(err, &se):
			rc.Error(se.Message, se.Status)
		case errors.Is(err, context.DeadlineExceeded):
			rc.Error("profiles did not answer in time", fasthttp.StatusGatewayTimeout)
		default:
			rc.Error("profiles: "+err.Error(), fasthttp.StatusBadGateway)
		}
		return
	}
	rc.SetContentType("application/json")
	rc.SetBody(ComposePage(profile, parseCounts(counts, countsErr)))
}

// parseCounts decodes a counts answer; nil means they are missing.
func parseCounts(body []byte, err error) *notifications.Counts {
	if err != nil {
		return nil
	}
	c, err := notifications.ParseCounts(body) // as the terminator's web reads them
	if err != nil {
		return nil
	}
	return &c
}

// ComposePage builds the page around the profile's JSON as its service sent
// it, byte for byte as the terminator's web does; nil counts are left out
// and named in "missing".
func ComposePage(profile []byte, c *notifications.Counts) []byte {
	b := make([]byte, 0, len(profile)+80)
	b = append(append(b, `{"profile":`...), profile...)
	if c == nil {
		b = append(b, `,"missing":["visits","flirts"]`...)
	} else {
		b = strconv.AppendInt(append(b, `,"visits":`...), int64(c.Visits), 10)
		b = strconv.AppendInt(append(b, `,"flirts":`...), int64(c.Flirts), 10)
	}
	return append(b, '}')
}
