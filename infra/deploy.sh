#!/usr/bin/env bash
# Deployments on a process work pool, and the worker that runs them (needs a Prefect server: servers.sh).
#   export PREFECT_API_URL=http://127.0.0.1:4200/api MLFLOW_TRACKING_URI=http://127.0.0.1:5000
#   infra/deploy.sh start    # create the pool `space`, deploy prefect.yaml (repository root), start a worker
#   infra/deploy.sh status   # the worker's pid and the deployments
#   infra/deploy.sh stop     # stop the worker (SIGTERM to its process group; its runs are cancelled)
# Flow runs execute as subprocesses of the worker, in this repository, with the worker's environment:
# SPACE_HOME, PREFECT_API_URL and MLFLOW_TRACKING_URI set here reach every run.
set -euo pipefail
cd "$(dirname "$0")/.."
export SPACE_REPO=$PWD
SPACE_HOME=$(realpath -m "${SPACE_HOME:-.space}")
export SPACE_HOME
VENV=$(realpath -m "${SPACE_VENV:-.venv}")
# a flow run imports prefect before space's defaults apply: give the worker (and so its runs) the home's store
export PREFECT_HOME="${PREFECT_HOME:-$SPACE_HOME/prefect}"
export PREFECT_RESULTS_LOCAL_STORAGE_PATH="${PREFECT_RESULTS_LOCAL_STORAGE_PATH:-$PREFECT_HOME/storage}"
RUN="$SPACE_HOME/servers"
: "${PREFECT_API_URL:?set PREFECT_API_URL to a Prefect server (infra/servers.sh start prints it)}"

alive() { [[ -f "$RUN/worker.pid" ]] && kill -0 "$(cat "$RUN/worker.pid")" 2>/dev/null; }

start() {
  mkdir -p "$RUN"
  "$VENV/bin/prefect" work-pool inspect space > /dev/null 2>&1 ||
    "$VENV/bin/prefect" work-pool create space --type process
  # `prefect deploy --name` matches <entrypoint function>/<deployment name>, not the flow's name
  local names=(--name run-flow/builtin-nightly --name curate-job/builtin --name train-job/builtin)
  [[ -f flows/bench.py ]] && names+=(--name bench-flow/default)
  "$VENV/bin/prefect" --no-prompt deploy --prefect-file prefect.yaml "${names[@]}"
  if alive; then echo "worker already running (pid $(cat "$RUN/worker.pid"))"; return; fi
  setsid "$VENV/bin/prefect" worker start --pool space --type process > "$RUN/worker.log" 2>&1 < /dev/null &
  echo $! > "$RUN/worker.pid"
  echo "worker started (pid $!, log $RUN/worker.log)"
}

stop() {
  alive || { rm -f "$RUN/worker.pid"; echo "worker not running"; return 0; }
  local pid deadline=$((SECONDS + 30))
  pid=$(cat "$RUN/worker.pid")
  kill -TERM -- "-$pid"
  while kill -0 "$pid" 2> /dev/null; do
    if ((SECONDS > deadline)); then kill -KILL -- "-$pid"; fi
    sleep 0.5
  done
  rm -f "$RUN/worker.pid"
  echo "worker stopped"
}

status() {
  if alive; then echo "worker: running (pid $(cat "$RUN/worker.pid"))"; else echo "worker: not running"; fi
  "$VENV/bin/prefect" deployment ls
  alive
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
