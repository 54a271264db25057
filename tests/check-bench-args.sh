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
	export ASAN_OPTIONS=allocator_may_return_null=1
	for c in "mutex 1 999999999999999 1 0 0" "hogwake same 999999999999999" \
		"filewrite aff 999999999999999 0 buffered $tmp" "preempt 1000000 999999999999999"; do
		# shellcheck disable=SC2086
		run "$PB" $c
		if [ $rc -ne 1 ] || ! grep -q 'out of memory' "$tmp/err"; then
			fail "$c: rc=$rc, want 1 and 'out of memory': $(head -c 300 "$tmp/err")"
		fi
	done
	unset ASAN_OPTIONS
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

if [ $fails -ne 0 ]; then
	echo "$fails check(s) failed" >&2
	exit 1
fi
echo "all bench argument checks passed"
