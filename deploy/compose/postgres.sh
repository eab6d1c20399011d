#!/bin/sh
# The fleet's PostgreSQL: creates a cluster in $PGDATA on the first start
# (superuser and database "terminator", password from POSTGRES_PASSWORD,
# scram-sha-256 over TCP), then runs postgres in the foreground.
# Works in the fleet's Debian base image and in the public postgres image.
set -eu
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
PGDATA=${PGDATA:-/var/lib/postgresql/data}
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pw=$(mktemp)
  printf '%s\n' "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is empty}" >"$pw"
  "$bin/initdb" -D "$PGDATA" -U terminator --pwfile="$pw" -E UTF8 --no-locale \
    --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  rm -f "$pw"
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  echo "CREATE DATABASE terminator;" | "$bin/postgres" --single -D "$PGDATA" -j postgres >/dev/null
  echo "postgres.sh: created a cluster in $PGDATA"
fi
exec "$bin/postgres" -D "$PGDATA" -c listen_addresses='*' -c unix_socket_directories=/tmp \
  -c max_connections="${POSTGRES_MAX_CONNECTIONS:-200}"
