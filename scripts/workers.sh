#!/usr/bin/env bash
# Starts, lists and drains `payorch worker` processes in the background.
#   workers.sh start N   — start N workers (pid files and logs in $RUN_DIR)
#   workers.sh status    — which are running
#   workers.sh stop      — SIGTERM each, wait until it has drained and exited
# The workers read the usual environment (AMQP_URL, DATABASE_URL, …).
set -euo pipefail
RUN_DIR=${RUN_DIR:-run}
BIN=${BIN:-target/debug/payorch}
mkdir -p "$RUN_DIR"

running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

case "${1:-}" in
  start)
    n=${2:?usage: workers.sh start N}
    [ -n "${AMQP_URL:-}" ] || { echo "workers: AMQP_URL is not set" >&2; exit 2; }
    [ -n "${PAYORCH_SECRETS_KEY:-}" ] || { echo "workers: PAYORCH_SECRETS_KEY is not set (the key sealing merchant endpoint secrets, the one serve uses: docs/operations.md)" >&2; exit 2; }
    for i in $(seq 1 "$n"); do
      pid_file="$RUN_DIR/worker-$i.pid"
      if running "$pid_file"; then echo "worker $i already running (pid $(cat "$pid_file"))"; continue; fi
      nohup "$BIN" worker >>"$RUN_DIR/worker-$i.log" 2>&1 &
      echo $! >"$pid_file"
      echo "worker $i started (pid $!, log $RUN_DIR/worker-$i.log)"
    done
    ;;
  status)
    found=0
    for pid_file in "$RUN_DIR"/worker-*.pid; do
      [ -e "$pid_file" ] || continue
      found=1
      name=$(basename "$pid_file" .pid)
      if running "$pid_file"; then echo "$name running (pid $(cat "$pid_file"))"; else echo "$name stopped"; fi
    done
    [ "$found" = 1 ] || echo "no workers"
    ;;
  stop)
    for pid_file in "$RUN_DIR"/worker-*.pid; do
      [ -e "$pid_file" ] || continue
      if running "$pid_file"; then
        pid=$(cat "$pid_file")
        kill -TERM "$pid"
        # A worker finishes what it holds, then exits; wait for that.
        for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then echo "$(basename "$pid_file" .pid) still draining after 30 s"; continue; fi
        echo "$(basename "$pid_file" .pid) stopped"
      fi
      rm -f "$pid_file"
    done
    ;;
  *) echo "usage: workers.sh start N | status | stop" >&2; exit 2 ;;
esac
