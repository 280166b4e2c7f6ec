#!/usr/bin/env bash
# A local PostgreSQL for the Prefect server, from Debian's `postgresql` package:
#   infra/postgres.sh start DIR [PORT]   initialise DIR once, start the server on 127.0.0.1:PORT (5433), print the
#                                        URL Prefect's PREFECT_API_DATABASE_CONNECTION_URL takes (last line)
#   infra/postgres.sh stop DIR           stop it (its data stays for the next start)
#   infra/postgres.sh remove DIR         stop it and delete its data
# Prefect's default SQLite database locks under many concurrent task-run reports (a Ray fan-out of many partitions);
# PostgreSQL does not. Only loopback connections are accepted, without a password (trust): a local server for one user.
set -euo pipefail
ACTION=${1:?usage: infra/postgres.sh start|stop|remove DIR [PORT]}
DIR=$(realpath -m "${2:?usage: infra/postgres.sh start|stop|remove DIR [PORT]}")
PORT=${3:-5433}
say() { echo "[postgres] $*" >&2; }

BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [ -z "$BIN" ] || [ ! -x "$BIN/pg_ctl" ]; then
    say "PostgreSQL is not installed: apt-get install postgresql (Debian's package), or name a server's URL instead"
    exit 1
fi
# PostgreSQL refuses to run as root: as root, the server runs as the package's own `postgres` user, and its cluster
# lives where that user can reach it (under its home, one folder per DIR; DIR/cluster says where)
CLUSTER=$DIR
if [ "$(id -u)" = 0 ]; then
    CLUSTER=$(getent passwd postgres | cut -d: -f6)/miniplm/$(printf %s "$DIR" | sha1sum | cut -c1-16)
fi
as_owner() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "$ACTION" in
start)
    mkdir -p "$DIR"
    if [ "$CLUSTER" != "$DIR" ]; then
        as_owner mkdir -p "$CLUSTER"
        echo "$CLUSTER" >"$DIR/cluster"
    fi
    if [ ! -f "$CLUSTER/data/PG_VERSION" ]; then
        say "initialising a database cluster in $CLUSTER/data"
        as_owner "$BIN/initdb" -D "$CLUSTER/data" -U prefect --auth=trust --encoding=UTF8 >"$DIR/initdb.log" 2>&1 \
            || { say "initdb failed: see $DIR/initdb.log"; exit 1; }
    fi
    if ! as_owner "$BIN/pg_ctl" -D "$CLUSTER/data" status >/dev/null 2>&1; then
        say "starting PostgreSQL on 127.0.0.1:$PORT (log: $CLUSTER/server.log)"
        # max_connections: a Prefect server pools connections per worker; a fan-out of many task runs needs room
        as_owner "$BIN/pg_ctl" -D "$CLUSTER/data" -l "$CLUSTER/server.log" -w -t 60 \
            -o "-c listen_addresses=127.0.0.1 -p $PORT -k $CLUSTER -c max_connections=200" start >/dev/null \
            || { say "PostgreSQL did not start: see $CLUSTER/server.log"; exit 1; }
    fi
    if ! as_owner "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U prefect -d postgres -tAc \
        "select 1 from pg_database where datname = 'prefect'" | grep -q 1; then
        as_owner "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U prefect prefect
    fi
    echo "postgresql+asyncpg://prefect@127.0.0.1:$PORT/prefect"
    ;;
stop)
    if [ -f "$CLUSTER/data/PG_VERSION" ] && as_owner "$BIN/pg_ctl" -D "$CLUSTER/data" status >/dev/null 2>&1; then
        say "stopping PostgreSQL ($CLUSTER)"
        as_owner "$BIN/pg_ctl" -D "$CLUSTER/data" -m fast -w stop >/dev/null
    fi
    ;;
remove)  # stop, and delete the cluster and its data
    "$0" stop "$DIR" "$PORT"
    as_owner rm -rf "$CLUSTER"
    rm -rf "$DIR"
    ;;
*)
    say "unknown action $ACTION: start, stop or remove"
    exit 1
    ;;
esac
