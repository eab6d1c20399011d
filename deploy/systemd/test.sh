#!/usr/bin/env bash
# test.sh boots deploy/systemd under a real systemd: a Debian bookworm
# container (deploy/images/systemd.sh) with systemd as PID 1 and etcd on
# 127.0.0.1:2379, installs the static binary, the unit and the env files as
# docs/fleet.md says, starts every role and checks that
#   - each unit is active and ready, and the front serves through the bus;
#   - secrets in /etc/terminator/credentials (the admin token, the store's
#     URL with its password, etcd's CA, client certificate and key for
#     mutual TLS) reach the dynamic user;
#   - every listen backlog (ss -ltn Send-Q) is the kernel's somaxconn;
#   - a unit killed with SIGKILL is active and ready again within a bound;
#   - a unit whose store (PostgreSQL) or etcd is down at start, longer than
#     the default start limit allows, comes up once it is back;
#   - a stop drains: the journal shows the stop steps, the exit is clean.
# Prints the numbers. Cleans up the container it made, whatever happens.
#
#   deploy/systemd/test.sh [path/to/terminator]    (make test-systemd)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo_root=$(cd "$here/../.." && pwd)
bin=$(realpath "${1:-$repo_root/bin/terminator}")
[ -x "$bin" ] || { echo "test.sh: no binary at $bin (make build)" >&2; exit 1; }
command -v docker >/dev/null 2>&1 || { echo "test.sh: docker is not installed" >&2; exit 1; }

roles=(echo profiles visits flirts notifications web front)
declare -A admin=([front]=8081 [web]=8082 [profiles]=8083 [visits]=8084 [flirts]=8085 [echo]=8086 [notifications]=8087)
token=systemd-test-$RANDOM$RANDOM
pgpass=pg$RANDOM$RANDOM

fail() { echo "test.sh: FAIL: $*" >&2; exit 1; }
now_ms() { date +%s%3N; }

image=$("$repo_root/deploy/images/systemd.sh")
name=terminator-systemd-test-$$
cleanup() {
  status=$?
  if [ $status -ne 0 ] && docker inspect "$name" >/dev/null 2>&1; then
    echo "test.sh: the units' state and journal at the failure:" >&2
    docker exec "$name" systemctl --no-pager list-units 'terminator@*' etcd.service >&2 2>&1 || true
    docker exec "$name" journalctl --no-pager -n 60 -u 'terminator@*' >&2 2>&1 || true
  fi
  docker rm -f "$name" >/dev/null 2>&1 || true
  exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM # through cleanup: the container goes either way

# systemd as PID 1 wants to manage cgroups and mount namespaces: every
# capability, no seccomp or AppArmor profile in its way, the host's cgroup
# tree. --privileged would do, but an engine that itself lacks a capability
# (CAP_SYS_RESOURCE in some sandboxes) cannot grant it: then without that one.
run() {
  docker run -d --name "$name" --hostname terminator-systemd "$@" \
    --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
    --cgroupns=host -v /sys/fs/cgroup:/sys/fs/cgroup:rw \
    --tmpfs /run --tmpfs /run/lock --tmpfs /tmp "$image" >/dev/null
}
if ! err=$(run --cap-add ALL 2>&1); then
  docker rm -f "$name" >/dev/null 2>&1 || true
  echo "test.sh: docker run --cap-add ALL: $(grep -m1 -i error <<<"$err"); again without CAP_SYS_RESOURCE" >&2
  run --cap-add ALL --cap-drop SYS_RESOURCE || fail "docker run: systemd container did not start"
fi
cx() { docker exec "$name" "$@"; }

# cursor prints the journal's current position: --after-cursor reads only
# what comes after it.
cursor() { cx journalctl -n 1 -o cat --show-cursor --no-pager | sed -n 's/^-- cursor: //p'; }

# wait_for DESCRIPTION SECONDS COMMAND...: run COMMAND (in the container)
# until it succeeds, at most SECONDS.
wait_for() {
  local what=$1 bound=$2; shift 2
  local deadline=$(($(date +%s) + bound))
  until cx "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "$what: not within ${bound}s"
    sleep 0.2
  done
}

boot=$(now_ms)
wait_for "systemd boots" 60 sh -c 'systemctl is-system-running | grep -qE "^(running|degraded)$"'
echo "test.sh: systemd $(cx systemctl --version | head -n1 | cut -d' ' -f2) up as PID 1 in $(($(now_ms) - boot)) ms ($(cx systemctl is-system-running))"
wait_for "etcd ready" 60 etcdctl --endpoints=http://127.0.0.1:2379 endpoint health

# PostgreSQL, the store every stateful role shares (the base image has the
# server, no cluster).
cx sh -ec "
  v=\$(ls /usr/lib/postgresql | sort -n | tail -n1)
  pg_createcluster \$v main >/dev/null
  systemctl start postgresql@\$v-main.service
  su postgres -c \"psql -q -c \\\"CREATE ROLE terminator LOGIN PASSWORD '$pgpass'\\\"\"
  su postgres -c 'createdb -O terminator terminator'
"
pg=$(cx sh -c 'echo postgresql@$(ls /usr/lib/postgresql | sort -n | tail -n1)-main.service')
wait_for "PostgreSQL ready" 60 su postgres -c 'pg_isready -q -h 127.0.0.1'

# Install as docs/fleet.md and the unit's header say.
docker cp "$bin" "$name:/usr/local/bin/terminator"
cx mkdir -p /root/src/deploy /root/src/docs
docker cp "$here" "$name:/root/src/deploy/systemd"
docker cp "$repo_root/docs/fleet.md" "$name:/root/src/docs/fleet.md"
cx sh -ec "
  cd /root/src
  chown -R root:root /usr/local/bin/terminator && chmod 0755 /usr/local/bin/terminator
  install -d -m 0700 /etc/terminator /etc/terminator/credentials
  install -m 0600 deploy/systemd/*.env /etc/terminator/
  install -D -m 0644 docs/fleet.md /usr/share/doc/terminator/fleet.md
  install -m 0644 'deploy/systemd/terminator@.service' /etc/systemd/system/
  # Secrets the dynamic user can only have as credentials: the admin
  # token, and the store's URL with its password.
  printf '%s\n' '$token' >/etc/terminator/credentials/TERMINATOR_ADMIN_TOKEN
  printf '%s\n' 'postgres://terminator:$pgpass@127.0.0.1:5432/terminator' >/etc/terminator/credentials/TERMINATOR_STORE
  chmod 0600 /etc/terminator/credentials/*
  systemctl daemon-reload
"
doc=$(cx systemctl show -p Documentation --value terminator@front.service)
cx test -r "${doc#file:}" || fail "Documentation=$doc: no such file after the install steps"

# Without the credentials directory a unit refuses to start: an assertion
# (AssertPathIsDirectory=), not a failed credential setup.
cx mv /etc/terminator/credentials /etc/terminator/credentials.away
cx systemctl start terminator@echo.service 2>/dev/null && fail "terminator@echo started without /etc/terminator/credentials"
said=$(cx journalctl --no-pager -o cat -u terminator@echo.service | grep -m1 'asserts failed') ||
  fail "terminator@echo without /etc/terminator/credentials: no assertion failure in the journal"
cx mv /etc/terminator/credentials.away /etc/terminator/credentials
echo "test.sh: without /etc/terminator/credentials: refused, before any credential is loaded: \"$said\""

start=$(now_ms)
for r in "${roles[@]}"; do cx systemctl enable --now "terminator@$r.service" >/dev/null 2>&1 || fail "systemctl enable --now terminator@$r"; done
for r in "${roles[@]}"; do
  wait_for "terminator@$r ready" 60 terminator probe -timeout 2s "http://127.0.0.1:${admin[$r]}/readyz"
  [ "$(cx systemctl is-active "terminator@$r")" = active ] || fail "terminator@$r: not active"
done
echo "test.sh: ${#roles[@]} units active and ready in $(($(now_ms) - start)) ms: ${roles[*]}"
uid=$(cx sh -c 'stat -c %u /proc/$(systemctl show -p MainPID --value terminator@front.service)')
[ "$uid" != 0 ] || fail "terminator@front runs as root"

# Serving: a page through the front, the bus and a service.
wait_for "GET /echo through the front" 30 curl -fsS -o /dev/null http://127.0.0.1:8080/echo
code=$(cx curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/echo)
[ "$code" = 200 ] || fail "GET http://127.0.0.1:8080/echo: $code, want 200"
echo "test.sh: GET /echo through the front: $code"

# The credential: the admin token reached the unit's user (uid $uid), who
# cannot read /etc/terminator.
code=$(cx curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8081/status.json)
[ "$code" = 401 ] || fail "status.json without the token: $code, want 401 (the credential TERMINATOR_ADMIN_TOKEN did not reach the role)"
code=$(cx curl -s -o /dev/null -w '%{http_code}' -u "admin:$token" http://127.0.0.1:8081/status.json)
code2=$(cx curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" http://127.0.0.1:8081/status.json)
[ "$code" = 200 ] || [ "$code2" = 200 ] || fail "status.json with the token: $code (basic) $code2 (bearer), want 200"
echo "test.sh: admin token from /etc/terminator/credentials: 401 without it, 200 with it (uid $uid)"

# Listen backlogs: Send-Q of a listening socket is its backlog.
somaxconn=$(cx cat /proc/sys/net/core/somaxconn)
backlogs=$(cx ss -Hltn | awk '{print $4, $3}' | grep -E ':(80[0-9][0-9]|71[0-9][0-9]) ' | sort -u)
[ -n "$backlogs" ] || fail "ss -ltn: no terminator listener"
while read -r addr q; do
  [ "$q" = "$somaxconn" ] || fail "listen backlog of $addr: $q, want somaxconn $somaxconn"
done <<<"$backlogs"
echo "test.sh: $(wc -l <<<"$backlogs") listeners, every backlog $somaxconn (somaxconn)"

# kill -9: restarted and ready again within a bound.
before=$(cx systemctl show -p NRestarts --value terminator@profiles.service)
t=$(now_ms)
cx systemctl kill -s KILL terminator@profiles.service
wait_for "terminator@profiles restarted after SIGKILL" 30 sh -c "[ \$(systemctl show -p NRestarts --value terminator@profiles.service) -gt $before ]"
wait_for "terminator@profiles active after SIGKILL" 30 systemctl is-active -q terminator@profiles.service
active_ms=$(($(now_ms) - t))
wait_for "terminator@profiles ready after SIGKILL" 30 terminator probe -timeout 2s http://127.0.0.1:8083/readyz
echo "test.sh: SIGKILL of terminator@profiles: active again in $active_ms ms, ready in $(($(now_ms) - t)) ms"

# The store down at start, longer than the default start limit allows (5
# starts in 10s): the unit fails fast and is restarted until it is back,
# never "Start request repeated too quickly".
cx systemctl stop "$pg"
t=$(now_ms)
cx systemctl restart terminator@visits.service
# The outage lasts until the unit has been started again 6 times (more than
# the default 5 starts in 10s), or has failed for good.
wait_for "terminator@visits restarted 6 times with the store down" 60 sh -c \
  '[ $(systemctl show -p NRestarts --value terminator@visits.service) -ge 6 ] || systemctl is-failed -q terminator@visits.service'
down=$(($(now_ms) - t))
restarts=$(cx systemctl show -p NRestarts --value terminator@visits.service)
state=$(cx systemctl is-active terminator@visits.service || true)
[ "$state" != failed ] || fail "terminator@visits failed for good with the store down ${down} ms ($restarts restarts): $(cx systemctl show -p Result --value terminator@visits.service)"
cx systemctl start "$pg"
wait_for "terminator@visits ready once the store is back" 60 terminator probe -timeout 2s http://127.0.0.1:8084/readyz
echo "test.sh: store down ${down} ms at start: terminator@visits restarted $restarts times ('$state', never failed), ready $(($(now_ms) - t)) ms after the outage began"

# etcd down at start: etcd stopped, the unit restarted; it must not
# end failed for good ("Start request repeated too quickly").
cx systemctl stop etcd.service
since=$(cursor)
t=$(now_ms)
cx systemctl restart terminator@echo.service
# The outage lasts until the role has said 3 times that etcd is unreachable.
wait_for "terminator@echo saying etcd is unreachable, 3 times" 60 sh -c \
  "[ \$(journalctl --no-pager -o cat -u terminator@echo.service --after-cursor '$since' | grep -c 'etcd unreachable') -ge 3 ] || systemctl is-failed -q terminator@echo.service"
down=$(($(now_ms) - t))
restarts=$(cx systemctl show -p NRestarts --value terminator@echo.service)
state=$(cx systemctl is-active terminator@echo.service || true)
[ "$state" != failed ] || fail "terminator@echo failed for good with etcd down ${down} ms: $(cx systemctl show -p Result --value terminator@echo.service)"
cx systemctl start etcd.service
wait_for "etcd back" 60 etcdctl --endpoints=http://127.0.0.1:2379 endpoint health
wait_for "terminator@echo ready once etcd is back" 60 terminator probe -timeout 2s http://127.0.0.1:8086/readyz
echo "test.sh: etcd down ${down} ms at start: terminator@echo '$state' ($restarts restarts: it waits for etcd), ready $(($(now_ms) - t)) ms after the outage began"
for r in "${roles[@]}"; do
  wait_for "terminator@$r ready after the etcd outage" 60 terminator probe -timeout 2s "http://127.0.0.1:${admin[$r]}/readyz"
done

# etcd with mutual TLS, as the comments of terminator.env say: the CA, the
# client certificate and its key as credentials, ETCD_ENDPOINTS on https.
# The unit's user reads none of /etc/terminator; every role must reach etcd.
# The roles stop first, while they can still deregister from the plain etcd.
cx systemctl stop "${roles[@]/#/terminator@}"
cx sh -ec '
  d=/etc/etcd-tls; mkdir -p $d; cd $d
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=test-etcd-ca -keyout ca-key.pem -out ca.pem 2>/dev/null
  for who in server client; do
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=$who -keyout $who-key.pem -out $who.csr 2>/dev/null
    printf "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n" >$who.ext
    openssl x509 -req -in $who.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 2 -extfile $who.ext -out $who.pem 2>/dev/null
  done
  chown -R etcd: $d && chmod 0700 $d
  cat >/etc/default/etcd <<CONF
ETCD_LISTEN_CLIENT_URLS=https://127.0.0.1:2379
ETCD_ADVERTISE_CLIENT_URLS=https://127.0.0.1:2379
ETCD_CERT_FILE=$d/server.pem
ETCD_KEY_FILE=$d/server-key.pem
ETCD_CLIENT_CERT_AUTH=true
ETCD_TRUSTED_CA_FILE=$d/ca.pem
CONF
  install -m 0600 $d/ca.pem /etc/terminator/credentials/ETCD_CA
  install -m 0600 $d/client.pem /etc/terminator/credentials/ETCD_CERT
  install -m 0600 $d/client-key.pem /etc/terminator/credentials/ETCD_KEY
  sed -i "s|^ETCD_ENDPOINTS=.*|ETCD_ENDPOINTS=https://127.0.0.1:2379|" /etc/terminator/terminator.env
  systemctl restart etcd.service
'
wait_for "etcd ready on https" 60 etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/etcd-tls/ca.pem \
  --cert=/etc/etcd-tls/client.pem --key=/etc/etcd-tls/client-key.pem endpoint health
cx sh -c "curl -s -o /dev/null --max-time 2 http://127.0.0.1:2379/health" && fail "etcd still answers plain http"
tls_since=$(cursor)
t=$(now_ms)
cx systemctl start "${roles[@]/#/terminator@}"
for r in "${roles[@]}"; do
  wait_for "terminator@$r ready on etcd over mutual TLS" 60 terminator probe -timeout 2s "http://127.0.0.1:${admin[$r]}/readyz"
done
code=$(cx curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/echo)
[ "$code" = 200 ] || fail "GET /echo with etcd over mutual TLS: $code, want 200"
cx sh -c "journalctl --no-pager -o cat -u 'terminator@*' --after-cursor '$tls_since' | grep -iE 'permission denied|etcd client TLS'" && fail "a role could not read its etcd TLS files"
echo "test.sh: etcd over mutual TLS (ETCD_CA, ETCD_CERT, ETCD_KEY as credentials): ${#roles[@]} units ready in $(($(now_ms) - t)) ms, GET /echo $code"

# A stop drains: SIGTERM, the stop steps in the journal, exit 0.
since=$(cursor)
t=$(now_ms)
cx systemctl stop terminator@web.service
stop_ms=$(($(now_ms) - t))
result=$(cx systemctl show -p Result --value terminator@web.service)
[ "$result" = success ] || fail "terminator@web stopped with result $result, want success (exit 0 after draining)"
journal=$(cx journalctl --no-pager -o cat -u terminator@web.service --after-cursor "$since")
for step in stopping deregistered drained stopped; do
  grep -q "$step" <<<"$journal" || fail "stop of terminator@web: no \"$step\" in the journal:
$journal"
done
echo "test.sh: stop of terminator@web drained in $stop_ms ms; journal: $(grep -oE 'msg=[a-z]+|"msg":"[a-z]+"' <<<"$journal" | sed -E 's/msg=|"msg":|"//g' | tr '\n' ' ')"

echo "test.sh: ok"
