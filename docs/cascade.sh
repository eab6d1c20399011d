#!/usr/bin/env bash
# cascade.sh regenerates docs/cascade.dot and docs/cascade.svg (see
# docs/cascade.md): it runs the sample app (`terminator all`) on free
# loopback ports with a throwaway data directory, waits for it to be ready,
# draws what its services registered with `terminator graph`, and stops it.
# With docs/cascade-tested.json present, the edges it does not list are
# marked untested.
#
#   docs/cascade.sh [path/to/terminator]     (make graph: after make build)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=$(realpath "${1:-$here/../bin/terminator}")
[ -x "$bin" ] || { echo "cascade.sh: no binary at $bin (make build)" >&2; exit 1; }
command -v dot >/dev/null 2>&1 || { echo "cascade.sh: Graphviz's dot is not installed (apt-get install graphviz)" >&2; exit 1; }

# free prints a random loopback port nothing answers on and not in $taken.
# (Another process may take it before terminator does: run again.)
free() {
  local port
  for _ in $(seq 100); do
    port=$((20000 + RANDOM % 20000))
    if [[ " $taken " != *" $port "* ]] && ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return
    fi
  done
  echo "cascade.sh: no free loopback port found" >&2
  exit 1
}
taken=""
front=$(free); taken="$taken $front"
admin=$(free); taken="$taken $admin"
etcd=$(free); taken="$taken $etcd"
peer=$(free)

data=$(mktemp -d)
log="$data/terminator.log"
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    wait "$pid" || true
  fi
  rm -rf "$data" "$here/cascade.dot.tmp"
}
trap cleanup EXIT

"$bin" all -data "$data/data" -listen "127.0.0.1:$front" -admin "127.0.0.1:$admin" \
  -embedded-etcd-client "http://127.0.0.1:$etcd" -embedded-etcd-peer "http://127.0.0.1:$peer" >"$log" 2>&1 &
pid=$!

# Ready: every service registered (with its events declaration).
ready=""
for _ in $(seq 120); do
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "cascade.sh: terminator all exited; its log:" >&2; cat "$log" >&2; exit 1
  fi
  if "$bin" probe "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1; then ready=1; break; fi
  sleep 0.5
done
[ -n "$ready" ] || { echo "cascade.sh: not ready within 60s; its log:" >&2; cat "$log" >&2; exit 1; }

args=(-etcd-endpoints "http://127.0.0.1:$etcd" -svg "$here/cascade.svg")
if [ -f "$here/cascade-tested.json" ]; then
  args+=(-tested "$here/cascade-tested.json")
fi
"$bin" graph "${args[@]}" >"$here/cascade.dot.tmp"
mv "$here/cascade.dot.tmp" "$here/cascade.dot"
echo "cascade.sh: wrote $here/cascade.dot and $here/cascade.svg" >&2
