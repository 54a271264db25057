#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Install what is missing, then build and run the test suite in five
# configurations (each with its time):
#   gcc        everything: unit, integration, stress (suite stress), fault
#              injection (-Dfault_injection=true), the fuzz corpus replay,
#              the aarch64 cross check (suite cross);
#              cooperative (PRT_PREEMPT_QUANTUM_NS=0);
#   clang      the same but the stress and cross suites, plus 30 s of
#              libFuzzer on the HTTP parser; preemptive
#              (PRT_PREEMPT_QUANTUM_NS=1000000);
#   asan+ubsan everything but the cross suite, libc allocator so ASan
#              sees every allocation; preemptive with the default time
#              slice (4 ms);
#   tsan       the cross-worker tests, TSan following fiber switches;
#              cooperative;
#   (both sanitizer builds then run the stress tests preemptive, with a
#   50 us quantum: STRESS_TESTS below);
#   valgrind   memcheck over the one-or-few-worker tests.
# Stops at the first failure. PRT_TEST_QUICK=1 runs only the gcc build.
source "$(dirname "$0")/common.sh"
prt_install_deps
prt_install_cross_deps

passed=0 failed=0 skipped=0
# run_suite NAME DIR [meson setup options...] [-- meson test arguments...]
# A test argument --lane=LIST (test names, space-separated) makes a lane:
# the lanes run at once, one meson test each, its tests one at a time
# (valgrind runs one thread of a process at a time: two lanes keep both
# cores busy). Without lanes, one meson test, one test at a time.
run_suite() {
	local name=$1 dir=$2 rc=0 out start setup=() testargs=() lanes=() a
	shift 2
	while [ $# -gt 0 ] && [ "$1" != "--" ]; do setup+=("$1"); shift; done
	[ $# -gt 0 ] && shift
	for a in "$@"; do
		case $a in
		--lane=*) lanes+=("${a#--lane=}") ;;
		*) testargs+=("$a") ;;
		esac
	done
	echo "=== $name ==="
	start=$(date +%s)
	prt_build "$dir" "${setup[@]}"
	out=$(mktemp)
	if [ ${#lanes[@]} -eq 0 ]; then
		meson test -C "$dir" --print-errorlogs --num-processes 1 "${testargs[@]}" |
			tee "$out" || rc=$?
	else
		run_lanes "$dir" "$out" "${#lanes[@]}" "${lanes[@]}" "${testargs[@]}" || rc=$?
	fi
	passed=$((passed + $(awk '/^Ok:/{n+=$2} END{print n+0}' "$out")))
	failed=$((failed + $(awk '/^Fail:/{n+=$2} /^Timeout:/{n+=$2} END{print n+0}' "$out")))
	skipped=$((skipped + $(awk '/^Skipped:/{n+=$2} END{print n+0}' "$out")))
	rm -f "$out" "$out".*
	echo "=== $name: $(( $(date +%s) - start )) s ==="
	if [ "$rc" -ne 0 ]; then
		echo "proxyrt: $passed passed, $((failed > 0 ? failed : 1)) failed, $skipped skipped"
		exit "$rc"
	fi
}

# run_lanes DIR OUT N LANE1..LANEN [meson test arguments...]: each lane's
# meson test in the background (own log, DIR/meson-logs/testlog-laneI),
# then their outputs, in order, to stdout and OUT. Fails if any lane did,
# or ran fewer tests than it names.
run_lanes() {
	local dir=$1 out=$2 n=$3 i ran rc=0 lanes=() pids=()
	shift 3
	lanes=("${@:1:n}")
	shift "$n"
	for i in "${!lanes[@]}"; do
		# shellcheck disable=SC2086 # a lane is a list of test names
		meson test -C "$dir" --no-rebuild --print-errorlogs --num-processes 1 \
			--logbase "testlog-lane$i" "$@" ${lanes[$i]} >"$out.$i" 2>&1 &
		pids+=($!)
	done
	for i in "${!pids[@]}"; do
		wait "${pids[$i]}" || rc=$?
		echo "--- lane $i: ${lanes[$i]}"
		tee -a "$out" <"$out.$i"
		# A misspelt name is no error to meson test: count what it ran.
		ran=$(sed -nE 's|^ *[0-9]+/([0-9]+) proxyrt:.*|\1|p' "$out.$i" | head -1)
		if [ "${ran:-0}" -ne "$(wc -w <<<"${lanes[$i]}")" ]; then
			echo "proxyrt: lane $i ran ${ran:-0} tests, not all of: ${lanes[$i]}"
			[ "$rc" -ne 0 ] || rc=1
		fi
	done
	return "$rc"
}

# The tests where fibers cross workers, for TSan (each fiber costs TSan
# ~300 KiB, so the single-purpose unit tests add nothing there).
TSAN_TESTS=(test_sched test_runtime test_mutex test_rwlock test_cond test_timed test_football
	test_preempt test_stress test_io test_stream test_http test_dump test_lifetime test_wait
	test_sem test_wait_spin test_cancel test_cxx test_cxa_program stress_mixed)
# valgrind: the tests that run on one worker or a few. Valgrind runs one
# thread at a time, so tests built on cross-worker spinning (test_mutex's
# deadlock cycles, football, the stress runs) crawl there; TSan and ASan
# cover those. --fair-sched=yes: by default valgrind hands its lock over
# unfairly (the thread whose time slice ends mostly takes it straight
# back), so any busy thread, the tests' or the library's, kept the
# others from running for minutes: test_lifetime took 24-420 s, test_sem
# 6-187 s, and a 10 s wait in test_rwlock expired (its next test then
# hung on the lock left held). Round robin ends that; the tests' busy
# loops also yield to the OS under valgrind (test_spin_pause and
# test_yield_wait, tests/test_common.h). Fiber stacks are registered
# (VALGRIND_STACK_REGISTER); I/O runs on epoll, since valgrind 3.19 holds
# its lock across io_uring_enter (test_fault, which needs io_uring's
# fault paths, runs under LeakSanitizer instead). A valgrind process uses
# one core: two lanes at once, of about the same time under valgrind
# (~50 s each on an idle 2-core machine; test_cond and test_lifetime
# ~21 s the longest).
VALGRIND_LANE0=(test_cond test_stack test_runtime test_timed test_sem test_wait test_timer
	test_wait_spin test_cxx test_cxx_shared test_cxa_program test_cxx_plugin_shared)
VALGRIND_LANE1=(test_lifetime test_stream test_rwlock test_edges test_io test_fiber test_dump
	test_preempt test_sigpipe)
# Runtimes are preemptive by default (a 4 ms slice): ASan runs the suite
# so; gcc and TSan cooperative (PRT_PREEMPT_QUANTUM_NS=0, which overrides
# the configuration); clang with a 1 ms slice (PRT_PREEMPT_QUANTUM_NS=1000000,
# the stress suite left out: the sanitizers run it preemptive below), so
# that it passes every way; test_preempt sets its own time slices
# everywhere; valgrind is cooperative by necessity. The stress tests, which the sanitizer builds
# run again with a short quantum (50 us) after their main runs, in which
# the long stress suite (stress_mixed) is left out for time.
# PRT_STRESS_REQUIRE_PREEMPT=1 fails a run in which the runtime did not
# preempt.
STRESS_TESTS=(test_stress stress_mixed)
TSAN_MAIN_TESTS=("${TSAN_TESTS[@]/stress_mixed/}")
VALGRIND="valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite"
VALGRIND+=" --suppressions=$ROOT/tests/valgrind.supp"
VALGRIND+=" --fair-sched=yes"

PRT_PREEMPT_QUANTUM_NS=0 run_suite "gcc cooperative" "$ROOT/build-test-gcc" \
	--buildtype=debugoptimized -Dfault_injection=true
if [ "${PRT_TEST_QUICK:-0}" != 1 ]; then
	# clang also runs the HTTP parser fuzzer for 15 s (suite fuzz); preemptive.
	# The aarch64 cross check (suite cross) builds from the sources with
	# its own flags: the gcc lane's run says all (15 s a lane).
	# Built without valgrind's client requests (-Dvalgrind=false), so that
	# that option builds too (it did not: RUNNING_ON_VALGRIND undeclared).
	PRT_PREEMPT_QUANTUM_NS=1000000 CC=clang CXX=clang++ run_suite "clang preemptive" \
		"$ROOT/build-test-clang" --buildtype=debugoptimized -Dfault_injection=true \
		-Dvalgrind=false \
		-- --no-suite stress --no-suite cross
	ASAN_SETUP=(--buildtype=debug -Db_sanitize=address,undefined -Db_lundef=false
		-Dallocator=libc -Dfault_injection=true)
	run_suite asan+ubsan "$ROOT/build-test-asan" "${ASAN_SETUP[@]}" -- --no-suite stress \
		--no-suite cross
	PRT_PREEMPT_QUANTUM_NS=50000 PRT_STRESS_REQUIRE_PREEMPT=1 \
		run_suite "asan+ubsan preemptive" "$ROOT/build-test-asan" "${ASAN_SETUP[@]}" \
		-- "${STRESS_TESTS[@]}"
	TSAN_SETUP=(--buildtype=debugoptimized -Db_sanitize=thread -Db_lundef=false -Dallocator=libc)
	# Cooperative but for test_preempt (which sets its own time slices)
	# and the preemptive stress run below: under TSan nearly every
	# interrupt lands in its runtime and is deferred, and a 1 ms quantum
	# made test_sched and test_http outlast their timeouts. Twice the
	# timeouts: test_sched takes 140 s of its 300 and test_http 75-80 s
	# of its 120 alone, and test_http timed out on a loaded machine.
	TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" PRT_PREEMPT_QUANTUM_NS=0 \
		run_suite "tsan cooperative" "$ROOT/build-test-tsan" "${TSAN_SETUP[@]}" \
		-- --timeout-multiplier 2 ${TSAN_MAIN_TESTS[*]}
	# Half the stress suite's time: its 16-worker run takes three times
	# its bound to drain under TSan with 50 us ticks (48 s in all, against
	# 43 s for the cooperative run it replaces).
	TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" PRT_PREEMPT_QUANTUM_NS=50000 \
		PRT_STRESS_REQUIRE_PREEMPT=1 PRT_STRESS_SECONDS=10 \
		run_suite "tsan preemptive" "$ROOT/build-test-tsan" "${TSAN_SETUP[@]}" \
		-- "${STRESS_TESTS[@]}"
	run_suite valgrind "$ROOT/build-test-vg" --buildtype=debug -Dallocator=libc \
		-Dfault_injection=true -- --wrapper "$VALGRIND" --timeout-multiplier 10 \
		"--lane=${VALGRIND_LANE0[*]}" "--lane=${VALGRIND_LANE1[*]}"
fi
echo "proxyrt: $passed passed, $failed failed, $skipped skipped"
