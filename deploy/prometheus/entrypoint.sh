#!/bin/sh
# The compose fleet's Prometheus: writes the scrape token from the
# environment to the file prometheus.yml names (Prometheus reads no
# environment in its configuration), then runs Prometheus on :9090 with the
# fleet's configuration. Works with Debian's prometheus package (the base
# image) and with the public prom/prometheus image.
set -eu
: "${TERMINATOR_METRICS_TOKEN:?the scrape token (make up sets it)}"
data=/prometheus
mkdir -p "$data"
(umask 077 && printf '%s' "$TERMINATOR_METRICS_TOKEN" >"$data/scrape-token")
exec prometheus \
  --config.file=/etc/terminator/prometheus/prometheus.yml \
  --storage.tsdb.path="$data" \
  --storage.tsdb.retention.time="${PROMETHEUS_RETENTION:-2d}" \
  --web.listen-address=0.0.0.0:9090
