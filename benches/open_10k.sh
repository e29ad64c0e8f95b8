#!/usr/bin/env bash
# Measurement 2: open model, 10,000 req/s Poisson for 30 s against `stampede target http`.
# Target on core 1; the generator (`stampede run`: master + 1 worker process) on core 0.
# Prints, per run, the achieved rate (total_requests / duration_s) and the schedule lag
# percentiles from summary.json. RUNS (default 3) runs; PIN=0 runs the generator unpinned.
source "$(dirname "$0")/common.sh"
RATE="${RATE:-10k}"; DUR="${DUR:-30s}"; PIN="${PIN:-1}"
TMP="$(scratch)"
start_target
trap 'kill $TARGET_PID 2>/dev/null; wait $TARGET_PID 2>/dev/null; rm -rf "$TMP"' EXIT
cat >"$TMP/s.toml" <<TOML
name = "open-10k"
target = "$TARGET_URL"
duration = "$DUR"
[load]
model = "open"
rate = "$RATE"
arrival = "poisson"
[[requests]]
name = "index"
path = "/"
TOML
machine
echo "target: $TARGET_URL (pid $TARGET_PID, core 1); generator pinned to core 0: $PIN"
echo
PFX=(); [ "$PIN" = 1 ] && PFX=(taskset -c 0)
rates=(); p99s=()
for run in $(seq "$RUNS"); do
    rm -rf "$TMP/out"
    wait_quiet
    /usr/bin/time -o "$TMP/t" -f '%U %S %e' "${PFX[@]}" "$STAMPEDE" run "$TMP/s.toml" --rate "$RATE" --duration "$DUR" \
        --workers 1 --out "$TMP/out" >"$TMP/st.out" 2>&1 || { cat "$TMP/st.out"; exit 1; }
    line=$(python3 - "$TMP/out/summary.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
m = d["metrics"]; lag = d["schedule_lag_ms"] or {}
rate = m["total_requests"] / d["duration_s"]
fails = sum(f.get("count", 0) for f in d.get("failures", [])) if isinstance(d.get("failures"), list) else d.get("failures")
print(f"{rate:.1f} {lag.get('p99')} total_requests={m['total_requests']} duration_s={d['duration_s']:.3f} "
      f"achieved={rate:.1f}/s lag_ms: p50={lag.get('p50')} p90={lag.get('p90')} p99={lag.get('p99')} "
      f"p999={lag.get('p999')} max={lag.get('max')} latency p99_ms={m['latency']['p99_ms']} "
      f"error_rate={m['error_rate']} failures={fails}")
PY
)
    read -r rate p99 rest <<<"$line"
    read -r u s e <"$TMP/t"
    echo "run $run: $rest cpu=$(awk -v u="$u" -v s="$s" 'BEGIN{print u+s}')s wall=${e}s (load $(cut -d' ' -f1 /proc/loadavg))"
    rates+=("$rate"); p99s+=("$p99")
done
echo
echo "median achieved rate: $(median "${rates[@]}") req/s (goal: within 1 % of 10000)"
echo "median schedule lag p99: $(median "${p99s[@]}") ms (goal: < 1 ms)"
