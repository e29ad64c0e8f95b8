#!/usr/bin/env bash
# TLS measurements against nginx serving a 1 KiB file over TLS 1.3 (a certificate made here by
# openssl for a private CA): nginx on core 1, each generator on core 0, RUNS (default 3) runs
# each, DUR (default 10) s each; prints every run and the medians of requests per generator
# CPU-second. Sections (SECTIONS, default "h1 h2 handshake memory"):
#   h1         HTTPS keep-alive, HTTP/1.1, 50 connections: stampede vs wrk and oha
#   h2         HTTP/2 over TLS, 10 connections x 10 streams: stampede vs h2load (nghttp2-client)
#   handshake  a new TLS connection per request (connection: close), 50 at a time: stampede vs
#              oha --disable-keepalive and h2load --h1 with one request per client
#   memory     10,000 closed-model users over HTTPS on one worker: the worker's peak RSS
# Needs nginx, wrk, h2load, openssl, /usr/bin/time; oha optional (~/.cargo/bin/oha). Build
# first: cargo build --release.
source "$(dirname "$0")/common.sh"
PORT="${PORT:-18443}"
DUR="${DUR:-10}"
SECTIONS="${SECTIONS:-h1 h2 handshake memory}"
OHA="$(command -v oha || echo "$HOME/.cargo/bin/oha")"
[ -x "$OHA" ] || OHA=""

TMP="$(scratch)"; chmod 755 "$TMP"
head -c 1024 /dev/urandom | base64 -w0 | head -c 1024 >"$TMP/1k"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=bench-ca -keyout "$TMP/ca.key" -out "$TMP/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=localhost \
    -keyout "$TMP/key.pem" -out "$TMP/leaf.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$TMP/ext"
openssl x509 -req -in "$TMP/leaf.csr" -CA "$TMP/ca.pem" -CAkey "$TMP/ca.key" -CAcreateserial \
    -days 2 -extfile "$TMP/ext" -out "$TMP/cert.pem" 2>/dev/null
cat >"$TMP/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $TMP/nginx.pid;
error_log $TMP/error.log warn;
events { worker_connections 16384; }
worker_rlimit_nofile 32768;
http {
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 65s;
    http2_max_concurrent_streams 128;
    ssl_protocols TLSv1.3;
    ssl_session_cache off;
    ssl_session_tickets off;
    server {
        listen 127.0.0.1:$PORT ssl http2 backlog=16384;
        ssl_certificate $TMP/cert.pem;
        ssl_certificate_key $TMP/key.pem;
        location = /1k { root $TMP; default_type application/octet-stream; }
    }
}
CONF
URL="https://localhost:$PORT/1k"
ulimit -n 65536 2>/dev/null || true

taskset -c 1 nginx -c "$TMP/nginx.conf" &
NGINX_PID=$!
trap 'kill $NGINX_PID 2>/dev/null; wait $NGINX_PID 2>/dev/null; rm -rf "$TMP"' EXIT
for _ in $(seq 50); do curl -sf --cacert "$TMP/ca.pem" -o /dev/null "$URL" && break; sleep 0.1; done
[ "$(curl -s --cacert "$TMP/ca.pem" "$URL" | wc -c)" = 1024 ] || { echo "nginx not serving 1k over TLS" >&2; exit 1; }
NGINX_WORKER=$(pgrep -P "$NGINX_PID" | head -1)

machine
echo "nginx $(nginx -v 2>&1 | sed 's/.*: //'), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), $(h2load --version | head -1)${OHA:+, $("$OHA" --version)}"
echo "stampede $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)"

declare -A RPS CPS
TICK=$(getconf CLK_TCK)
snap() { B0=$(busy_ticks); N0=$(cpu_ticks "$NGINX_WORKER"); }
record() { # label requests user sys
    local cpu rps cps others ngx
    cpu=$(awk -v u="$3" -v s="$4" 'BEGIN{print u+s}')
    ngx=$(awk -v a="$N0" -v b="$(cpu_ticks "$NGINX_WORKER")" -v t="$TICK" 'BEGIN{printf "%.2f", (b-a)/t}')
    others=$(awk -v a="$B0" -v b="$(busy_ticks)" -v t="$TICK" -v c="$cpu" -v n="$ngx" 'BEGIN{o=(b-a)/t-c-n; printf "%.2f", (o < 0 ? 0 : o)}')
    rps=$(awk -v r="$2" -v w="$DUR" 'BEGIN{printf "%.0f", r/w}')
    cps=$(awk -v r="$2" -v c="$cpu" 'BEGIN{printf "%.0f", (c > 0 ? r/c : 0)}')
    printf '%-18s requests=%-8s user=%-6s sys=%-6s cpu=%-6s req/s=%-7s req/cpu-s=%-7s nginx-cpu=%-5s others-cpu=%s\n' \
        "$1" "$2" "$3" "$4" "$cpu" "$rps" "$cps" "$ngx" "$others"
    RPS[$1]+="$rps "; CPS[$1]+="$cps "
}
timed() { /usr/bin/time -o "$TMP/t" -f '%U %S %e %M' taskset -c 0 "$@"; }

# A stampede scenario: users, [http] lines, extra request headers.
scenario() {
    cat >"$TMP/s.toml" <<TOML
name = "https-bench"
target = "https://localhost:$PORT"
duration = "${DUR}s"
[load]
model = "closed"
users = $1
spawn_rate = 100000
[http]
timeout = "10s"
$2
[tls]
ca = "$TMP/ca.pem"
[[requests]]
name = "1k"
path = "/1k"
$3
TOML
}
run_stampede() { # label
    rm -rf "$TMP/out"
    timed "$STAMPEDE" run "$TMP/s.toml" --workers 1 --out "$TMP/out" >"$TMP/st.out" 2>&1 \
        || { cat "$TMP/st.out"; exit 1; }
    local req fails
    req=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["metrics"]["total_requests"])' "$TMP/out/summary.json")
    fails=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["total"]["failures"])' "$TMP/out/summary.json")
    [ "$fails" = 0 ] || { echo "stampede: $fails failures"; grep -A5 Failures "$TMP/st.out"; }
    read -r u s _ _ <"$TMP/t"; record "$1" "$req" "$u" "$s"
}
oha_requests() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(sum(d["statusCodeDistribution"].values()))' "$1"; }
h2load_requests() { awk '/^requests:/ {print $8}' "$1"; }

for run in $(seq "$RUNS"); do
    echo; echo "-- run $run"
    for section in $SECTIONS; do
        case $section in
        h1)
            wait_quiet; snap
            timed wrk -t1 -c50 -d"${DUR}s" "$URL" >"$TMP/wrk.out"
            read -r u s _ _ <"$TMP/t"; record h1/wrk "$(awk '/requests in/ {print $1}' "$TMP/wrk.out")" "$u" "$s"
            if [ -n "$OHA" ]; then
                wait_quiet; snap
                timed "$OHA" -c 50 -z "${DUR}s" --no-tui --output-format json --cacert "$TMP/ca.pem" --http-version 1.1 "$URL" >"$TMP/oha.json"
                read -r u s _ _ <"$TMP/t"; record h1/oha "$(oha_requests "$TMP/oha.json")" "$u" "$s"
            fi
            scenario 50 'version = "1.1"' ''
            wait_quiet; snap; run_stampede h1/stampede
            ;;
        h2)
            wait_quiet; snap
            timed h2load -t1 -c10 -m10 -D"$DUR" "$URL" >"$TMP/h2load.out" 2>&1
            read -r u s _ _ <"$TMP/t"; record h2/h2load "$(h2load_requests "$TMP/h2load.out")" "$u" "$s"
            if [ -n "$OHA" ]; then
                wait_quiet; snap
                timed "$OHA" -c 10 -p 10 -z "${DUR}s" --no-tui --output-format json --cacert "$TMP/ca.pem" --http2 "$URL" >"$TMP/oha.json"
                read -r u s _ _ <"$TMP/t"; record h2/oha "$(oha_requests "$TMP/oha.json")" "$u" "$s"
            fi
            scenario 100 $'version = "2"\nconnections = 10' ''
            wait_quiet; snap; run_stampede h2/stampede
            ;;
        handshake)
            if [ -n "$OHA" ]; then
                wait_quiet; snap
                timed "$OHA" -c 50 -z "${DUR}s" --no-tui --output-format json --cacert "$TMP/ca.pem" --http-version 1.1 --disable-keepalive "$URL" >"$TMP/oha.json"
                read -r u s _ _ <"$TMP/t"; record handshake/oha "$(oha_requests "$TMP/oha.json")" "$u" "$s"
            fi
            # h2load has no per-request connection mode: rounds of 500 clients of one request
            # each (-n = -c), over HTTP/1.1; its rate is over the rounds' wall time.
            N=$(( 500 * 4 * DUR ))
            wait_quiet; snap
            /usr/bin/time -o "$TMP/t" -f '%U %S %e %M' taskset -c 0 bash -c \
                "for i in \$(seq $((N / 500))); do h2load --h1 -t1 -c500 -n500 -m1 '$URL' || exit 1; done" >"$TMP/h2load.out" 2>&1
            read -r u s e _ <"$TMP/t"
            req=$(awk '/^requests:/ {s+=$8} END {print s+0}' "$TMP/h2load.out")
            DUR_SAVED=$DUR; DUR=$e; record handshake/h2load "$req" "$u" "$s"; DUR=$DUR_SAVED
            scenario 50 'version = "1.1"' 'headers = { connection = "close" }'
            wait_quiet; snap; run_stampede handshake/stampede
            ;;
        memory)
            [ "$run" = 1 ] || continue
            scenario 10000 'version = "1.1"' ''
            sed -i 's/^spawn_rate = .*/spawn_rate = 2000/' "$TMP/s.toml"
            wait_quiet
            rm -rf "$TMP/out"
            taskset -c 0 "$STAMPEDE" run "$TMP/s.toml" --workers 1 --duration 20s --out "$TMP/out" >"$TMP/st.out" 2>&1 &
            RUN_PID=$!
            peak=0
            while kill -0 "$RUN_PID" 2>/dev/null; do
                for p in $(pgrep -f "stampede worker" || true); do
                    r=$(awk '/VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
                    [ "${r:-0}" -gt "$peak" ] && peak=$r
                done
                sleep 0.2
            done
            wait "$RUN_PID" || { cat "$TMP/st.out"; exit 1; }
            grep -A4 "^Failures" "$TMP/st.out" || true
            echo "memory: 10,000 users over HTTPS on one worker: peak worker RSS $((peak / 1024)) MiB;" \
                "$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1]))["metrics"]; print(m["total_requests"], "requests,", json.load(open(sys.argv[1]))["total"]["failures"], "failures")' "$TMP/out/summary.json")"
            ;;
        esac
    done
done

echo
echo "== medians over $RUNS runs (req/s over the duration; requests per generator CPU-second) =="
for label in h1/wrk h1/oha h1/stampede h2/h2load h2/oha h2/stampede handshake/oha handshake/h2load handshake/stampede; do
    [ -n "${CPS[$label]:-}" ] || continue
    # shellcheck disable=SC2086
    printf '%-18s req/s=%-7s req/cpu-s=%s\n' "$label" "$(median ${RPS[$label]})" "$(median ${CPS[$label]})"
done
ratio() { # a b
    [ -n "${CPS[$1]:-}" ] && [ -n "${CPS[$2]:-}" ] || return 0
    # shellcheck disable=SC2086
    printf '%s / %s (req/cpu-s): %s\n' "$1" "$2" "$(awk -v a="$(median ${CPS[$1]})" -v b="$(median ${CPS[$2]})" 'BEGIN{printf "%.2f", a/b}')"
}
ratio h1/stampede h1/wrk; ratio h1/stampede h1/oha
ratio h2/stampede h2/h2load; ratio h2/stampede h2/oha
ratio handshake/stampede handshake/oha; ratio handshake/stampede handshake/h2load
