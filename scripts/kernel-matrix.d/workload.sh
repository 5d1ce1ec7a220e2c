#!/bin/sh
# The kernel-matrix workload, shared by the qemu guests (scripts/kernel-matrix) and the
# Vagrant boxes (vagrant/). Plain POSIX sh; every tool comes from one static busybox so the
# same binary behaves the same everywhere.
#
#   workload.sh BUSYBOX MARKER PORT [ATTACKS]
#
# 1. an exec whose argv carries MARKER and that exits with code 7;
# 2. a TCP connect to a listener on 127.0.0.1:PORT;
# 3. with ATTACKS (the static build of sensor/tests/attacks/attacks.c): the blind-spot
#    attacks, each printing "@@KM attack NAME <its result line>": connects through the ia32
#    entry (int 0x80 connect, socketcall) and io_uring to 127.0.0.1:PORT+1, where nothing
#    listens (result: refused), and setuid32 through int 0x80 to uid 65534.
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

if [ -n "${4:-}" ]; then
  closed=$((port + 1))
  for a in connect32 socketcall_connect uring_connect; do
    echo "@@KM attack $a $("$4" "$a" 127.0.0.1 "$closed" 2>&1 | "$bb" tail -n 1)"
  done
  echo "@@KM attack setuid32 $("$4" setuid32 65534 2>&1 | "$bb" tail -n 1)"
fi

kill "$listener" 2>/dev/null
wait "$listener" 2>/dev/null
echo "@@KM workload exit=$exit_code connect=$connect"
