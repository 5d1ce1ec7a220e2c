#!/usr/bin/env bash
# Seeds for spool_scan and collector_ingest from a real spool: the sensor (eBPF mode, as root)
# ships to a closed port for a few seconds while a small workload runs, so its batches stay
# in the spool; then the first segment becomes the spool_scan seeds and its batches the
# collector_ingest seeds (see fuzz/seeds/spool_frames.py). Run under the privileged lock:
#   flock /tmp/sensor-privileged.lock fuzz/seeds/capture-spool.sh target/debug/sensor
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
sensor=${1:?usage: capture-spool.sh SENSOR_BINARY}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/sensor.toml" <<TOML
[ship]
allow_plaintext_loopback = true
spool_dir = "$work/spool"
batch_max_delay_ms = 200
TOML
"$sensor" run --mode ebpf --health-interval 1 --config "$work/sensor.toml" \
  --status "$work/status.json" --output "grpc://127.0.0.1:$port" 2>"$work/sensor.log" &
pid=$!
for _ in $(seq 1 300); do [ -s "$work/status.json" ] && break; sleep 0.1; done
/bin/echo "fuzz seed" "two words" "" >/dev/null
/bin/sh -c 'exit 7' || true
ls -l /tmp >/dev/null
env PASSWORD=hunter2 /bin/true --token=abc
python3 -c 'import socket; s=socket.socket(); s.settimeout(0.2)
try: s.connect(("127.0.0.1", 9))
except OSError: pass'
touch "$work/file-event" && rm "$work/file-event"
sleep 3
kill -TERM "$pid"
sleep 1
kill -KILL "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
seg=$(ls "$work/spool/segments/"*.seg | head -1)
python3 "$here/spool_frames.py" "$seg" "$here"
