package nanobus

import (
	"github.com/terminator-gw/terminator/nanobus/policy"
	"github.com/terminator-gw/terminator/wire"
)

// Flag reports whether the edge turned feature flag name on for this
// request (see policy.Flag).
func (r *Request) Flag(name string) bool { return policy.FlagOn(r.Labels, name) }

// Variant is the variant of experiment this request's client is in, or "".
func (r *Request) Variant(experiment string) string {
	v, _ := policy.VariantOf(r.Labels, experiment)
	return v
}

// Ghost reports whether the request is a copy sent to a version under
// test: its reply is compared with the live one and thrown away, and the
// handler should skip side effects (writes, mails, payments).
func (r *Request) Ghost() bool { return r.Flags&wire.FlagGhost != 0 }
