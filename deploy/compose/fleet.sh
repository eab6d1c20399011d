#!/usr/bin/env bash
# fleet.sh drives the compose fleet (compose.yaml beside it).
#
#   fleet.sh images     build the images locally (nothing is pulled) and print their tags
#   fleet.sh up         images, then start the fleet, wait until every process is
#                       registered in etcd, seed sample data through nginx on a
#                       fresh fleet, print where it answers
#   fleet.sh down       stop it and remove its containers, networks and volumes
#                       (the cached base image stays; REMOVE_IMAGES=1 removes it too)
#   fleet.sh compose …  any compose command against this fleet (ps, logs, …)
#
# Settings (environment): FLEET_PORT (nginx on 127.0.0.1, default 8090),
# FLEET_PROJECT (compose project name, default terminator-fleet), FLEET_NET
# (first three octets of the fleet's /24, default 172.31.213),
# TERMINATOR_ADMIN_TOKEN and TERMINATOR_METRICS_TOKEN (Prometheus's, which
# opens /metrics only) (default: a random one each, kept until `down`),
# FLEET_SEED=0 (no sample data), FLEET_WAIT (seconds to wait for every
# process to register, default 180),
# POSTGRES_PASSWORD, ETCD_IMAGE / NGINX_IMAGE / POSTGRES_IMAGE /
# PROMETHEUS_IMAGE / TERMINATOR_IMAGE to use other images than the ones built
# here, and PUBLIC_IMAGES=1 to pull the public etcd, nginx, postgres and
# prometheus images instead of building the base image.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
images=$here/../images
export FLEET_PORT=${FLEET_PORT:-8090}
export FLEET_NET=${FLEET_NET:-172.31.213}
project=${FLEET_PROJECT:-terminator-fleet}
state=$here/.state/$project
# Every terminator process registers once: 2 fronts, 2 each of web,
# profiles, visits, flirts, and echo.
want_registrations=11

die() { echo "fleet.sh: $*" >&2; exit 1; }

# The compose plugin when there is one, else docker-compose (1.29 in
# Debian): said on stderr, so that what runs the fleet is never a guess.
if docker compose version >/dev/null 2>&1; then
  compose_cmd=(docker compose)
  compose_is="docker compose (plugin $(docker compose version --short 2>/dev/null || echo '?'))"
elif command -v docker-compose >/dev/null 2>&1; then
  compose_cmd=(docker-compose)
  compose_is="docker-compose $(docker-compose version --short 2>/dev/null || echo '?') (no compose plugin found)"
else
  die "neither 'docker compose' nor docker-compose is installed (apt-get install docker-compose)"
fi

# The admin and scrape tokens are made once per project and kept until down.
token() {
  TERMINATOR_ADMIN_TOKEN=${TERMINATOR_ADMIN_TOKEN:-$(made_token admin-token)}
  TERMINATOR_METRICS_TOKEN=${TERMINATOR_METRICS_TOKEN:-$(made_token metrics-token)}
  export TERMINATOR_ADMIN_TOKEN TERMINATOR_METRICS_TOKEN
}

# made_token prints the token kept in $state/<name>, made at its first use.
made_token() {
  if [ ! -s "$state/$1" ]; then
    mkdir -p "$state"
    (umask 077 && od -An -tx1 -N16 /dev/urandom | tr -d ' \n' >"$state/$1")
  fi
  cat "$state/$1"
}

compose() { "${compose_cmd[@]}" -p "$project" -f "$here/compose.yaml" "$@"; }

build_images() {
  export TERMINATOR_IMAGE=${TERMINATOR_IMAGE:-terminator-gw/terminator:dev}
  # With a registry at hand, PUBLIC_IMAGES=1 leaves etcd, nginx and
  # PostgreSQL to compose's defaults (the public images, pulled).
  if [ "${PUBLIC_IMAGES:-}" = 1 ]; then
    "$images/terminator.sh" >/dev/null
    return
  fi
  # The two builds share nothing: run them side by side.
  local tag
  tag=$(mktemp)
  "$images/base.sh" >"$tag" &
  local base_pid=$!
  if ! "$images/terminator.sh" >/dev/null; then
    wait $base_pid || true
    die "building the terminator image failed (see above)"
  fi
  wait $base_pid || die "building the base image failed (see above)"
  local base
  base=$(cat "$tag")
  rm -f "$tag"
  export ETCD_IMAGE=${ETCD_IMAGE:-$base} NGINX_IMAGE=${NGINX_IMAGE:-$base} POSTGRES_IMAGE=${POSTGRES_IMAGE:-$base} \
    PROMETHEUS_IMAGE=${PROMETHEUS_IMAGE:-$base}
}

registrations() {
  compose exec -T etcd1 etcdctl --endpoints=http://127.0.0.1:2379 get --prefix --keys-only /terminator/services/ 2>/dev/null |
    grep -c . || true
}

wait_registered() {
  local n=0 deadline=$((SECONDS + ${FLEET_WAIT:-180}))
  while [ $SECONDS -lt $deadline ]; do
    n=$(registrations)
    [ "$n" -ge $want_registrations ] && return 0
    sleep 1
  done
  compose ps >&2 || true
  compose logs --tail 20 >&2 || true
  die "only $n of $want_registrations terminator processes registered in etcd after ${FLEET_WAIT:-180}s"
}

# seeded_before reports whether profile 1 exists, asking through nginx
# until the services answer (200 or their own 404).
seeded_before() {
  local s=000 deadline=$((SECONDS + 60))
  while [ $SECONDS -lt $deadline ]; do
    s=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$FLEET_PORT/profiles/1" || true)
    case $s in 200) return 0 ;; 404) return 1 ;; esac
    sleep 0.5
  done
  die "nginx on 127.0.0.1:$FLEET_PORT did not answer GET /profiles/1 (last status $s)"
}

up() {
  command -v curl >/dev/null 2>&1 || die "curl is not installed (apt-get install curl)"
  local start=$SECONDS
  build_images
  echo "images ready in $((SECONDS - start))s: terminator $TERMINATOR_IMAGE; etcd, nginx, postgres ${ETCD_IMAGE:-public}"
  compose up -d --remove-orphans
  wait_registered
  # A fresh fleet gets sample data; one that has it keeps it.
  local seeded=ok
  if [ "${FLEET_SEED:-1}" = 1 ] && ! seeded_before; then
    compose run --rm seed || seeded=failed
  fi
  welcome
  if [ "$seeded" != ok ]; then
    die "the fleet runs, but loading sample data through nginx failed (see above)"
  fi
}

port_of() { compose port "$1" "$2" 2>/dev/null | sed 's/.*://'; }

welcome() {
  local u=http://127.0.0.1:$FLEET_PORT
  cat <<EOF

the fleet is up (compose project $project): nginx -> 2 fronts -> 2 x web, profiles, visits,
flirts (over one PostgreSQL), echo; a 3-member etcd cluster.
  public HTTP   $u
  front1        http://127.0.0.1:$(port_of front1 8080)   admin http://127.0.0.1:$(port_of front1 8081)/
  front2        http://127.0.0.1:$(port_of front2 8080)   admin http://127.0.0.1:$(port_of front2 8081)/
  admin token   $TERMINATOR_ADMIN_TOKEN   (status pages and pprof: -H 'Authorization: Bearer <token>')
  prometheus    http://127.0.0.1:$(port_of prometheus 9090)/   (scrapes every process's /metrics; token $TERMINATOR_METRICS_TOKEN)

try:
  curl -s $u/profiles/1
  curl -s -X PUT --data '{"name":"Ann","age":31,"city":"Lyon","bio":"hiker"}' $u/profiles/ann
  curl -s -X POST --data '{"visitor":"1"}' $u/profiles/ann/visits
  curl -s -X POST --data '{"from":"1","message":"hi Ann"}' $u/profiles/ann/flirts
  curl -s $u/profiles/ann
  curl -s $u/profiles/ann/visitors
  curl -s $u/echo

deploy/compose/fleet.sh compose ps    # or logs -f front1, ...
make down                             # stops it and removes its containers, networks and volumes
EOF
}

down() {
  compose --profile seed --profile grafana down --volumes --remove-orphans --timeout 15
  rm -rf "$state"
  if [ "${REMOVE_IMAGES:-}" = 1 ]; then
    docker image rm "${TERMINATOR_IMAGE:-terminator-gw/terminator:dev}" >/dev/null 2>&1 || true
    docker image ls -q terminator-fleet-base | xargs -r docker image rm >/dev/null 2>&1 || true
  fi
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case $cmd in
images | up | down | compose) echo "fleet.sh: using $compose_is" >&2 ;;
esac
case $cmd in
images) build_images; echo "$TERMINATOR_IMAGE"; echo "${ETCD_IMAGE:-(public images)}" ;;
up) token; up ;;
down) token; down ;;
compose) token; compose "$@" ;;
*) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
esac
