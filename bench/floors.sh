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
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
B=${1:-$here/build}
N=${2:-5}
PX=$B/bench/proxyrt_bench
FL=$B/bench/floors
GO=$here/bench/peers/build/peers-go
out=$(mktemp)
nd=$(mktemp -d)
trap 'rm -rf "$out" "$nd"' EXIT
[ -x "$PX" ] && [ -x "$FL" ] || { echo "floors.sh: build $B first" >&2; exit 2; }

w3() { # name cmd...
	local name=$1 v
	shift
	v=$(taskset -c 0-1 "$@" 2>/dev/null | sed -n 's/.*ops_per_sec=\([0-9]*\).*/\1/p' | head -1)
	[ -n "$v" ] && echo "W3 ${name}_ops_per_sec $v" >>"$out"
}

w6() { # name port cmd...
	local name=$1 port=$2 pid t0 t1 rps hz
	shift 2
	hz=$(getconf CLK_TCK)
	taskset -c 0 "$@" >/dev/null 2>&1 &
	pid=$!
	for _ in $(seq 50); do
		(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
		sleep 0.1
	done
	taskset -c 1 wrk -t1 -c64 -d1s "http://127.0.0.1:$port/" >/dev/null 2>&1
	t0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
	rps=$(taskset -c 1 wrk -t1 -c64 -d4s "http://127.0.0.1:$port/" 2>/dev/null |
		awk '/^Requests\/sec:/ {print $2}')
	t1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
	kill "$pid"
	wait "$pid" 2>/dev/null
	[ -n "$rps" ] && awk -v a="$t0" -v b="$t1" -v hz="$hz" -v r="$rps" -v n="$name" \
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
        listen 127.0.0.1:18189;
        location / { default_type text/plain; return 200 "Hello, World!"; }
    }
}
NGX
}

a="64 100000 50 200"
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
		w6 proxyrt 18186 "$PX" http raw 18186
		w6 floor_single 18187 "$FL" http 18187 single
		w6 floor_multishot 18188 "$FL" http 18188 multishot
		[ -n "$nginx" ] && w6 nginx 18189 "$nginx" -p "$nd" -c "$nd/nginx.conf"
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
