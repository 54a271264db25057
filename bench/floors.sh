#!/bin/bash
# SPDX-License-Identifier: MIT
# bench/floors.sh [BUILD_DIR] [ROUNDS]: W3 and W6 of proxyrt against the
# machine's floor (bench/floors.c: no runtime at all) and, where installed,
# Go's sync.Mutex (bench/peers/build/peers-go: build it with
# `bench/peers/run.sh --build-only`) and nginx, in interleaved rounds;
# prints each figure's median [min..max]. This host's noise is large, so
# read medians of several rounds, never one run.
#   W3: ops_per_sec (higher is better), same arguments as run.sh.
#   W6: server CPU ns per request (lower is better), wrk -t1 -c64 on CPU 1,
#       server on CPU 0, 1 s warm-up then 4 s measured, as run.sh does.
# Output: `W3|W6 NAME median=N [MIN..MAX] runs=N`, and a `W3|W6 NAME
# status=FAILED reason=...` line for each run that failed (a server that
# did not come up on its port, say: it is not measured); the exit status
# is then 1. From the environment: MUTEX_T, MUTEX_K, MUTEX_IN_NS,
# MUTEX_OUT_NS (as run.sh's) and FLOORS_PORT, the first of W6's four
# ports (default 18186).
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
usage() {
	echo "usage: bench/floors.sh [BUILD_DIR] [ROUNDS]   (ROUNDS: 1..999999, default 5)" >&2
	exit 2
}
[ $# -le 2 ] || usage
B=${1:-$here/build}
N=${2:-5}
# seq said "invalid floating point argument" for abc and ran nothing for 0 and -1; all exited 0
[[ $N =~ ^[1-9][0-9]{0,5}$ ]] || { echo "floors.sh: ROUNDS '$N' is not a whole number in 1..999999" >&2; usage; }
P0=${FLOORS_PORT:-18186}
if ! [[ $P0 =~ ^[1-9][0-9]{0,4}$ ]] || [ "$P0" -gt 65532 ]; then
	echo "floors.sh: FLOORS_PORT '$P0' is not in 1..65532" >&2
	exit 2
fi
# shellcheck source=bench/serving.sh
. "$here/bench/serving.sh"
failed=0
PX=$B/bench/proxyrt_bench
FL=$B/bench/floors
GO=$here/bench/peers/build/peers-go
out=$(mktemp)
nd=$(mktemp -d)
trap 'rm -rf "$out" "$nd"' EXIT
[ -x "$PX" ] && [ -x "$FL" ] || { echo "floors.sh: build $B first" >&2; exit 2; }

# fail W NAME REASON: a run that measured nothing; the script will exit 1
fail() {
	echo "$1 $2 status=FAILED reason=$3"
	failed=1
}

w3() { # name cmd...
	local name=$1 v res rc
	shift
	res=$(taskset -c 0-1 "$@" 2>/dev/null)
	rc=$?
	v=$(printf '%s\n' "$res" | sed -n 's/.*ops_per_sec=\([0-9]*\).*/\1/p' | head -1)
	if [ $rc -ne 0 ] || [ -z "$v" ]; then
		fail W3 "$name" "rc_$rc"
		return
	fi
	echo "W3 ${name}_ops_per_sec $v" >>"$out"
}

w6() { # name port cmd...
	local name=$1 port=$2 pid t0 t1 rps hz
	shift 2
	hz=$(getconf CLK_TCK)
	taskset -c 0 "$@" >/dev/null 2>&1 &
	pid=$!
	# Ours, alive and listening: not whatever else answers on the port.
	if ! wait_serving "$pid" "$port"; then
		kill "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
		fail W6 "$name" "server_not_listening_on_$port"
		return
	fi
	taskset -c 1 wrk -t1 -c64 -d1s "http://127.0.0.1:$port/" >/dev/null 2>&1
	t0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
	rps=$(taskset -c 1 wrk -t1 -c64 -d4s "http://127.0.0.1:$port/" 2>/dev/null |
		awk '/^Requests\/sec:/ {print $2}')
	t1=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null)
	if ! kill "$pid" 2>/dev/null || [ -z "$t1" ]; then
		wait "$pid" 2>/dev/null
		fail W6 "$name" server_died
		return
	fi
	wait "$pid" 2>/dev/null
	[ -n "$rps" ] || { fail W6 "$name" no_wrk_result; return; }
	awk -v a="$t0" -v b="$t1" -v hz="$hz" -v r="$rps" -v n="$name" \
		'BEGIN { printf "W6 %s_server_ns_per_req %.0f\n", n, (b - a) / hz / 4 * 1e9 / r }' >>"$out"
}

nginx_conf() {
	cat >"$nd/nginx.conf" <<NGX
worker_processes 1;
daemon off;
master_process off;
pid $nd/nginx.pid;
error_log $nd/error.log crit;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 100000000;
    client_body_temp_path $nd; proxy_temp_path $nd; fastcgi_temp_path $nd;
    uwsgi_temp_path $nd; scgi_temp_path $nd;
    server {
        listen 127.0.0.1:$((P0 + 3));
        location / { default_type text/plain; return 200 "Hello, World!"; }
    }
}
NGX
}

a="${MUTEX_T:-64} ${MUTEX_K:-100000} ${MUTEX_IN_NS:-50} ${MUTEX_OUT_NS:-200}"
nginx=$(command -v nginx || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; })
[ -n "$nginx" ] && nginx_conf
for _ in $(seq "$N"); do
	# shellcheck disable=SC2086
	{
		w3 proxyrt "$PX" mutex 2 $a
		w3 floor "$FL" mutex 2 $a
		[ -x "$GO" ] && w3 go "$GO" mutex 2 $a
	}
	if command -v wrk >/dev/null; then
		w6 proxyrt "$P0" "$PX" http raw "$P0"
		w6 floor_single $((P0 + 1)) "$FL" http $((P0 + 1)) single
		w6 floor_multishot $((P0 + 2)) "$FL" http $((P0 + 2)) multishot
		[ -n "$nginx" ] && w6 nginx $((P0 + 3)) "$nginx" -p "$nd" -c "$nd/nginx.conf"
	fi
done
awk '{ k = $1 " " $2; v[k] = v[k] " " $3; if (!(k in seen)) { seen[k] = 1; order[++n] = k } }
END {
	for (i = 1; i <= n; i++) {
		m = split(v[order[i]], a, " ")
		for (x = 1; x <= m; x++) for (y = x + 1; y <= m; y++) if (a[y] < a[x]) { t = a[x]; a[x] = a[y]; a[y] = t }
		printf "%s median=%s [%s..%s] runs=%d\n", order[i], a[int((m + 1) / 2)], a[1], a[m], m
	}
}' "$out"
exit $failed
