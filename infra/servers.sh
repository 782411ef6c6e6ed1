#!/usr/bin/env bash
# Start a Prefect server (UI + scheduler) and an MLflow server on loopback, data under SPACE_HOME.
#   infra/servers.sh            # then, in the shell that runs space:
#   export PREFECT_API_URL=http://127.0.0.1:4200/api MLFLOW_TRACKING_URI=http://127.0.0.1:5000
# Stop both with: kill $(cat "$SPACE_HOME"/servers/*.pid)
set -euo pipefail
cd "$(dirname "$0")/.."
SPACE_HOME=$(realpath -m "${SPACE_HOME:-.space}")
mkdir -p "$SPACE_HOME/servers" "$SPACE_HOME/mlartifacts"
export PREFECT_HOME="$SPACE_HOME/prefect" PREFECT_SERVER_ANALYTICS_ENABLED=false
.venv/bin/prefect server start --host 127.0.0.1 --port "${PREFECT_PORT:-4200}" \
  > "$SPACE_HOME/servers/prefect.log" 2>&1 &
echo $! > "$SPACE_HOME/servers/prefect.pid"
.venv/bin/mlflow server --backend-store-uri "sqlite:///$SPACE_HOME/mlflow.db" \
  --default-artifact-root "$SPACE_HOME/mlartifacts" --host 127.0.0.1 --port "${MLFLOW_PORT:-5000}" --workers 1 \
  > "$SPACE_HOME/servers/mlflow.log" 2>&1 &
echo $! > "$SPACE_HOME/servers/mlflow.pid"
echo "Prefect UI: http://127.0.0.1:${PREFECT_PORT:-4200}  MLflow UI: http://127.0.0.1:${MLFLOW_PORT:-5000}"
echo "logs and pids in $SPACE_HOME/servers"
