#!/usr/bin/env bash
# The MLPerf-LoadGen priority runner's traffic: `stampede loadgen` at 200 qps total (balanced
# workload, 9 classes) across 2 local worker processes for DUR_MS (default 60000) against
# `stampede target scheduler` (a separate process, 8 simulated GPUs so the scheduler is not the
# bottleneck). Prints per class the achieved count (CSV rows) against the nominal count (200 ×
# share) with its Poisson standard deviation and against the arrivals the generator drew (which
# completed requests must equal exactly), the schedule lag percentiles, and the CPU per request of
# the whole generator (loadgen master + both workers, tensor included). Then, in the same run, the
# runner's Python approach (`loadgen_runner.py`): numpy.random.rand(1,3,224,224)
# .astype(float32).flatten().tolist() into the InferRequest and SerializeToString(), the CPU per
# request of that alone (no gRPC send: a lower bound for the runner). PY (default python3) must have
# numpy and protobuf.
source "$(dirname "$0")/common.sh"
QPS="${QPS:-200}"; DUR_MS="${DUR_MS:-60000}"; PY="${PY:-python3}"
TMP="$(scratch)"
log="$TMP/sched.log"
"$STAMPEDE" target scheduler --bind 127.0.0.1:0 --gpus 8 >"$log" 2>&1 &
SCHED_PID=$!
trap 'kill -INT $SCHED_PID 2>/dev/null; wait $SCHED_PID 2>/dev/null; rm -rf "$TMP"' EXIT
for _ in $(seq 50); do
    ADDR="$(grep -o 'on [0-9.]*:[0-9]*' "$log" | head -1 | cut -c4- || true)"
    [ -n "$ADDR" ] && break
    sleep 0.1
done
[ -n "$ADDR" ] || { cat "$log"; echo "scheduler did not start" >&2; exit 1; }
machine
echo "scheduler: $ADDR (pid $SCHED_PID, 8 GPUs); loadgen: $QPS qps balanced, ${DUR_MS} ms, 2 workers"
echo
wait_quiet
/usr/bin/time -o "$TMP/t" -f '%U %S %e' "$STAMPEDE" loadgen --scheduler-url "$ADDR" \
    --total-qps "$QPS" --duration-ms "$DUR_MS" --min-query-count 0 --workers 2 \
    --output-dir "$TMP/logs" --metrics-csv "$TMP/metrics.csv" >"$TMP/lg.out" 2>"$TMP/lg.err" \
    || { cat "$TMP/lg.out" "$TMP/lg.err"; exit 1; }
cat "$TMP/lg.out"
read -r user sys wall <"$TMP/t"
"$PY" - "$TMP/logs/summary.json" "$TMP/metrics.csv" "$QPS" "$DUR_MS" "$user" "$sys" "$wall" <<'PY'
import csv, json, math, sys
summary, path = sys.argv[1], sys.argv[2]
qps, dur_ms, user, sys_, wall = map(float, sys.argv[3:])
d = json.load(open(summary))
shares = [0.05, 0.10, 0.15, 0.10, 0.15, 0.10, 0.10, 0.15, 0.10]
names = [f"tier{t}_{s}" for t in (1, 2, 3) for s in ("urgent", "normal", "relaxed")]
counts = dict.fromkeys(names, 0)
rows = 0
for r in csv.DictReader(open(path)):
    counts[f"tier{r['tier']}_{r['slo']}"] += 1
    rows += 1
# Per class: the requests completed (CSV rows) against the arrivals the generator drew (the
# driver's `scheduled` counter: equal unless a request was dropped or lost), and the drawn
# arrivals against the nominal count (rate × duration) with its Poisson sigma. With
# --min-query-count 0 each class ends at its first arrival at or past the duration (one more
# per worker than the nominal window holds: LoadGen's end rule).
dur = dur_ms / 1000
drawn = {r["name"]: r["counters"].get("scheduled", 0) for r in d["requests"]}
print(f"rows {rows}, arrivals over {dur:.1f} s (run {d['duration_s']:.3f} s with the last answers), "
      f"failures {d['total']['failures']}, slo_met {d['total']['counters'].get('slo_met')}")
print(f"{'class':<14} {'nominal':>8} {'drawn':>6} {'completed':>9} {'done-drawn':>10} "
      f"{'drawn-nominal %':>15} {'1 sigma %':>9} {'sigmas':>6}")
tot_nom = tot_drawn = 0
for n, s in zip(names, shares):
    nominal = qps * s * dur
    k = drawn.get(n, 0)
    tot_nom += nominal; tot_drawn += k
    print(f"{n:<14} {nominal:8.0f} {k:6d} {counts[n]:9d} {counts[n] - k:10d} "
          f"{100 * (k - nominal) / nominal:15.2f} {100 / math.sqrt(nominal):9.2f} {(k - nominal) / math.sqrt(nominal):6.2f}")
print(f"{'all':<14} {tot_nom:8.0f} {tot_drawn:6d} {rows:9d} {rows - tot_drawn:10d} "
      f"{100 * (tot_drawn - tot_nom) / tot_nom:15.2f} {100 / math.sqrt(tot_nom):9.2f} {(tot_drawn - tot_nom) / math.sqrt(tot_nom):6.2f}")
lag = d.get("schedule_lag_ms") or {}
print("schedule lag ms: " + " ".join(f"{k}={lag.get(k)}" for k in ("p50", "p90", "p99", "p999", "max") if k in lag))
print(f"generator CPU: user {user:.2f} s + sys {sys_:.2f} s over {wall:.1f} s wall = "
      f"{1e6 * (user + sys_) / rows:.0f} us per request ({100 * (user + sys_) / wall:.1f} % of one core)")
PY
echo
echo "== the MLPerf-LoadGen priority runner's approach (Python, same machine, same run) =="
"$PY" - <<'PY'
import resource, time
import numpy
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
# scheduler.InferRequest built from a descriptor (no protoc needed), fields as in the runner's
# scheduler.proto.
f = descriptor_pb2.FileDescriptorProto(name="scheduler.proto", package="scheduler", syntax="proto3")
m = f.message_type.add(name="InferRequest")
T = descriptor_pb2.FieldDescriptorProto
for name, num, typ, rep in [("tier", 1, T.TYPE_INT32, False), ("deadline_ns", 2, T.TYPE_INT64, False),
                            ("model_name", 3, T.TYPE_STRING, False), ("input_tensor", 4, T.TYPE_FLOAT, True),
                            ("input_shape", 5, T.TYPE_INT32, True)]:
    m.field.add(name=name, number=num, type=typ, label=T.LABEL_REPEATED if rep else T.LABEL_OPTIONAL)
pool = descriptor_pool.DescriptorPool(); pool.Add(f)
InferRequest = message_factory.GetMessageClass(pool.FindMessageTypeByName("scheduler.InferRequest"))
from google.protobuf.internal import api_implementation
SHAPE = [1, 3, 224, 224]
N = 100
def one():
    tensor = numpy.random.rand(*SHAPE).astype(numpy.float32)
    req = InferRequest(tier=1, deadline_ns=time.time_ns() + 100_000_000, model_name="resnet50",
                       input_tensor=tensor.flatten().tolist(), input_shape=SHAPE)
    return req.SerializeToString()
one()
r0 = resource.getrusage(resource.RUSAGE_SELF); t0 = time.perf_counter()
for _ in range(N):
    b = one()
r1 = resource.getrusage(resource.RUSAGE_SELF); t1 = time.perf_counter()
cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
print(f"numpy {numpy.__version__}, protobuf backend {api_implementation.Type()}: {len(b)} bytes per request")
print(f"rand + astype + flatten().tolist() + InferRequest + SerializeToString: "
      f"{1e6 * cpu / N:.0f} us CPU per request ({1e6 * (t1 - t0) / N:.0f} us wall), N={N}")
print(f"at 200 qps that is {200 * cpu / N * 100:.0f} % of one core before any gRPC send")
PY
