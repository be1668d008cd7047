#!/usr/bin/env bash
# `make demo-ui`: the sandbox plus `airflow standalone`, wired together, for clicking around.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv"
export AIRFLOW_HOME="$root/.airflow_home/ui"
export AIRFLOW__CORE__DAGS_FOLDER="$root/example_dags"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS=True
export AIRFLOW__CORE__TEST_CONNECTION=Enabled
export AIRFLOW__API__HOST=127.0.0.1
export AIRFLOW__API__PORT="${AIRFLOW_PORT:-8080}"
port="${SANDBOX_PORT:-8765}"
mkdir -p "$AIRFLOW_HOME"
"$venv/bin/python" -m airflow_provider_smsonline.sandbox --host 127.0.0.1 --port "$port" --api-key sandbox &
sandbox=$!
trap 'kill $sandbox 2>/dev/null || true' EXIT
"$venv/bin/airflow" db migrate >/dev/null
"$venv/bin/airflow" connections delete smsonline_default >/dev/null 2>&1 || true
"$venv/bin/airflow" connections add smsonline_default --conn-type smsonline \
  --conn-host "http://127.0.0.1:$port/stubs/handler_api.php" --conn-port "$port" --conn-password sandbox
echo "Airflow UI: http://127.0.0.1:$AIRFLOW__API__PORT (no login); connection smsonline_default -> sandbox"
"$venv/bin/airflow" standalone
