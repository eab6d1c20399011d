// Package prometheus holds the Prometheus side of a terminator deploy:
// prometheus.yml (the compose fleet's scrape configuration), alerts.yml
// (example alert rules) and alerts_test.yml (their unit test, which
// rules_test.go runs with promtool). It has no Go code of its own; see
// docs/metrics.md.
package prometheus
