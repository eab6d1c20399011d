// Package compose holds the compose fleet (compose.yaml, driven by
// fleet.sh) and a test that checks it without Docker running: compose
// resolves the file, and every terminator container of the fleet has a
// healthcheck asking its own admin /readyz through `terminator probe`.
// The fleet itself runs in deploy/fleet's suite.
package compose
