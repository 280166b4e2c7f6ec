#!/usr/bin/env bash
# Prefect, locally, in one command: a server on 127.0.0.1 (SQLite), the `miniplm` process work pool, the
# deployments of infra/prefect.yaml (miniplm-pipeline, miniplm-rescore, miniplm-experiment) and a worker.
# Open the URL it prints; Ctrl-C stops everything it started. Options go to infra/deploy.py (--config ...), but
#   --database postgresql        the server's state in a local PostgreSQL (Debian's package) that this starts in
#                                .prefect/postgres and stops on exit: for the Ray runner's fan-outs, where SQLite locks
#   --database URL               a PostgreSQL you run (postgresql+asyncpg://USER:PASSWORD@HOST:PORT/DATABASE)
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${MINIPLM_PREFECT_PORT:-4200}
export PREFECT_HOME=${PREFECT_HOME:-$PWD/.prefect}
export PREFECT_API_URL=http://127.0.0.1:$PORT/api
export PREFECT_SERVER_ANALYTICS_ENABLED=false
mkdir -p "$PREFECT_HOME" logs
bash infra/setup.sh
. .venv/bin/activate
say() { echo "[up] $*"; }

DATABASE=sqlite DEPLOY_ARGS=()
while [ $# -gt 0 ]; do
    case "$1" in
    --database) DATABASE=${2:?--database postgresql, or a postgresql+asyncpg:// URL}; shift 2 ;;
    --database=*) DATABASE=${1#--database=}; shift ;;
    *) DEPLOY_ARGS+=("$1"); shift ;;
    esac
done
LOCAL_PG=
case "$DATABASE" in
sqlite) ;;
postgresql | postgres)
    LOCAL_PG=$PREFECT_HOME/postgres
    PREFECT_API_DATABASE_CONNECTION_URL=$(bash infra/postgres.sh start "$LOCAL_PG" "${MINIPLM_POSTGRES_PORT:-5433}")
    export PREFECT_API_DATABASE_CONNECTION_URL
    ;;
postgresql*://*) export PREFECT_API_DATABASE_CONNECTION_URL=$DATABASE ;;
*) say "--database $DATABASE: use sqlite, postgresql, or a postgresql+asyncpg:// URL"; exit 1 ;;
esac

SERVER= WORKER=
stop() {
    trap - EXIT INT TERM
    # the worker first: once the server is gone it can no longer report its runs
    if [ -n "$WORKER" ]; then say "stopping the worker"; kill -INT "$WORKER" 2>/dev/null || true; wait "$WORKER" 2>/dev/null || true; fi
    if [ -n "$SERVER" ]; then say "stopping the server"; kill -TERM "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; fi
    if [ -n "$LOCAL_PG" ]; then bash infra/postgres.sh stop "$LOCAL_PG" || true; fi
}
trap stop EXIT INT TERM

say "starting the Prefect server on 127.0.0.1:$PORT, its state in ${DATABASE%%://*} (log: logs/prefect-server.log)"
(exec prefect server start --host 127.0.0.1 --port "$PORT" >logs/prefect-server.log 2>&1) &
SERVER=$!
for _ in $(seq 120); do
    curl -sf "$PREFECT_API_URL/health" >/dev/null && break
    kill -0 "$SERVER" 2>/dev/null || { say "the server stopped: see logs/prefect-server.log"; exit 1; }
    sleep 1
done
say "deploying infra/prefect.yaml (log: logs/prefect-deploy.log)"
python infra/deploy.py "${DEPLOY_ARGS[@]}" >logs/prefect-deploy.log 2>&1 || { say "deploying failed: see logs/prefect-deploy.log"; exit 1; }
say "starting a worker on the miniplm pool (log: logs/prefect-worker.log)"
(exec prefect worker start --pool miniplm >logs/prefect-worker.log 2>&1) &
WORKER=$!
say "ready: open http://127.0.0.1:$PORT/deployments and start a run of miniplm-pipeline (Ctrl-C stops all)"
wait "$WORKER"
