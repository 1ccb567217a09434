#!/bin/sh
# The official postgres image's start-up, reduced to what deploy/compose.yaml uses: on an empty
# data directory, initdb with POSTGRES_USER as the superuser and POSTGRES_PASSWORD as its
# password (scram-sha-256 for every host), create POSTGRES_DB; then run the server as the
# postgres user, listening on every address.
set -eu
: "${POSTGRES_USER:=postgres}" "${POSTGRES_DB:=$POSTGRES_USER}"
if [ -z "${POSTGRES_PASSWORD:-}" ]; then
  echo "postgres-entrypoint: POSTGRES_PASSWORD is required" >&2
  exit 1
fi
mkdir -p "$PGDATA" /run/postgresql
chown -R postgres:postgres "$PGDATA" /run/postgresql
chmod 700 "$PGDATA"
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  password_file=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" >"$password_file"
  chown postgres "$password_file"
  as_postgres initdb --username="$POSTGRES_USER" --pwfile="$password_file" \
    --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 >/dev/null
  rm -f "$password_file"
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  as_postgres pg_ctl --wait --silent -o "-c listen_addresses=''" start
  if [ "$POSTGRES_DB" != postgres ]; then
    as_postgres psql --quiet --username="$POSTGRES_USER" --dbname=postgres \
      --command="CREATE DATABASE \"$POSTGRES_DB\""
  fi
  as_postgres pg_ctl --wait --silent stop
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups "$@" -c listen_addresses='*'
