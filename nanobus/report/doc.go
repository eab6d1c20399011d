// Package report holds the numbers a nanobus node keeps about itself
// beyond its counters (nanobus.Stats), as status pages and the rollout read
// them: each served route's (RouteStats), the calls made to each version
// of each service (VersionStats), the comparisons of ghost copies with
// live replies (GhostStats), and the instances of a service with their
// connections (PeerState). Its types are plain data, encoded as JSON.
package report
