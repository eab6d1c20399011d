package discovery

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// List reads the registrations under prefix (default DefaultPrefix) once,
// sorted by service then node: for commands that want a look at the fleet
// (terminator graph) and have no use for a Watcher's following.
//
// A value that does not parse as a registration is left out, and named in
// the error returned with the others: one bad key should not hide the
// fleet from an operator. Without the registrations (etcd did not answer)
// the error is all there is.
func List(ctx context.Context, cli *clientv3.Client, prefix string) ([]Registration, error) {
	key := servicesPrefix(prefix)
	resp, err := cli.Get(ctx, key, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", key, err)
	}
	out := make([]Registration, 0, len(resp.Kvs))
	var bad []error
	for _, kv := range resp.Kvs {
		var r Registration
		err := json.Unmarshal(kv.Value, &r)
		if err == nil {
			err = r.validate()
		}
		if err != nil {
			bad = append(bad, fmt.Errorf("%s: %w", kv.Key, err))
			continue
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(x, y Registration) int {
		return cmp.Or(cmp.Compare(x.Service, y.Service), cmp.Compare(x.Node, y.Node))
	})
	if len(bad) > 0 {
		return out, fmt.Errorf("list %s: %d registrations do not parse, left out: %w", key, len(bad), errors.Join(bad...))
	}
	return out, nil
}
