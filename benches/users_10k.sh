#!/usr/bin/env bash
# Measurement 4: 10,000 closed-model users on one worker process. Target on core 1; master and
# worker on core 0. Prints the worker's peak RSS (VmHWM read just before the end, and
# /usr/bin/time %M over its whole life), plus requests and failures of the run.
source "$(dirname "$0")/common.sh"
USERS="${USERS:-10k}"; DUR="${DUR:-20}"; PORT="${PORT:-7402}"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
TMP="$(scratch)"
start_target
MPID=""; WPID=""
trap 'kill $TARGET_PID $MPID $WPID 2>/dev/null; wait $TARGET_PID 2>/dev/null; rm -rf "$TMP"' EXIT
cat >"$TMP/s.toml" <<TOML
name = "users-10k"
target = "$TARGET_URL"
duration = "${DUR}s"
[load]
model = "closed"
users = 100
[[requests]]
name = "index"
path = "/"
TOML
machine
echo "ulimit -n: $(ulimit -n); target $TARGET_URL on core 1"
wait_quiet
echo
taskset -c 0 "$STAMPEDE" master --bind 127.0.0.1:$PORT --headless --expect-workers 1 \
    --scenario "$TMP/s.toml" --users "$USERS" --duration "${DUR}s" --out "$TMP/out" >"$TMP/master.out" 2>"$TMP/master.err" &
MPID=$!
sleep 0.5
/usr/bin/time -o "$TMP/t" -f '%M %U %S %e' taskset -c 0 "$STAMPEDE" worker --master 127.0.0.1:$PORT \
    >"$TMP/worker.out" 2>"$TMP/worker.err" &
TPID=$!
for _ in $(seq 50); do WPID=$(pgrep -P $TPID || true); [ -n "$WPID" ] && break; sleep 0.1; done
# The time wrapper's child is the worker (taskset execs it).
hwm=0; rss_max=0
for sec in $(seq $((DUR + 2))); do
    sleep 1
    h=$(awk '/VmHWM/ {print $2}' /proc/$WPID/status 2>/dev/null) || break
    r=$(awk '/VmRSS/ {print $2}' /proc/$WPID/status 2>/dev/null) || break
    [ -n "$h" ] && hwm=$h; [ -n "$r" ] && [ "$r" -gt "$rss_max" ] && rss_max=$r
    conns=$(ls /proc/$WPID/fd 2>/dev/null | wc -l)
    echo "t+${sec}s worker VmRSS=$((r / 1024)) MB VmHWM=$((h / 1024)) MB fds=$conns"
done
wait $MPID && mrc=0 || mrc=$?
wait $TPID || true
read -r maxrss u s e <"$TMP/t"
python3 - "$TMP/out/summary.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); m = d["metrics"]
print(f"run: users={d['load']} total_requests={m['total_requests']} "
      f"req/s={m['throughput']['requests_per_second']:.0f} error_rate={m['error_rate']} "
      f"latency p50={m['latency']['median_ms']} p99={m['latency']['p99_ms']} ms failures={d['failures']}")
PY
echo "master exit code: $mrc; worker cpu $(awk -v u="$u" -v s="$s" 'BEGIN{print u+s}') s over $e s"
echo "worker peak RSS: VmHWM=$((hwm / 1024)) MB (last read before exit), /usr/bin/time maxrss=$((maxrss / 1024)) MB  (goal: < 200 MB)"
