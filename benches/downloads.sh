#!/usr/bin/env bash
# The ACME performance track's workload against nginx on loopback: 100 clients × a 24,834,009-byte
# file, all at once, in one run each of: stampede (download scenario, mode "once", 2 local workers),
# curl run 100 times in parallel, and hey (-n 100 -c 100); then back-to-back downloads for 10 s with
# 100 connections: wrk (-c100) beside stampede (mode "repeat"). Prints aggregate bytes/s for each
# and the stampede worker's peak RSS. RUNS (default 1) repetitions, interleaved.
# Needs nginx, curl, hey, wrk, /usr/bin/time, python3. Build first: cargo build --release.
source "$(dirname "$0")/common.sh"
PORT="${PORT:-18081}"
SIZE=24834009
CLIENTS=100
RUNS="${RUNS:-1}"

TMP="$(scratch)"; chmod 755 "$TMP"
head -c "$SIZE" /dev/urandom >"$TMP/model.zip"
cat >"$TMP/nginx.conf" <<CONF
worker_processes 2;
daemon off;
pid $TMP/nginx.pid;
error_log $TMP/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$PORT;
        location /performance/ { alias $TMP/; default_type application/zip; }
    }
}
CONF
URL="http://127.0.0.1:$PORT/performance/model.zip"
scenario() { # mode duration
    cat <<TOML
name = "nginx-downloads"
target = "http://127.0.0.1:$PORT"
kind = "download"
duration = "$2"
[load]
model = "simultaneous"
users = $CLIENTS
mode = "$1"
[download]
path = "/performance/model.zip"
expected_bytes = $SIZE
timeout = "120s"
TOML
}
scenario once 120s >"$TMP/once.toml"
scenario repeat 10s >"$TMP/repeat.toml"

nginx -c "$TMP/nginx.conf" &
NGINX_PID=$!
trap 'kill $NGINX_PID 2>/dev/null; wait $NGINX_PID 2>/dev/null; rm -rf "$TMP"' EXIT
for _ in $(seq 50); do curl -sf -o /dev/null "$URL" && break; sleep 0.1; done
[ "$(curl -s "$URL" | wc -c)" = "$SIZE" ] || { echo "nginx not serving the file" >&2; exit 1; }

machine
echo "nginx $(nginx -v 2>&1 | sed 's/.*: //'), $(curl --version | head -1 | cut -d' ' -f1-2), hey, $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
echo "stampede $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)"
echo

rate() { awk -v b="$1" -v s="$2" 'BEGIN{printf "%.0f", b/s}'; }
mbps() { awk -v r="$1" 'BEGIN{printf "%.1f", r/1048576}'; }
report() { printf '%-22s bytes=%-11s seconds=%-8s bytes/s=%-11s MB/s=%s %s\n' "$1" "$2" "$3" "$(rate "$2" "$3")" "$(mbps "$(rate "$2" "$3")")" "${4:-}"; }

# stampede: a master and 2 worker processes; the workers' peak RSS from /usr/bin/time.
stampede_run() { # scenario-file label
    rm -rf "$TMP/out"
    local port=$((PORT + 100))
    "$STAMPEDE" master --bind "127.0.0.1:$port" --headless --expect-workers 2 \
        --scenario "$1" --out "$TMP/out" >"$TMP/master.out" 2>&1 &
    local master=$!
    sleep 0.3
    local workers=()
    for w in 1 2; do
        /usr/bin/time -o "$TMP/w$w.time" -f '%M' "$STAMPEDE" worker --master "127.0.0.1:$port" \
            --name "w$w" --cores 1 >/dev/null 2>&1 &
        workers+=($!)
    done
    wait "$master" || { cat "$TMP/master.out"; exit 1; }
    wait "${workers[@]}"
    local bytes secs rss1 rss2 spread
    bytes=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["metrics"]["total_bytes"])' "$TMP/out/summary.json")
    secs=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["duration_s"])' "$TMP/out/summary.json")
    spread=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("%.2f" % (d["start_spread_ms"] or 0), d["metrics"]["error_rate"])' "$TMP/out/summary.json")
    rss1=$(cat "$TMP/w1.time"); rss2=$(cat "$TMP/w2.time")
    report "$2" "$bytes" "$secs" "(worker peak RSS ${rss1} kB / ${rss2} kB; start spread ms, error rate: $spread)"
}

for run in $(seq "$RUNS"); do
    echo "-- run $run: $CLIENTS simultaneous downloads"
    wait_quiet
    stampede_run "$TMP/once.toml" "stampede (once)"
    wait_quiet
    t0=$(date +%s.%N)
    curls=()
    for i in $(seq $CLIENTS); do curl -s -o /dev/null "$URL" & curls+=($!); done
    wait "${curls[@]}"
    t1=$(date +%s.%N)
    report "curl x$CLIENTS parallel" $((SIZE * CLIENTS)) "$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')"
    wait_quiet
    hey -n $CLIENTS -c $CLIENTS "$URL" >"$TMP/hey.out"
    secs=$(awk '/Total:/ {print $2; exit}' "$TMP/hey.out")
    ok=$(grep -o '\[200\][[:space:]]*[0-9]*' "$TMP/hey.out" | awk '{print $2}')
    report "hey -n100 -c100" $((SIZE * ok)) "$secs"
    echo "-- run $run: back-to-back downloads, 100 connections, 10 s"
    wait_quiet
    stampede_run "$TMP/repeat.toml" "stampede (repeat)"
    wait_quiet
    wrk -t2 -c$CLIENTS -d10s "$URL" >"$TMP/wrk.out"
    # wrk prints "N requests in 10.01s, 23.13GB read" (1024-based units, all bytes read).
    read -r secs bytes < <(awk '/requests in/ {
        gsub("s,", "", $4); v = $5; u = v; gsub(/[0-9.]/, "", u); gsub(/[A-Za-z]/, "", v);
        m = (u == "KB") ? 1024 : (u == "MB") ? 1048576 : (u == "GB") ? 1073741824 : 1;
        printf "%s %.0f\n", $4, v * m }' "$TMP/wrk.out")
    report "wrk -t2 -c100 -d10s" "$bytes" "$secs" "($(grep 'requests in' "$TMP/wrk.out" | tr -s ' '))"
done
