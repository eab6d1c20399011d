package nanobus

import "github.com/terminator-gw/terminator/wire"

// WithProtocol is cfg for a node that speaks and announces protocol v
// only: a node of an earlier build, for the mixed-version tests.
func WithProtocol(cfg Config, v int) Config {
	cfg.protocol = v
	return cfg
}

// Speaks reports whether n would send frames of kind k to its instance of
// service at addr (false if it has none there).
func Speaks(n *Node, service, addr string, k wire.Kind) bool {
	for _, in := range n.instanceList(service) {
		if in.conn.addr == addr {
			return in.speaks(k)
		}
	}
	return false
}

// RunningIDs lists the IDs of the requests n is serving.
func RunningIDs(n *Node) []wire.ID {
	var out []wire.ID
	for i := range n.running.shards {
		s := &n.running.shards[i]
		s.Lock()
		for _, hc := range s.m {
			out = append(out, hc.id)
		}
		s.Unlock()
	}
	return out
}
