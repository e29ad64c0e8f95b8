#!/usr/bin/env bash
# Measurement 1: requests per generator CPU-second against nginx serving a 1 KiB file.
# nginx on core 1, each generator on core 0, 50 connections, 10 s, RUNS (default 3) runs each;
# prints every run and the medians. Needs nginx, wrk, /usr/bin/time, and optionally oha
# (~/.cargo/bin/oha). Build first: cargo build --release.
source "$(dirname "$0")/common.sh"
PORT="${PORT:-18080}"
DUR=10
OHA="$(command -v oha || echo "$HOME/.cargo/bin/oha")"
[ -x "$OHA" ] || OHA=""

TMP="$(scratch)"; chmod 755 "$TMP"
head -c 1024 /dev/urandom | base64 -w0 | head -c 1024 >"$TMP/1k"
cat >"$TMP/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $TMP/nginx.pid;
error_log $TMP/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 65s;
    server {
        listen 127.0.0.1:$PORT;
        location = /1k { root $TMP; default_type application/octet-stream; }
    }
}
CONF
cat >"$TMP/s.toml" <<TOML
name = "nginx-1k"
target = "http://127.0.0.1:$PORT"
duration = "${DUR}s"
[load]
model = "closed"
users = 50
[[requests]]
name = "1k"
method = "GET"
path = "/1k"
TOML

taskset -c 1 nginx -c "$TMP/nginx.conf" &
NGINX_PID=$!
trap 'kill $NGINX_PID 2>/dev/null; wait $NGINX_PID 2>/dev/null; rm -rf "$TMP"' EXIT
for _ in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/1k" && break; sleep 0.1; done
[ "$(curl -s "http://127.0.0.1:$PORT/1k" | wc -c)" = 1024 ] || { echo "nginx not serving 1k" >&2; exit 1; }
NGINX_WORKER=$(pgrep -P "$NGINX_PID" | head -1)

machine
echo "nginx $(nginx -v 2>&1 | sed 's/.*: //'), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)${OHA:+, $("$OHA" --version)}"
echo "stampede $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)"
echo

declare -A RPS CPS
TICK=$(getconf CLK_TCK)
NGINX_WORKER=""
snap() { B0=$(busy_ticks); N0=$(cpu_ticks "$NGINX_WORKER"); }
record() { # tool requests user sys wall
    local cpu rps cps others ngx
    cpu=$(awk -v u="$3" -v s="$4" 'BEGIN{print u+s}')
    ngx=$(awk -v a="$N0" -v b="$(cpu_ticks "$NGINX_WORKER")" -v t="$TICK" 'BEGIN{printf "%.2f", (b-a)/t}')
    # CPU used by anything but the generator and nginx during the run: other people's jobs.
    others=$(awk -v a="$B0" -v b="$(busy_ticks)" -v t="$TICK" -v c="$cpu" -v n="$ngx" 'BEGIN{o=(b-a)/t-c-n; printf "%.2f", (o < 0 ? 0 : o)}')
    rps=$(awk -v r="$2" -v w="$DUR" 'BEGIN{printf "%.0f", r/w}')
    cps=$(awk -v r="$2" -v c="$cpu" 'BEGIN{printf "%.0f", r/c}')
    printf '%-9s requests=%-8s user=%-6s sys=%-6s wall=%-6s cpu=%-6s req/s=%-7s req/cpu-s=%-7s nginx-cpu=%-5s others-cpu=%s\n' \
        "$1" "$2" "$3" "$4" "$5" "$cpu" "$rps" "$cps" "$ngx" "$others"
    RPS[$1]+="$rps "; CPS[$1]+="$cps "
}

for run in $(seq "$RUNS"); do
    echo "-- run $run"
    wait_quiet; snap
    # wrk
    /usr/bin/time -o "$TMP/t" -f '%U %S %e' taskset -c 0 wrk -t1 -c50 -d${DUR}s "http://127.0.0.1:$PORT/1k" >"$TMP/wrk.out"
    req=$(awk '/requests in/ {print $1}' "$TMP/wrk.out")
    read -r u s e <"$TMP/t"; record wrk "$req" "$u" "$s" "$e"
    # oha
    if [ -n "$OHA" ]; then
        wait_quiet; snap
        /usr/bin/time -o "$TMP/t" -f '%U %S %e' taskset -c 0 "$OHA" -c 50 -z ${DUR}s --no-tui --output-format json "http://127.0.0.1:$PORT/1k" >"$TMP/oha.json"
        req=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(sum(d["statusCodeDistribution"].values()))' "$TMP/oha.json")
        read -r u s e <"$TMP/t"; record oha "$req" "$u" "$s" "$e"
    fi
    wait_quiet; snap
    # stampede: master + 1 worker process, all inheriting the core-0 affinity
    rm -rf "$TMP/out"
    /usr/bin/time -o "$TMP/t" -f '%U %S %e' taskset -c 0 "$STAMPEDE" run "$TMP/s.toml" --workers 1 --out "$TMP/out" >"$TMP/st.out" 2>&1 \
        || { cat "$TMP/st.out"; exit 1; }
    req=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["metrics"]["total_requests"])' "$TMP/out/summary.json")
    read -r u s e <"$TMP/t"; record stampede "$req" "$u" "$s" "$e"
done

echo
echo "== medians over $RUNS runs (req/s over the ${DUR}s duration; req per generator CPU-second) =="
for tool in wrk oha stampede; do
    [ -n "${CPS[$tool]:-}" ] || continue
    # shellcheck disable=SC2086
    printf '%-9s req/s=%-7s req/cpu-s=%s\n' "$tool" "$(median ${RPS[$tool]})" "$(median ${CPS[$tool]})"
done
# shellcheck disable=SC2086
st=$(median ${CPS[stampede]}); wr=$(median ${CPS[wrk]})
echo "stampede / wrk  (req/cpu-s): $(awk -v a="$st" -v b="$wr" 'BEGIN{printf "%.2f", a/b}')"
if [ -n "${CPS[oha]:-}" ]; then
    # shellcheck disable=SC2086
    oh=$(median ${CPS[oha]}); echo "stampede / oha  (req/cpu-s): $(awk -v a="$st" -v b="$oh" 'BEGIN{printf "%.2f", a/b}')"
fi
