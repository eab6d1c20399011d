package terminator

import (
	"golang.org/x/sys/unix"
)

// prober polls client sockets for the watcher (see watch.go).
type prober struct {
	pfds []unix.PollFd // reused from tick to tick, at most maxPollBatch
	peek [1]byte
}

// probe marks in gone the sockets of fds whose client has gone: closed or
// shut its side (POLLRDHUP, POLLHUP), failed (POLLERR), or readable at
// EOF. Readable with data is a pipelined request: not gone. It returns how
// many were readable with data. A failed poll marks nothing: the next tick
// tries again.
func (p *prober) probe(fds []int32, gone []bool) (pipelined int) {
	p.pfds = p.pfds[:0]
	for _, fd := range fds {
		p.pfds = append(p.pfds, unix.PollFd{Fd: fd, Events: unix.POLLIN | unix.POLLRDHUP})
	}
	for {
		_, err := unix.Poll(p.pfds, 0)
		if err != unix.EINTR {
			if err != nil {
				return 0
			}
			break
		}
	}
	for i, pf := range p.pfds {
		switch ev := pf.Revents; {
		case ev&(unix.POLLRDHUP|unix.POLLHUP|unix.POLLERR) != 0:
			gone[i] = true
		case ev&unix.POLLIN != 0:
			// Not consumed: fasthttp reads it as the next request.
			n, _, err := unix.Recvfrom(int(pf.Fd), p.peek[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
			switch {
			case err == unix.EAGAIN || err == unix.EINTR:
			case err != nil || n == 0:
				gone[i] = true // reset, or EOF
			default:
				pipelined++
			}
		}
	}
	return pipelined
}
