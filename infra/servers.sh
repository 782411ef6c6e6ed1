#!/usr/bin/env bash
# Prefect (API, UI, scheduler) and MLflow (tracking, UI) servers on loopback, data under SPACE_HOME.
#   infra/servers.sh start     # start both, wait until both answer their health checks, print the exports
#   infra/servers.sh status    # pid and health of each
#   infra/servers.sh stop      # SIGTERM each server's process group, SIGKILL after 30 s
# Settings (environment): SPACE_HOME (.space), PREFECT_PORT (4200), MLFLOW_PORT (5000), SPACE_VENV (.venv),
# SPACE_DB=sqlite|postgres (sqlite). SQLite stores are for one run at a time. With postgres, Debian's PostgreSQL
# (apt-get install postgresql when missing: needs root; no system "main" cluster is created) runs a private
# cluster under SPACE_HOME/postgres on PG_PORT (5432), owned by the postgres user when run as root (every folder
# above it needs o+x), and holds Prefect's database; MLflow's too when psycopg2 is importable in the venv (the
# dev extra installs psycopg2-binary; else MLflow stays on SQLite). `stop` stops the cluster; `start` reuses it.
# The Prefect UI calls PREFECT_UI_API_URL, which defaults to port 4200: it is set here for any port.
set -euo pipefail
cd "$(dirname "$0")/.."
SPACE_HOME=$(realpath -m "${SPACE_HOME:-.space}")
VENV=$(realpath -m "${SPACE_VENV:-.venv}")
HOST=127.0.0.1
PREFECT_PORT=${PREFECT_PORT:-4200}
MLFLOW_PORT=${MLFLOW_PORT:-5000}
PG_PORT=${PG_PORT:-5432}
SPACE_DB=${SPACE_DB:-sqlite}
RUN="$SPACE_HOME/servers"
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
PREFECT_URL="http://$HOST:$PREFECT_PORT/api"
MLFLOW_URL="http://$HOST:$MLFLOW_PORT"

alive() { [[ -f "$RUN/$1.pid" ]] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

wait_healthy() {  # name url seconds
  local deadline=$((SECONDS + $3))
  until curl -fs -o /dev/null "$2"; do
    if ! alive "$1"; then echo "$1 exited; last lines of $RUN/$1.log:" >&2; tail -20 "$RUN/$1.log" >&2; return 1; fi
    if ((SECONDS > deadline)); then echo "$1 not healthy after $3 s ($2)" >&2; return 1; fi
    sleep 1
  done
  echo "$1 healthy: $2"
}

launch() {  # name command... : own session (process group), so stop reaches its children too
  if alive "$1"; then echo "$1 already running (pid $(cat "$RUN/$1.pid"))"; return; fi
  local name=$1; shift
  setsid "$@" > "$RUN/$name.log" 2>&1 < /dev/null &
  echo $! > "$RUN/$name.pid"
}

die() { echo "servers.sh: $*" >&2; exit 1; }

as_postgres() {  # as root, PostgreSQL's tools run as the postgres user (initdb refuses root); from / so any cwd works
  if ((EUID == 0)); then (cd / && runuser -u postgres -- "$@"); else (cd / && "$@"); fi
}

install_postgres() {  # Debian's package, without the system "main" cluster (it would take port 5432)
  ((EUID == 0)) || die "PostgreSQL is not installed and installing it needs root: apt-get install postgresql"
  command -v apt-get > /dev/null || die "PostgreSQL is not installed and apt-get is missing (not Debian/Ubuntu?)"
  echo "installing Debian's postgresql (log: $RUN/apt.log)"
  local no_main=/etc/postgresql-common/createcluster.d/space-no-main-cluster.conf
  mkdir -p "$(dirname "$no_main")" && echo "create_main_cluster = false" > "$no_main"
  if ! { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql; } > "$RUN/apt.log" 2>&1
  then rm -f "$no_main"; tail -20 "$RUN/apt.log" >&2; die "apt-get install postgresql failed (log: $RUN/apt.log)"; fi
  rm -f "$no_main"
  PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
}

pg_running() { [[ -n "$PG_BIN" ]] && as_postgres "$PG_BIN/pg_ctl" -D "$SPACE_HOME/postgres" status > /dev/null 2>&1; }

start_postgres() {  # private cluster under SPACE_HOME/postgres, user `space` trusted on loopback only
  [[ -n "$PG_BIN" ]] || install_postgres
  local data="$SPACE_HOME/postgres"
  if [[ ! -f "$data/PG_VERSION" ]]; then
    mkdir -p "$data" && chmod 700 "$data"
    ((EUID != 0)) || chown postgres "$data"
    as_postgres test -w "$data" || die "the postgres user cannot write $data: every folder above it needs o+x"
    as_postgres "$PG_BIN/initdb" -D "$data" -U space --auth=trust > "$RUN/postgres-init.log"
  fi
  pg_running || as_postgres "$PG_BIN/pg_ctl" -D "$data" -l "$data/server.log" -w \
    -o "-h $HOST -p $PG_PORT -k /tmp" start > /dev/null || die "postgres did not start; see $data/server.log"
  echo "postgres running: $HOST:$PG_PORT, cluster $data"
  local db exists
  for db in prefect mlflow; do
    exists=$(as_postgres "$PG_BIN/psql" -h $HOST -p "$PG_PORT" -U space -d postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname = '$db'")
    [[ $exists == 1 ]] || as_postgres "$PG_BIN/createdb" -h $HOST -p "$PG_PORT" -U space "$db"
  done
}

start() {
  mkdir -p "$RUN" "$SPACE_HOME/mlartifacts"
  local mlflow_store="sqlite:///$SPACE_HOME/mlflow.db"
  export PREFECT_HOME="$SPACE_HOME/prefect" PREFECT_SERVER_ANALYTICS_ENABLED=false PREFECT_UI_API_URL="$PREFECT_URL"
  # the API answers a locked SQLite with 503 for the client to retry, unlogged by default: log it
  export PREFECT_SERVER_LOG_RETRYABLE_ERRORS=true
  if [[ $SPACE_DB == postgres ]]; then
    start_postgres
    export PREFECT_API_DATABASE_CONNECTION_URL="postgresql+asyncpg://space@$HOST:$PG_PORT/prefect"
    if "$VENV/bin/python" -c "import psycopg2" 2> /dev/null; then
      mlflow_store="postgresql://space@$HOST:$PG_PORT/mlflow"
    else
      echo "psycopg2 is not installed in $VENV: MLflow keeps its SQLite store (pip install psycopg2-binary)"
    fi
  fi
  launch prefect "$VENV/bin/prefect" server start --host $HOST --port "$PREFECT_PORT"
  launch mlflow "$VENV/bin/mlflow" server --backend-store-uri "$mlflow_store" \
    --default-artifact-root "$SPACE_HOME/mlartifacts" --host $HOST --port "$MLFLOW_PORT" --workers 1
  wait_healthy prefect "$PREFECT_URL/health" 300
  wait_healthy mlflow "$MLFLOW_URL/health" 300
  echo "Prefect UI: http://$HOST:$PREFECT_PORT   MLflow UI: $MLFLOW_URL   logs: $RUN"
  echo "export PREFECT_API_URL=$PREFECT_URL MLFLOW_TRACKING_URI=$MLFLOW_URL"
}

stop_one() {
  alive "$1" || { rm -f "$RUN/$1.pid"; return 0; }
  local pid deadline=$((SECONDS + 30))
  pid=$(cat "$RUN/$1.pid")
  kill -TERM -- "-$pid" 2> /dev/null || kill -TERM "$pid"
  while kill -0 "$pid" 2> /dev/null; do
    if ((SECONDS > deadline)); then kill -KILL -- "-$pid" 2> /dev/null || kill -KILL "$pid"; fi
    sleep 0.5
  done
  rm -f "$RUN/$1.pid"
  echo "$1 stopped"
}

stop() {
  stop_one prefect
  stop_one mlflow
  if pg_running; then
    as_postgres "$PG_BIN/pg_ctl" -D "$SPACE_HOME/postgres" -w stop -m fast > /dev/null && echo "postgres stopped"
  fi
}

status() {
  local rc=0
  for spec in "prefect $PREFECT_URL/health" "mlflow $MLFLOW_URL/health"; do
    set -- $spec
    if ! alive "$1"; then echo "$1: not running"; rc=1
    elif curl -fs -o /dev/null "$2"; then echo "$1: running (pid $(cat "$RUN/$1.pid")), healthy at $2"
    else echo "$1: running (pid $(cat "$RUN/$1.pid")), NOT answering $2"; rc=1; fi
  done
  if pg_running; then echo "postgres: running, cluster $SPACE_HOME/postgres"
  elif [[ -f "$SPACE_HOME/postgres/PG_VERSION" ]]; then echo "postgres: not running"; [[ $SPACE_DB != postgres ]] || rc=1
  fi
  return $rc
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
