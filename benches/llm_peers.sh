#!/usr/bin/env bash
# The highest rate one generator core sustains with measurement truth, beside guidellm and
# inference-perf in the same run. `stampede target llm` (first token after 200 ms, then one
# every 20 ms, exactly OUTPUT_TOKENS (default 64) tokens per answer, no batching slowdown) on
# core 1; each tool in turn on core 0 (taskset -c 0), open loop at constant arrivals, one step
# per rate in RATES for DUR seconds, streaming OpenAI /v1/completions. A short answer
# (OUTPUT_TOKENS=4) costs the target a sixteenth of the writes, so it keeps time at rates where
# 64-token answers overload its core: that finds the generator's own ceiling. Steps go rate by rate, the
# tools taking turns, so all see the same machine (each step waits for it to be idle: see
# wait_quiet); a tool stops climbing after STOP_AFTER steps in a row fail even the loose bar.
#
# Per step: the tool's own TTFT and TPOT (p50, p99), its own achieved rate (guidellm: its
# successful requests per second; inference-perf: its `achieved_rate`; stampede: its requests
# ÷ DUR, since its own req/s divides by the whole run, the last answers' 1.5 s included), its
# failures and the requests it cut at the end (guidellm cancels those in flight at DUR),
# beside the target's record of that step (reset before it): TTFT p50/p99 from the request read
# to the first token written, its per-request TPOT p50/p99 ((last token − first token) ÷
# (tokens − 1), as written: the TPOT truth, exact even when a loaded target is late), and the
# requests it received. A step passes when the target received within TOL_PCT % of rate × DUR
# requests in the first DUR s after the first one (polled 10 times a second), the tool reports
# no failed requests, and its TTFT and TPOT are within 2 ms of the truth at p50 and 5 ms at
# p99. The summary gives per tool the highest step with every step up to it passing, and the
# ratios; again within a loose bar (LOOSE, default 10/50: 10 ms at p50, 50 ms at p99), for a
# tool that meets the strict one at no rate. TPOT everywhere is (E2E − TTFT) / (tokens − 1)
# per request: stampede's `tpot`, guidellm's `inter_token_latency_ms` (its own "TPOT" column
# is E2E ÷ tokens, TTFT included), inference-perf's `time_per_output_token`.
#
# Tools: stampede (`run --workers 1`, master and worker process on core 0), guidellm (GUIDELLM,
# default `guidellm` on PATH; its defaults: 10 worker processes, all on core 0; 1 does worse),
# inference-perf (INFERENCE_PERF, default `inference-perf`; num_workers INFERENCE_PERF_WORKERS,
# default 1, since 2 does worse on one core; worker_max_concurrency 10000, since its default of
# 100 streams per worker caps it at 68 req/s here). The peers download nothing: both get
# scenarios/data/tiny-tokenizer.json as a local tokenizer (HF_HUB_OFFLINE=1) and synthetic
# prompts of 16 tokens.
#
# Example: DUR=15 GUIDELLM=/venv/bin/guidellm INFERENCE_PERF=/venv2/bin/inference-perf \
#              bash benches/llm_peers.sh
source "$(dirname "$0")/common.sh"
RATES="${RATES:-2 5 10 20 50 100 150 200 300 400 500 700 850 1000 1200 1500 2000 2500 3000 3500 4000}"
DUR="${DUR:-15}"; OUTPUT_TOKENS="${OUTPUT_TOKENS:-64}"; TOL_PCT="${TOL_PCT:-5}"; STOP_AFTER="${STOP_AFTER:-2}"; export LOOSE="${LOOSE:-10/50}"
TOOLS="${TOOLS:-stampede guidellm inference-perf}"
GUIDELLM="${GUIDELLM:-guidellm}"; INFERENCE_PERF="${INFERENCE_PERF:-inference-perf}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
TMP="$(scratch)"
start_llm_target "$TMP" --ttft 200ms --tpot 20ms --output-len max --max-batch 0 --batch-slope 0 \
    --precise-timing

# A local tokenizer for the peers (AutoTokenizer wants a directory).
mkdir -p "$TMP/tok"
cp "$ROOT/scenarios/data/tiny-tokenizer.json" "$TMP/tok/tokenizer.json"
echo '{"tokenizer_class": "PreTrainedTokenizerFast", "unk_token": "[UNK]", "model_max_length": 4096}' \
    >"$TMP/tok/tokenizer_config.json"

# The example scenario with OUTPUT_TOKENS as every request's max_tokens.
sed -e "s|^max_output_len = 64|max_output_len = $OUTPUT_TOKENS|" \
    -e "s|\"../data/prompts.txt\"|\"$ROOT/scenarios/data/prompts.txt\"|" \
    "$ROOT/scenarios/examples/llm-prompts.toml" >"$TMP/llm-prompts.toml"
grep -q "^max_output_len = $OUTPUT_TOKENS" "$TMP/llm-prompts.toml" || { echo "no max_output_len in the example" >&2; exit 1; }

pyversion() { "$(dirname "$(command -v "$1")")/python" -c \
    "import importlib.metadata as m; print(m.version('$2'))" 2>/dev/null || echo unknown; }
machine
echo "target: $URL (core 1); generators on core 0; rates: $RATES; $DUR s per step; $OUTPUT_TOKENS output tokens"
for tool in $TOOLS; do
    case $tool in
    stampede) echo "stampede: $("$STAMPEDE" --version)" ;;
    guidellm) echo "guidellm: $(pyversion "$GUIDELLM" guidellm) ($GUIDELLM)" ;;
    inference-perf) echo "inference-perf: $(pyversion "$INFERENCE_PERF" inference-perf) ($INFERENCE_PERF)" ;;
    *) echo "unknown tool $tool (stampede, guidellm or inference-perf)" >&2; exit 1 ;;
    esac
done

# One step of TOOL at RATE into $TMP/out; returns the tool's exit status.
run_step() {
    local tool=$1 rate=$2 out="$TMP/out"
    rm -rf "$out"; mkdir -p "$out"
    case $tool in
    stampede)
        taskset -c 0 "$STAMPEDE" run "$TMP/llm-prompts.toml" --target "$URL" \
            --backend openai --workers 1 --rate "$rate" --arrival constant --duration "${DUR}s" \
            --out "$out/res" ;;
    guidellm)
        taskset -c 0 "$GUIDELLM" run \
            --backend "kind=openai_http,target=$URL,model=stampede-sim,request_format=/v1/completions,max_tokens=$OUTPUT_TOKENS" \
            --profile "kind=constant,rate=$rate" --constraint "kind=max_duration,seconds=$DUR" \
            --tokenizer "kind=huggingface_auto,model=$TMP/tok" \
            --data kind=synthetic_text,prompt_tokens=16,output_tokens=$OUTPUT_TOKENS \
            --output "kind=json,path=$out/guidellm.json" --disable-console-interactive ;;
    inference-perf)
        cat >"$out/config.yaml" <<EOF
api: {type: completion, streaming: true}
server: {type: vllm, model_name: stampede-sim, base_url: "$URL", ignore_eos: true}
tokenizer: {pretrained_model_name_or_path: "$TMP/tok"}
data:
  type: synthetic
  corpus_file_path: "$ROOT/scenarios/data/prompts.txt"
  input_distribution: {min: 16, max: 16, mean: 16, std_dev: 0, total_count: $((rate * DUR + 100)), type: fixed}
  output_distribution: {min: $OUTPUT_TOKENS, max: $OUTPUT_TOKENS, mean: $OUTPUT_TOKENS, std_dev: 0, total_count: $((rate * DUR + 100)), type: fixed}
load:
  type: constant
  stages: [{rate: $rate, duration: $DUR}]
  num_workers: ${INFERENCE_PERF_WORKERS:-1}
  worker_max_concurrency: 10000
report: {request_lifecycle: {summary: true, per_stage: true}}
storage: {local_storage: {path: "$out/res"}}
EOF
        taskset -c 0 "$INFERENCE_PERF" --config_file "$out/config.yaml" ;;
    esac
}

# The target's request count, 10 times a second (on the target's core), so that the rate is
# the one the target saw: requests received in the first DUR s after the first one, whatever
# the tool says (a tool that falls behind may send the rest of its requests later).
cat >"$TMP/poll.py" <<'PY'
import json, sys, time, urllib.request
url, path = sys.argv[1], sys.argv[2]
with open(path, "w") as f:
    while True:
        t = time.monotonic()
        try:
            n = json.load(urllib.request.urlopen(url + "/__stampede/stats", timeout=2))["requests"]
            f.write(f"{t:.4f} {n}\n")
            f.flush()
        except OSError:
            pass
        time.sleep(max(0.0, 0.1 - (time.monotonic() - t)))
PY

cat >"$TMP/judge.py" <<'PY'
import json, os, sys
tool, rate, dur, tol, out, truth_path, load, busy, rc, poll_path = sys.argv[1:11]
rate, dur, tol = float(rate), float(dur), float(tol)
LOOSE_P50, LOOSE_P99 = (float(x) for x in os.environ["LOOSE"].split("/"))
t = json.load(open(truth_path))
# Requests the target received in the first `dur` s after the first one, which came between
# the last poll that saw none and the next (taken as halfway); counts between polls are
# interpolated linearly.
polls = [tuple(map(float, l.split())) for l in open(poll_path) if len(l.split()) == 2]
def count_at(x):
    for (t0, n0), (t1, n1) in zip(polls, polls[1:]):
        if t0 <= x <= t1:
            return n0 + (n1 - n0) * (x - t0) / (t1 - t0)
    return polls[-1][1] if polls and x > polls[-1][0] else 0.0
first = next((i for i, (t, n) in enumerate(polls) if n > 0), None)
if first is None:
    in_window = 0.0
else:
    start = (polls[first - 1][0] + polls[first][0]) / 2 if first else polls[0][0]
    in_window = count_at(start + dur)
row = {"server_rate": in_window / dur, "tool": tool, "rate": rate, "load1": float(load), "busy_pct": int(busy), "rc": int(rc),
       "server_requests": t["requests"], "server_cancelled": t.get("cancelled", 0),
       "truth_ttft_p50": t["ttft"]["p50_us"] / 1000, "truth_ttft_p99": t["ttft"]["p99_us"] / 1000,
       "truth_tpot": t["itl"]["mean_us"] / 1000, "lateness_p99": t["lateness"]["p99_us"] / 1000,
       "truth_tpot_p50": t["tpot"]["p50_us"] / 1000, "truth_tpot_p99": t["tpot"]["p99_us"] / 1000}
try:
    if tool == "stampede":
        s = json.load(open(f"{out}/res/summary.json"))
        llm, tot = s["llm"], s["total"]
        row.update(ok=tot["requests"] - tot["failures"], failed=tot["failures"],
                   incomplete=0, own_rate=tot["requests"] / dur,
                   ttft_p50=llm["ttft_ms"]["p50"], ttft_p99=llm["ttft_ms"]["p99"],
                   tpot_p50=llm["tpot_ms"]["p50"], tpot_p99=llm["tpot_ms"]["p99"])
    elif tool == "guidellm":
        m = json.load(open(f"{out}/guidellm.json"))["benchmarks"][0]["metrics"]
        tot = m["request_totals"]
        p = lambda k, q: m[k]["successful"]["percentiles"][q]
        row.update(ok=tot["successful"], failed=tot["errored"], incomplete=tot["incomplete"],
                   own_rate=m["requests_per_second"]["successful"]["mean"],
                   ttft_p50=p("time_to_first_token_ms", "p50"), ttft_p99=p("time_to_first_token_ms", "p99"),
                   tpot_p50=p("inter_token_latency_ms", "p50"), tpot_p99=p("inter_token_latency_ms", "p99"))
    elif tool == "inference-perf":
        s = json.load(open(f"{out}/res/stage_0_lifecycle_metrics.json"))
        lat = s["successes"]["latency"]
        row.update(ok=s["successes"]["count"], failed=s["failures"]["count"], incomplete=0,
                   own_rate=s["load_summary"]["achieved_rate"],
                   ttft_p50=lat["time_to_first_token"]["median"] * 1000,
                   ttft_p99=lat["time_to_first_token"]["p99"] * 1000,
                   tpot_p50=lat["time_per_output_token"]["median"] * 1000,
                   tpot_p99=lat["time_per_output_token"]["p99"] * 1000)
except (OSError, KeyError, IndexError, TypeError, ValueError) as e:
    row.update(error=f"no result ({type(e).__name__}: {e})")
def judge(p50, p99):
    """What keeps the step from passing with TTFT/TPOT bounds of p50 and p99 ms."""
    if "error" in row:
        return [row["error"]]
    why = []
    got = row["server_rate"]
    if abs(got - rate) > rate * tol / 100:
        why.append(f"rate {got:.1f}")
    if row["failed"]:
        why.append(f"{row['failed']} failed")
    for k, lim, truth in (("ttft_p50", p50, "truth_ttft_p50"), ("ttft_p99", p99, "truth_ttft_p99"),
                          ("tpot_p50", p50, "truth_tpot_p50"), ("tpot_p99", p99, "truth_tpot_p99")):
        d = row[k] - row[truth]
        if abs(d) > lim:
            why.append(f"{k.replace('_', ' ').upper()} {d:+.1f}")
    return why
why = judge(2, 5)
row["pass"] = not why
row["why"] = ", ".join(why)
row["loose_pass"] = not judge(LOOSE_P50, LOOSE_P99)
with open(os.environ["STEPS"], "a") as f:
    f.write(json.dumps(row) + "\n")
r = row
if "error" in r:
    print(f"  {tool} @ {rate:g}/s: FAIL ({r['why']}); target got {r['server_requests']} requests")
else:
    print(f"  {tool} @ {rate:g}/s: {'pass' if r['pass'] else 'FAIL (' + r['why'] + ')'}"
          f"{'' if r['pass'] else ' (loose bar: ' + ('pass' if r['loose_pass'] else 'fail') + ')'}; "
          f"target got {r['server_rate']:.1f}/s in the first {dur:g} s ({r['server_requests']} in all), tool says {r['own_rate']:.1f}/s, "
          f"{r['ok']} ok / {r['failed']} failed / {r['incomplete']} cut at the end; "
          f"TTFT p50 {r['ttft_p50']:.2f} ({r['ttft_p50'] - r['truth_ttft_p50']:+.2f}) "
          f"p99 {r['ttft_p99']:.2f} ({r['ttft_p99'] - r['truth_ttft_p99']:+.2f}); "
          f"TPOT p50 {r['tpot_p50']:.3f} p99 {r['tpot_p99']:.3f} (truth {r['truth_tpot_p50']:.3f} / {r['truth_tpot_p99']:.3f}); "
          f"target lateness p99 {r['lateness_p99']:.1f} ms")
PY

export STEPS="$TMP/steps.jsonl"
: >"$STEPS"
declare -A fails_in_row
for tool in $TOOLS; do fails_in_row[$tool]=0; done
for rate in $RATES; do
    echo
    echo "== $rate req/s =="
    for tool in $TOOLS; do
        [ "${fails_in_row[$tool]}" -ge "$STOP_AFTER" ] && continue
        wait_quiet >/dev/null
        busy=$(busy_pct); load=$(cut -d' ' -f1 /proc/loadavg)
        echo "  ($tool: load average $load, machine ${busy}% busy before the step)"
        curl -s -X POST "$URL/__stampede/stats/reset" >/dev/null
        rm -f "$TMP/poll.txt"
        taskset -c 1 python3 "$TMP/poll.py" "$URL" "$TMP/poll.txt" &
        poller=$!
        sleep 0.3
        rc=0
        timeout $((DUR * 4 + 180)) bash -c "$(declare -f run_step); $(declare -p TMP URL DUR ROOT STAMPEDE GUIDELLM INFERENCE_PERF OUTPUT_TOKENS); run_step $tool $rate" \
            >"$TMP/tool.log" 2>&1 || rc=$?
        kill $poller; wait $poller 2>/dev/null || true
        curl -s "$URL/__stampede/stats" >"$TMP/truth.json"
        python3 "$TMP/judge.py" "$tool" "$rate" "$DUR" "$TOL_PCT" "$TMP/out" "$TMP/truth.json" "$load" "$busy" "$rc" "$TMP/poll.txt"
        if tail -1 "$STEPS" | grep -q '"loose_pass": true'; then
            fails_in_row[$tool]=0
        else
            fails_in_row[$tool]=$((fails_in_row[$tool] + 1))
            [ $rc -ne 0 ] && { echo "  $tool exited with $rc; its last lines:"; tail -5 "$TMP/tool.log" | sed 's/^/    /'; }
        fi
    done
done

echo
echo "== summary =="
python3 - "$STEPS" $TOOLS <<'PY'
import json, os, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
tools = sys.argv[2:]
for key, bar in (("pass", "2 ms at p50, 5 ms at p99"), ("loose_pass", f"loose bar: {os.environ['LOOSE'].replace('/', ' ms at p50, ')} ms at p99")):
    print(f"-- within {bar} (and the rate within tolerance, no failures) --")
    best = {}
    for tool in tools:
        mine = sorted((r for r in rows if r["tool"] == tool), key=lambda r: r["rate"])
        # The highest step with every step up to it passing (a lone pass above a failure,
        # in the noise at the edge, does not count; it is shown in the list).
        held = None
        for r in mine:
            if not r[key]:
                break
            held = r["rate"]
        best[tool] = held
        tried = ", ".join(f"{r['rate']:g}{'' if r[key] else ' fail'}" for r in mine)
        head = f"sustained up to {held:g} req/s" if held else "no step passed from the lowest up"
        print(f"{tool}: {head} (steps: {tried})")
    s = best.get("stampede")
    for tool in tools:
        if tool != "stampede" and s and best.get(tool):
            print(f"ratio stampede / {tool}: {s / best[tool]:.1f}x ({s:g} / {best[tool]:g})")
PY
