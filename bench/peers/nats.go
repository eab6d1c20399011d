package peers

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// ServeNATS runs d as a micro service on nc: a queue subscription on the
// role's route ("profiles.get", "notifications.counts") that
// answers the stored bytes, or a micro error whose code is the status.
func ServeNATS(nc *nats.Conn, d *Domain) (micro.Service, error) {
	route := routeOf[d.role]
	svc, err := micro.AddService(nc, micro.Config{
		Name:    d.role,
		Version: "1.0.0",
		Endpoint: &micro.EndpointConfig{
			Subject: route,
			Handler: micro.HandlerFunc(func(req micro.Request) {
				body, err := d.Answer(context.Background(), string(req.Data()))
				if err != nil {
					var se *StatusError
					if errors.As(err, &se) {
						_ = req.Error(strconv.Itoa(se.Status), se.Message, nil)
					} else {
						_ = req.Error("500", err.Error(), nil)
					}
					return
				}
				_ = req.Respond(body)
			}),
		},
	})
	if err != nil {
		return nil, fmt.Errorf("micro service %s: %w", d.role, err)
	}
	return svc, nil
}

// NATSCaller calls the domain services through nc with request/reply.
func NATSCaller(nc *nats.Conn) Caller {
	return func(ctx context.Context, role, id string) ([]byte, error) {
		msg, err := nc.RequestWithContext(ctx, routeOf[role], []byte(id))
		if err != nil {
			if errors.Is(err, nats.ErrTimeout) {
				return nil, context.DeadlineExceeded
			}
			return nil, fmt.Errorf("%s: %w", role, err)
		}
		if code := msg.Header.Get(micro.ErrorCodeHeader); code != "" {
			status, err := strconv.Atoi(code)
			if err != nil {
				status = 502
			}
			return nil, &StatusError{Status: status, Message: msg.Header.Get(micro.ErrorHeader)}
		}
		return msg.Data, nil
	}
}
