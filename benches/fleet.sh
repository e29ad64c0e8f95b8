#!/usr/bin/env bash
# Measurement 3: the master's CPU when fed by 100 simulated workers (worker/examples/fake_fleet.rs),
# each sending one report per second with 50 request names (a V2+DEFLATE latency histogram of
# ~1000 samples and 3 counters per name). Master on core 0, fleet on core 1. The master's CPU is
# read from /proc/PID/stat (utime+stime) once a second; printed: the average over the run window
# (from the run's start to its end) and the busiest second. Set OUT=1 to also write results
# (--out) and count what the master's CPU then includes.
source "$(dirname "$0")/common.sh"
N="${N:-100}"; NAMES="${NAMES:-50}"; SAMPLES="${SAMPLES:-1000}"; DUR="${DUR:-30}"; PORT="${PORT:-7401}"
TMP="$(scratch)"
FLEET="$ROOT/target/release/examples/fake_fleet"
(cd "$ROOT" && cargo build --release -q -p stampede-worker --example fake_fleet)
{
    echo 'name = "fleet"'
    echo 'target = "http://127.0.0.1:9"'
    echo "duration = \"${DUR}s\""
    echo '[load]'; echo 'model = "closed"'; echo 'users = 100'
    for i in $(seq 0 $((NAMES - 1))); do printf '[[requests]]\nname = "n%d"\npath = "/n%d"\n' "$i" "$i"; done
} >"$TMP/s.toml"
OUTARGS=(); [ "${OUT:-0}" = 1 ] && OUTARGS=(--out "$TMP/out")
machine
wait_quiet
echo
TICK=$(getconf CLK_TCK)
taskset -c 0 "$STAMPEDE" master --bind 127.0.0.1:$PORT --expect-workers "$N" \
    --scenario "$TMP/s.toml" --headless --duration "${DUR}s" "${OUTARGS[@]}" >"$TMP/master.out" 2>"$TMP/master.err" &
MPID=$!; FPID=""
trap 'kill $MPID $FPID 2>/dev/null; rm -rf "$TMP"' EXIT
sleep 0.5
taskset -c 1 "$FLEET" 127.0.0.1:$PORT "$STAMPEDE_TOKEN" "$N" "$NAMES" "$SAMPLES" >"$TMP/fleet.out" 2>&1 &
FPID=$!
# Wait for the run to start.
for _ in $(seq 300); do grep -q '^started run' "$TMP/fleet.out" && break; sleep 0.1; done
grep -q '^started run' "$TMP/fleet.out" || { cat "$TMP/fleet.out" "$TMP/master.err"; exit 1; }
idle_ticks=$(cpu_ticks $MPID)
sleep 1   # skip the start-up second (the run begins within it)
t0=$(date +%s.%N); c0=$(cpu_ticks $MPID); prev=$c0; peak=0
for _ in $(seq $((DUR - 1))); do
    sleep 1
    c=$(cpu_ticks $MPID 2>/dev/null) || break
    d=$((c - prev)); prev=$c; [ $d -gt $peak ] && peak=$d
    t1=$(date +%s.%N); c1=$c
done
rss=$(awk '/VmHWM/ {print $2/1024 " MB"}' /proc/$MPID/status 2>/dev/null || echo "?")
wait $MPID && mrc=0 || mrc=$?
wait $FPID || true
head -1 "$TMP/fleet.out"; tail -1 "$TMP/fleet.out"
echo "master exit code: $mrc; master CPU before the run (startup + 100 handshakes): $(awk -v c="$idle_ticks" -v t="$TICK" 'BEGIN{printf "%.2f s", c/t}')"
grep -iE '^ *(Aggregated|total)|requests' "$TMP/master.out" | head -5 || true
awk -v c0="$c0" -v c1="$c1" -v t0="$t0" -v t1="$t1" -v tk="$TICK" -v peak="$peak" -v rss="$rss" 'BEGIN{
    printf "master CPU during the run: %.2f s over %.1f s wall = %.1f %% of one core (busiest second: %d %%); master peak RSS %s\n",
        (c1-c0)/tk, t1-t0, 100*(c1-c0)/tk/(t1-t0), 100*peak/tk, rss }'
echo "goal: < 10 % of one core"
