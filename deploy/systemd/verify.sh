#!/usr/bin/env bash
# verify.sh checks terminator@.service with systemd-analyze: `verify` for
# each role's instance (with its env files), and the unit's exposure score
# from `security --offline`. ExecStart must name an executable, so the copy
# checked here runs the binary given (default: bin/terminator, from make build).
#
#   deploy/systemd/verify.sh [path/to/terminator]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=$(realpath "${1:-$here/../../bin/terminator}")
command -v systemd-analyze >/dev/null 2>&1 || { echo "verify.sh: systemd-analyze is not installed (apt-get install systemd)" >&2; exit 1; }
[ -x "$bin" ] || { echo "verify.sh: no binary at $bin (make build)" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0
for env in "$here"/*.env; do
  role=$(basename "$env" .env)
  [ "$role" = terminator ] && continue
  unit="$tmp/terminator@$role.service"
  sed -e "s|^ExecStart=/usr/local/bin/terminator|ExecStart=$bin|" \
      -e "s|^EnvironmentFile=/etc/terminator/|EnvironmentFile=$here/|" \
      -e "s|%i.env|$role.env|" "$here/terminator@.service" >"$unit"
  if out=$(systemd-analyze verify "$unit" 2>&1) && [ -z "$out" ]; then
    echo "verify.sh: terminator@$role.service: ok"
  else
    echo "verify.sh: terminator@$role.service:"; echo "$out"; status=1
  fi
done
systemd-analyze security --offline=yes "$tmp/terminator@web.service" 2>/dev/null | tail -n 1 | sed 's/^/verify.sh: /'
exit $status
