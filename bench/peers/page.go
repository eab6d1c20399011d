package peers

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/terminator-gw/terminator/services/tally"

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

	var visits, flirts []byte
	var visitsErr, flirtsErr error
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); visits, visitsErr = a.call(optional, RoleVisits, id) }()
	go func() { defer wg.Done(); flirts, flirtsErr = a.call(optional, RoleFlirts, id) }()
	profile, err := a.call(ctx, RoleProfiles, id)
	wg.Wait()
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
	rc.SetBody(ComposePage(profile, count(visits, visitsErr), count(flirts, flirtsErr)))
}

// count decodes a count answer; nil means it is missing.
func count(body []byte, err error) *int {
	if err != nil {
		return nil
	}
	c, err := tally.ParseCount(body) // as the terminator's web reads it
	if err != nil {
		return nil
	}
	return &c.Count
}

// ComposePage builds the page around the profile's JSON as its service sent
// it, byte for byte as the terminator's web does; a nil count is left out
// and named in "missing".
func ComposePage(profile []byte, visits, flirts *int) []byte {
	b := make([]byte, 0, len(profile)+80)
	b = append(append(b, `{"profile":`...), profile...)
	var missing []string
	if visits != nil {
		b = strconv.AppendInt(append(b, `,"visits":`...), int64(*visits), 10)
	} else {
		missing = append(missing, `"visits"`)
	}
	if flirts != nil {
		b = strconv.AppendInt(append(b, `,"flirts":`...), int64(*flirts), 10)
	} else {
		missing = append(missing, `"flirts"`)
	}
	if len(missing) > 0 {
		b = append(append(append(b, `,"missing":[`...), strings.Join(missing, ",")...), ']')
	}
	return append(b, '}')
}
