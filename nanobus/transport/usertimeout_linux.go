package transport

import (
	"syscall"
	"time"
)

// setUserTimeout sets TCP_USER_TIMEOUT: how long sent data may stay
// unacknowledged before the kernel gives the connection up.
func setUserTimeout(fd int, d time.Duration) error {
	const tcpUserTimeout = 0x12 // TCP_USER_TIMEOUT, linux/tcp.h
	return syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, tcpUserTimeout, int(d/time.Millisecond))
}
