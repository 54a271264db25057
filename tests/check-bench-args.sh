#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The benchmark tools (bench/, examples/inversion_demo) refuse what they
# cannot run as asked and print what they ran: arguments out of range
# (checked before any narrowing cast or unit conversion) and products of
# arguments that overflow are usage errors (exit 2, a message naming the
# argument), a failed allocation says so, a subcommand that needs
# preemption refuses a cooperative runtime, and the printed configuration
# is the runtime's. Behaviour only (exit codes, messages, printed
# fields), never timing; each run is tiny. Args: source root, build dir.
set -uo pipefail
src=$1 build=$2
PB=$build/bench/proxyrt_bench
FL=$build/bench/floors
DEMO=$build/examples/inversion_demo
if [ ! -x "$PB" ] || [ ! -x "$FL" ]; then
	echo "skip: $build/bench not built (-Dbench=false)"
	exit 77
fi
command -v timeout >/dev/null || { echo "skip: no timeout(1)"; exit 77; }
# The checks set the time slice where it matters: not the caller's (the
# suite's cooperative lane sets PRT_PREEMPT_QUANTUM_NS=0 for everything).
unset PRT_PREEMPT_QUANTUM_NS
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() {
	echo "FAIL: $*" >&2
	fails=$((fails + 1))
}

# run CMD...: stdout in $tmp/out, stderr in $tmp/err, status in $rc; 10 s
# at most (the old faults hung or served forever: 124 then)
run() {
	timeout 10 "$@" >"$tmp/out" 2>"$tmp/err"
	rc=$?
}

# usage_err PATTERN CMD...: exit 2, PATTERN (grep -E) in the message, no result line
usage_err() {
	local pat=$1
	shift
	run "$@"
	# on the tool's own message line, not in the usage text that follows it
	if [ $rc -ne 2 ] || ! grep -Eq -- "^(proxyrt_bench|floors|inversion_demo): .*$pat" "$tmp/err" ||
		grep -q '^peer=' "$tmp/out"; then
		fail "$*: rc=$rc (want 2 and /$pat/ on stderr): $(head -c 300 "$tmp/err" "$tmp/out")"
	fi
}

# field CMD_DESC KEY VALUE: every result line in $tmp/out has KEY=VALUE
field() {
	local n
	n=$(grep -c '^peer=' "$tmp/out")
	if [ "$n" -eq 0 ] || [ "$(grep '^peer=' "$tmp/out" | grep -c " $2=$3\( \|\$\)")" -ne "$n" ]; then
		fail "$1: want $2=$3 on every line, rc=$rc: $(head -c 600 "$tmp/out" "$tmp/err")"
	fi
}

# ---- out of range, before any narrowing
usage_err 'WORKERS.*4294967296' "$PB" spawn 4294967296 10 5
usage_err 'WORKERS.*4294967297' "$PB" mutex 4294967297 1 1 0 0
usage_err 'SAMPLES.*4294967301' "$PB" inversion 4294967301 1 0 0 0 0 0
usage_err 'SAMPLES.*4294967301' "$PB" rwinversion 4294967301 1 0 0 0 0 0
usage_err 'PERIOD_US' "$PB" inversion 1 2147483648 0 0 0 0 0
usage_err 'HOFF_US' "$PB" inversion 1 1000 0 0 0 0 -1
usage_err 'PORT.*4294967297' "$PB" http raw 4294967297
usage_err 'PORT.*70000' "$FL" http 70000 single
usage_err 'N.*9223372036854775807' "$PB" xcore pinned 9223372036854775807
usage_err 'SAMPLES' "$PB" preempt 1000000 9223372036854775807
usage_err 'QUANTUM_NS' "$PB" preempt 49999 10
usage_err 'ROUNDS' "$PB" hogwake same 9223372036854775807
usage_err 'ROUNDS' "$FL" hogwake same 9223372036854775807
usage_err 'WRITES' "$PB" filewrite aff 9223372036854775807 0 buffered "$tmp"
usage_err 'STACK_KB' "$PB" park 1 canary 9223372036854775807
usage_err 'N.*abc' "$FL" pingpong abc

# ---- products and unit conversions of arguments
usage_err 'N.*9223372036854775807' "$PB" spawn 1 9223372036854775807 2
usage_err 'T\*K' "$PB" mutex 2 4611686018427387904 4 0 0
usage_err 'T\*K' "$FL" mutex 2 4611686018427387904 4 0 0
usage_err 'SPIN_US.*18446744073709552' "$PB" filewrite aff 20 18446744073709552 buffered "$tmp"
usage_err 'overflows' "$PB" inversion 2147483642 2147483647 0 0 0 0 0
usage_err 'N.*4611686018427387904' "$PB" yield 4611686018427387904

# ---- a failed allocation says so (where the kernel refuses 8 PB: not with overcommit "always")
if [ "$(cat /proc/sys/vm/overcommit_memory 2>/dev/null)" != 1 ]; then
	# The sanitizers' allocators abort on such a size unless told to fail it
	# (appended: the last setting wins over the caller's own options).
	saved_asan=${ASAN_OPTIONS-} saved_tsan=${TSAN_OPTIONS-}
	export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}allocator_may_return_null=1
	export TSAN_OPTIONS=${TSAN_OPTIONS:+$TSAN_OPTIONS:}allocator_may_return_null=1
	for c in "mutex 1 999999999999999 1 0 0" "hogwake same 999999999999999" \
		"filewrite aff 999999999999999 0 buffered $tmp" "preempt 1000000 999999999999999"; do
		# shellcheck disable=SC2086
		run "$PB" $c
		# preempt needs preemption, which valgrind or a seccomp profile may rule out
		if [ "${c%% *}" = preempt ] && grep -q 'cooperative' "$tmp/err"; then
			echo "note: no preemption here: $c not checked"
			continue
		fi
		if [ $rc -ne 1 ] || ! grep -q 'out of memory' "$tmp/err"; then
			fail "$c: rc=$rc, want 1 and 'out of memory': $(head -c 300 "$tmp/err")"
		fi
	done
	ASAN_OPTIONS=$saved_asan TSAN_OPTIONS=$saved_tsan
else
	echo "note: vm.overcommit_memory=1, allocation failure checks skipped"
fi

# ---- NMED: one limit (the pthread peer's 64), larger refused, not cut silently
usage_err 'NMED.*0\.\.64' "$PB" inversion 1 1000 0 65 0 0 0
usage_err 'NMED.*0\.\.64' "$PB" rwinversion 1 1000 0 65 0 0 0
run "$PB" inversion 1 10000 0 17 0 0 0
field "inversion NMED 17" nmed 17

# ---- PRT_YIELD_EVERY_US: strict
for v in 10abc abc -5 ' 7'; do
	PRT_YIELD_EVERY_US=$v usage_err PRT_YIELD_EVERY_US "$PB" inversion 1 10000 0 0 0 0 0
done

# ---- the timer lead printed is the run's: PRT_TIMER_LEAD_NS when the library takes it
PRT_TIMER_LEAD_NS=12345 run "$PB" inversion 1 10000 0 0 0 0 0
field "inversion, PRT_TIMER_LEAD_NS=12345" timer_lead_ns 12345
PRT_TIMER_LEAD_NS=0 run "$PB" rwinversion 1 10000 0 0 0 0 0
field "rwinversion, PRT_TIMER_LEAD_NS=0" timer_lead_ns 0
PRT_TIMER_LEAD_NS=12x run "$PB" inversion 1 10000 0 0 0 0 0 # ignored by the library
field "inversion, PRT_TIMER_LEAD_NS=12x" timer_lead_ns 200000

# ---- preempt: refuses a cooperative runtime (it hung), prints the runtime's slice
PRT_PREEMPT_QUANTUM_NS=0 run "$PB" preempt 1000000 10
if [ $rc -ne 1 ] || ! grep -qx 'peer=proxyrt workload=preempt status=skipped reason=cooperative' "$tmp/out" ||
	grep -q 'variant=' "$tmp/out"; then
	fail "preempt, PRT_PREEMPT_QUANTUM_NS=0: rc=$rc, want 1 and status=skipped only: $(head -c 300 "$tmp/out")"
fi
# Its first line comes after 11 short sleeps; the rest (seconds of work) is cut by SIGPIPE.
line=$(PRT_PREEMPT_QUANTUM_NS=20000000 timeout 10 "$PB" preempt 1000000 10 2>/dev/null | head -n1)
case $line in
*status=skipped*) echo "note: no preemption here (sanitizer or valgrind build?): slice check skipped" ;;
*" quantum_ns=20000000 "*) ;;
*) fail "preempt 1000000 with PRT_PREEMPT_QUANTUM_NS=20000000: $line" ;;
esac

# ---- park: the stacks' size as the runtime rounds it (whole pages)
page_kb=$(($(getconf PAGESIZE) / 1024))
want=$(((17 + page_kb - 1) / page_kb * page_kb))
run "$PB" park 10 canary 17
field "park 10 canary 17" stack_kb "$want"

# ---- inversion_demo: strict SAMPLES, no extra arguments
if [ -x "$DEMO" ]; then
	usage_err 'SAMPLES' "$DEMO" 5x
	usage_err 'one argument' "$DEMO" 5 extra
	usage_err 'SAMPLES' "$DEMO" 0
else
	echo "note: $DEMO not built (-Dexamples=false): its checks skipped"
fi

# ---- the scripts (bench/floors.sh, bench/peers/run.sh, ratios.sh)
# floors.sh ROUNDS: a whole number >= 1 (abc printed a seq error, 0 and -1 nothing; all exit 0)
for n in abc 0 -1 2x; do
	run bash "$src/bench/floors.sh" "$build" "$n"
	if [ $rc -ne 2 ] || ! grep -q "ROUNDS '$n'" "$tmp/err"; then
		fail "floors.sh $build $n: rc=$rc, want 2 and a ROUNDS message: $(head -c 300 "$tmp/err")"
	fi
done

# ratios.sh: an unreadable input is an error (exit 2, as summarize.sh), not an awk message and 0
run bash "$src/bench/peers/ratios.sh" "$tmp/nonexistent"
if [ $rc -ne 2 ] || ! grep -q 'cannot read' "$tmp/err"; then
	fail "ratios.sh on a missing file: rc=$rc: $(head -c 300 "$tmp/err")"
fi
# ... and W4rw (rw_prio_inversion) has its ratios, as the README's comparison says
printf '%s\n' 'peer=pthread workload=rw_prio_inversion variant=none lock_p99_us=100 resp_p99_us=200' \
	'peer=proxyrt workload=rw_prio_inversion variant=proxy lock_p99_us=50 resp_p99_us=50' >"$tmp/rw.txt"
run bash "$src/bench/peers/ratios.sh" "$tmp/rw.txt"
if [ $rc -ne 0 ] || ! grep -q '^workload=rw_prio_inversion metric=lock_p99_us .* ratio=0.5$' "$tmp/out" ||
	! grep -q '^workload=rw_prio_inversion metric=resp_p99_us .* ratio=0.25$' "$tmp/out"; then
	fail "ratios.sh, rw_prio_inversion: rc=$rc: $(head -c 300 "$tmp/out" "$tmp/err")"
fi

# A server already on the HTTP port: ours fails to listen, and the harness
# must say FAILED (and exit non-zero), not measure the other one as ours.
# wrk is replaced by a stand-in printing a fixed report: what is checked is
# which server the harness reports, never a figure.
if command -v python3 >/dev/null && command -v taskset >/dev/null && command -v curl >/dev/null &&
	[ -r /proc/net/tcp ]; then
	mkdir -p "$tmp/bin"
	printf '%s\n' '#!/bin/sh' \
		"printf '  Latency Distribution\\n     50%%  100.00us\\n     99%%  200.00us\\n'" \
		"printf '  1000 requests in 1.00s, 100.00KB read\\nRequests/sec:   1000.00\\n'" >"$tmp/bin/wrk"
	chmod +x "$tmp/bin/wrk"
	printf '%s\n' 'import http.server, sys' \
		'class H(http.server.BaseHTTPRequestHandler):' \
		'    protocol_version = "HTTP/1.1"' \
		'    def do_GET(self):' \
		'        b = b"Hello, World!"' \
		'        self.send_response(200)' \
		'        self.send_header("Content-Length", str(len(b)))' \
		'        self.end_headers()' \
		'        self.wfile.write(b)' \
		'    def log_message(self, *a):' \
		'        pass' \
		's = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H)' \
		'print(s.server_address[1], flush=True)' \
		's.serve_forever()' >"$tmp/squat.py"
	# below the ephemeral range, so that the next three ports are free too
	squat=
	for _ in 1 2 3 4 5; do
		port=$((20000 + RANDOM % 10000))
		rm -f "$tmp/port"
		python3 "$tmp/squat.py" "$port" >"$tmp/port" 2>/dev/null &
		squat=$!
		for _ in $(seq 100); do
			if [ -s "$tmp/port" ] || ! kill -0 "$squat" 2>/dev/null; then
				break
			fi
			sleep 0.1
		done
		[ -s "$tmp/port" ] && break
		kill "$squat" 2>/dev/null
		wait "$squat" 2>/dev/null
		squat=
	done
	if [ -n "$squat" ]; then
		PATH=$tmp/bin:$PATH FLOORS_PORT=$port MUTEX_T=4 MUTEX_K=100 \
			run bash "$src/bench/floors.sh" "$build" 1
		if [ $rc -eq 0 ] || ! grep -q '^W6 proxyrt status=FAILED' "$tmp/out" ||
			grep -q '^W6 proxyrt_server_ns_per_req' "$tmp/out"; then
			fail "floors.sh with port $port taken: rc=$rc: $(head -c 600 "$tmp/out")"
		fi
		PATH=$tmp/bin:$PATH PROXYRT_BENCH=$(realpath "$PB") HTTP_PORT_RAW=$port \
			HTTP_PORT_NETHTTP=$((port + 1)) HTTP_PORT_NGINX=$((port + 2)) \
			HTTP_SERVER_CPU=0 HTTP_CLIENT_CPU=0 run bash "$src/bench/peers/run.sh" --no-build W6
		if [ $rc -eq 0 ] || ! grep -q '^peer=proxyrt workload=http status=FAILED' "$tmp/out" ||
			grep -q '^peer=proxyrt workload=http variant=' "$tmp/out"; then
			fail "run.sh W6 with port $port taken: rc=$rc: $(grep '^peer=' "$tmp/out" | head -c 600)"
		fi
		kill "$squat"
		wait "$squat" 2>/dev/null
	else
		fail "could not start a server to take a port (python3 $tmp/squat.py)"
	fi
else
	echo "note: python3, taskset, curl or /proc/net/tcp missing: the taken-port checks skipped"
fi

if [ $fails -ne 0 ]; then
	echo "$fails check(s) failed" >&2
	exit 1
fi
echo "all bench argument checks passed"
