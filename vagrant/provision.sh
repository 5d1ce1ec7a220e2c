#!/bin/sh
# Runs inside a Vagrant box as root: the kernel-matrix workload under the static sensor in
# --mode auto, judged by kmatrix.py. Environment: KM_EXPECT (ebpf|audit), KM_KERNEL (label).
# Files come from the host's target/kernel-matrix/dist, synced to /km (KM_DIR overrides).
set -eu
km=${KM_DIR:-/km}
expect=${KM_EXPECT:-audit}
work=$(mktemp -d /tmp/km.XXXXXX)

# The verdict script needs python3 (CentOS 7 ships it in its base repository since 7.7).
if ! command -v python3 >/dev/null; then
  if command -v yum >/dev/null; then yum install -y -q python3; else apt-get install -y -q python3; fi
fi

# tracefs for eBPF mode where the kernel has it (older kernels expose it under debugfs).
mountpoint -q /sys/kernel/debug || mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null || true
if [ -d /sys/kernel/tracing ] && [ ! -e /sys/kernel/tracing/events ]; then
  mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null || true
fi

# CentOS 7 runs auditd. The sensor reads beside it through the multicast log group, but that
# group needs 3.16+: on 3.10 the sensor must refuse to take the slot from auditd and say why
# (checked here), then auditd is stopped for the workload and started again after.
restart_auditd=""
if pidof auditd >/dev/null 2>&1; then
  case "$(uname -r)" in
    3.*)
      beside=$("$km/sensor" probe 2>/dev/null | grep '^audit beside' || true)
      echo "$beside"
      case "$beside" in
        *FAIL*"reading beside a running auditd is impossible"*) echo "@@KM refusal ok" ;;
        *) echo "@@KM FAIL: the sensor did not refuse to take the slot from auditd on $(uname -r)"; exit 1 ;;
      esac
      service auditd stop >/dev/null 2>&1 && restart_auditd=1 ;;
  esac
fi

echo "== kernel $(uname -r) (${KM_KERNEL:-?}); expecting mode $expect"
"$km/sensor" probe || true

marker="km$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')-vagrant"
port=$((20000 + $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 20000))
"$km/sensor" run --mode auto --output "$work/events.jsonl" --health-interval 2 \
  </dev/null >/dev/null 2>"$work/sensor.err" &
sensor=$!
i=0
while [ $i -lt 600 ] && ! grep -q '"kind":"sensor_health"' "$work/events.jsonl" 2>/dev/null; do
  kill -0 "$sensor" 2>/dev/null || break
  sleep 0.1
  i=$((i + 1))
done
sh "$km/workload.sh" "$km/busybox" "$marker" "$port" "$km/attacks"
sleep 2
kill -TERM "$sensor" 2>/dev/null || true
wait "$sensor" || echo "sensor exited with status $?"
[ -n "$restart_auditd" ] && service auditd start >/dev/null 2>&1

rc=0
python3 "$km/kmatrix.py" verdict "$work/events.jsonl" --marker "$marker" --port "$port" \
  --expect "$expect" || rc=$?
[ $rc -eq 0 ] || tail -n 40 "$work/sensor.err"
rm -rf "$work"
exit $rc
