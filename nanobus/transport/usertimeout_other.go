//go:build !linux

package transport

import "time"

// setUserTimeout does nothing where TCP_USER_TIMEOUT does not exist: the
// keepalive probes are all there is.
func setUserTimeout(int, time.Duration) error { return nil }
