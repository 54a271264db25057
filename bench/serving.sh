# shellcheck shell=bash
# SPDX-License-Identifier: MIT
# Sourced by bench/floors.sh and bench/peers/run.sh: has the server just
# started come up? A connect to its port proves nothing: another server
# already listening there answers it while ours has died ("Address
# already in use"), and the harness then measured that one (and printed
# its figures under our name).

# pid_listens PID PORT: PID holds a TCP socket listening on PORT
# (/proc/net/tcp{,6}: local address in field 2, state 0A = LISTEN, inode
# in field 10; the process's socket fds link to "socket:[INODE]").
pid_listens() {
	local pid=$1 hex inode fd
	hex=$(printf ':%04X' "$2")
	for inode in $(awk -v p="$hex" '$4 == "0A" && substr($2, length($2) - 4) == p { print $10 }' \
		/proc/net/tcp /proc/net/tcp6 2>/dev/null); do
		for fd in /proc/"$pid"/fd/*; do
			[ "$(readlink "$fd" 2>/dev/null)" = "socket:[$inode]" ] && return 0
		done
	done
	return 1
}

# wait_serving PID PORT: 0 once PID is alive and listening on PORT; 1 as
# soon as it has died, or if it is not listening there within 5 s.
# Without /proc/net/tcp, a connect to the port from a live PID has to do.
wait_serving() {
	local pid=$1 port=$2
	for _ in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || return 1
		if [ -r /proc/net/tcp ]; then
			pid_listens "$pid" "$port" && return 0
		elif (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			kill -0 "$pid" 2>/dev/null
			return
		fi
		sleep 0.1
	done
	return 1
}
