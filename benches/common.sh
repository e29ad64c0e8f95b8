# Shared helpers for the benches/ scripts (sourced, not run).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STAMPEDE="${STAMPEDE:-$ROOT/target/release/stampede}"
RUNS="${RUNS:-3}"
# The token every master and worker of a bench shares (from the environment, not the process
# list; at least 16 bytes).
export STAMPEDE_TOKEN="${STAMPEDE_TOKEN:-stampede-bench-token}"

machine() {
    echo "== machine =="
    echo "nproc: $(nproc)"
    lscpu | head
    echo "kernel: $(uname -srm)"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
}

# Median of numbers given as arguments.
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

# utime+stime of PID in clock ticks.
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }

# Start `stampede target http` on core 1; sets TARGET_PID and TARGET_URL.
start_target() {
    local log; log="$(mktemp /var/tmp/stampede-target.XXXXXX)"
    taskset -c 1 "$STAMPEDE" target http --bind 127.0.0.1:0 "$@" >"$log" 2>&1 &
    TARGET_PID=$!
    for _ in $(seq 50); do
        TARGET_URL="$(grep -o 'http://[0-9.:]*' "$log" | head -1 || true)"
        [ -n "$TARGET_URL" ] && break
        sleep 0.1
    done
    [ -n "$TARGET_URL" ] || { cat "$log"; echo "target did not start" >&2; exit 1; }
}

# Start `stampede target llm ARGS` (after the first argument, SCRATCH) on core 1, its log in
# SCRATCH/target.log; sets TPID and URL. On exit the target is stopped and SCRATCH removed.
start_llm_target() {
    local log="$1/target.log"
    taskset -c 1 "$STAMPEDE" target llm --bind 127.0.0.1:0 "${@:2}" >"$log" 2>&1 &
    TPID=$!
    trap "kill \$TPID 2>/dev/null; wait \$TPID 2>/dev/null || true; rm -rf $(printf %q "$1")" EXIT
    for _ in $(seq 50); do URL="$(grep -o 'https\?://[0-9.:]*' "$log" | head -1 || true)"; [ -n "$URL" ] && break; sleep 0.1; done
    [ -n "$URL" ] || { cat "$log"; exit 1; }
}

# Busy jiffies of the whole machine so far (user+nice+system+irq+softirq of the `cpu` line).
busy_ticks() { awk '/^cpu / {print $2+$3+$4+$7+$8; exit}' /proc/stat; }

# A private scratch directory (not /tmp/tmp.*: other jobs on this machine clean those up).
scratch() { mktemp -d /var/tmp/stampede-bench.XXXXXX; }

# Percent of both cores busy over the next second (from /proc/stat).
busy_pct() {
    local a b
    a=($(head -1 /proc/stat)); sleep 1; b=($(head -1 /proc/stat))
    awk -v u1="${a[1]}" -v n1="${a[2]}" -v s1="${a[3]}" -v i1="${a[4]}" -v w1="${a[5]}" -v q1="${a[6]}" -v sq1="${a[7]}" \
        -v u2="${b[1]}" -v n2="${b[2]}" -v s2="${b[3]}" -v i2="${b[4]}" -v w2="${b[5]}" -v q2="${b[6]}" -v sq2="${b[7]}" \
        'BEGIN{busy=(u2+n2+s2+q2+sq2)-(u1+n1+s1+q1+sq1); tot=busy+(i2+w2)-(i1+w1); printf "%.0f", (tot > 0 ? 100*busy/tot : 0)}'
}

# Wait (up to QUIET_WAIT s, default 120) until the machine is idle (< QUIET_PCT %, default 10)
# so that other people's builds and tests do not disturb a measurement; says what it saw.
wait_quiet() {
    local deadline=$((SECONDS + ${QUIET_WAIT:-120})) b
    while :; do
        b=$(busy_pct)
        [ "$b" -lt "${QUIET_PCT:-10}" ] && { echo "(machine ${b}% busy before this run)"; return; }
        [ $SECONDS -ge $deadline ] && { echo "(WARNING: machine still ${b}% busy before this run: other jobs; figures may be disturbed)"; return; }
    done
}
