#!/usr/bin/env bash
# LLM measurement truth: `stampede target llm` emitting the first token after 200 ms and then
# one every 20 ms (fixed, no batching slowdown, no batch limit, exactly 64 tokens per answer)
# on core 1; `stampede run` (master + 1 worker process) with 500 concurrent streams on core 0.
# For each streaming backend (JetStream's gRPC included), prints the client's TTFT and TPOT (p50, p99) beside the server's
# own record of what it emitted (TTFT from the request's arrival at its socket, a kernel
# receive timestamp, to the first token written; the
# mean inter-token gap), and the differences. Goal: within 2 ms at p50 and 5 ms at p99.
# TLS=1: the target serves HTTPS (a self-signed certificate the run trusts with --ca) and the
# client's TTFT/TPOT over TLS are compared with the same server record (the HTTP backends only:
# the target's JetStream gRPC side stays plaintext).
source "$(dirname "$0")/common.sh"
USERS="${USERS:-500}"; DUR="${DUR:-20s}"; BACKENDS="${BACKENDS:-openai openai-chat vllm tgi triton jetstream}"
TMP="$(scratch)"
TLS_ARGS=(); RUN_TLS=(); CURL_TLS=()
if [ "${TLS:-0}" = 1 ]; then
    TLS_ARGS=(--tls --cert-out "$TMP/ca.pem"); RUN_TLS=(--ca "$TMP/ca.pem"); CURL_TLS=(--cacert "$TMP/ca.pem")
    BACKENDS="${BACKENDS/jetstream/}"
fi
start_llm_target "$TMP" --ttft 200ms --tpot 20ms --output-len max --max-batch 0 --batch-slope 0 \
    --precise-timing --grpc-bind 127.0.0.1:0 "${TLS_ARGS[@]}"
# JetStream's gRPC API is on its own port (the second URL the target prints).
for _ in $(seq 50); do GRPC_URL="$(grep 'JetStream gRPC' "$TMP/target.log" | grep -o 'http://[0-9.:]*' || true)"; [ -n "$GRPC_URL" ] && break; sleep 0.1; done
ADDR="${URL#http*://}"
machine
echo "target: $URL (core 1); generator: stampede run --workers 1 --users $USERS (core 0)"
for backend in $BACKENDS; do
    echo
    curl -s "${CURL_TLS[@]}" -X POST "$URL/__stampede/stats/reset" >/dev/null
    rm -rf "$TMP/out"
    wait_quiet
    target="$URL"; [ "$backend" = jetstream ] && target="$GRPC_URL"
    taskset -c 0 "$STAMPEDE" run "$ROOT/scenarios/examples/llm-prompts.toml" --target "$target" \
        --backend "$backend" --workers 1 --users "$USERS" --spawn-rate 1000 --duration "$DUR" \
        --out "$TMP/out" "${RUN_TLS[@]}" >"$TMP/run.out" 2>&1 || true
    curl -s "${CURL_TLS[@]}" "$URL/__stampede/stats" >"$TMP/truth.json"
    python3 - "$backend" "$TMP/out/summary.json" "$TMP/truth.json" <<'PY'
import json, sys
backend, summary, truth = sys.argv[1], json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
llm = summary["llm"]; t = truth
c_ttft, c_tpot = llm["ttft_ms"], llm["tpot_ms"]
s_ttft = {k: t["ttft"][f"{k}_us"] / 1000 for k in ("p50", "p99")}
s_itl_mean = t["itl"]["mean_us"] / 1000
print(f"{backend}: {summary['total']['requests']} requests, {summary['total']['failures']} failures, "
      f"output tokens {llm['output_tokens']} (server {t['completion_tokens']})")
for k in ("p50", "p99"):
    print(f"  TTFT {k}: client {c_ttft[k]:.2f} ms, server {s_ttft[k]:.2f} ms, diff {c_ttft[k]-s_ttft[k]:+.2f} ms")
for k in ("p50", "p99"):
    print(f"  TPOT {k}: client {c_tpot[k]:.3f} ms, server {t['tpot'][k + '_us'] / 1000:.3f} ms (mean gap {s_itl_mean:.3f}), diff {c_tpot[k] - t['tpot'][k + '_us'] / 1000:+.3f} ms")
print(f"  server emission lateness p50 {t['lateness']['p50_us']/1000:.2f} ms p99 {t['lateness']['p99_us']/1000:.2f} ms")
PY
done
