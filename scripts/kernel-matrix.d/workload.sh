#!/bin/sh
# The kernel-matrix workload, shared by the qemu guests (scripts/kernel-matrix) and the
# Vagrant boxes (vagrant/). Plain POSIX sh; every tool comes from one static busybox so the
# same binary behaves the same everywhere.
#
#   workload.sh BUSYBOX MARKER PORT
#
# 1. an exec whose argv carries MARKER and that exits with code 7;
# 2. a TCP connect to a listener on 127.0.0.1:PORT.
# Prints one summary line, "@@KM workload exit=<code> connect=<nc status>".
set -u
bb=$1
marker=$2
port=$3

"$bb" nc -l -p "$port" >/dev/null </dev/null &
listener=$!
# Give the listener time to bind (TCG guests are slow).
i=0
while [ $i -lt 50 ] && ! "$bb" netstat -ltn 2>/dev/null | "$bb" grep -q ":$port "; do
  "$bb" sleep 0.1
  i=$((i + 1))
done

# A path with a slash, so busybox's shell really execs instead of running an applet in-process.
"$bb" sh -c 'exit 7' "$marker"
exit_code=$?

echo "$marker" | "$bb" nc -w 3 127.0.0.1 "$port"
connect=$?

kill "$listener" 2>/dev/null
wait "$listener" 2>/dev/null
echo "@@KM workload exit=$exit_code connect=$connect"
