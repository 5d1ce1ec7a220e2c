#!/bin/busybox sh
# shellcheck shell=dash
# /init of the kernel-matrix initramfs: mount the kernel interfaces, start the static sensor
# in the configuration named on the kernel command line, run the workload, send the results
# to the host over the serial console between @@KM-BEGIN / @@KM-END lines, power off.
#
# Kernel command line: km.config=default|lockdown|seccomp|floor km.marker=STRING km.port=N
# securityfs is deliberately not mounted: under lockdown=confidentiality the sensor cannot
# read /sys/kernel/security/lockdown and has to notice lockdown by its effects (tracefs mounts
# but stays empty there, so the probe rules eBPF out and the sensor picks audit by itself).
/bin/busybox mkdir -p /proc /sys /dev /tmp /run /usr/bin /usr/sbin /sbin
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /tmp
# Report the tracefs mount: lockdown=confidentiality refuses it (the sensor must cope).
if tf=$(mount -t tracefs tracefs /sys/kernel/tracing 2>&1); then tf=ok; else tf="refused (${tf:-no message})"; fi
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t bpf bpf /sys/fs/bpf 2>/dev/null
# Keep kernel messages off the console: results travel over it.
echo 1 >/proc/sys/kernel/printk
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up

arg() { tr ' ' '\n' </proc/cmdline | sed -n "s/^$1=//p" | tail -n 1; }
config=$(arg km.config)
marker=$(arg km.marker)
port=$(arg km.port)

# km.files=1 (legacy-profile cells): a file written under /etc, the sensor's default tree.
files=$(arg km.files)
[ "$files" = 1 ] && mkdir -p /etc

# What the sensor says it can see on this kernel (the blind-spot rows are judged).
echo "@@KM-BEGIN probe"
/sensor probe 2>&1
echo "@@KM-END probe"

out=/tmp/events.jsonl
err=/tmp/sensor.err
: >"$out"
set -- /sensor run --mode auto --output "$out" --health-interval 2
[ "$config" = seccomp ] && set -- /deny_bpf_exec "$@"
# The syscall floor: the kernel looks like Linux 3.10 to the sensor (sensor/examples/floor_exec.rs).
[ "$config" = floor ] && set -- /floor_exec "$@"
echo "@@KM start config=$config kernel=$(uname -r) tracefs=$tf cmd=$*"
"$@" </dev/null >/dev/null 2>"$err" &
sensor=$!

i=0
while [ $i -lt 1200 ] && ! grep -q '"kind":"sensor_health"' "$out"; do
  kill -0 "$sensor" 2>/dev/null || break
  sleep 0.1
  i=$((i + 1))
done
if grep -q '"kind":"sensor_health"' "$out"; then
  echo "@@KM sensor-ready after ${i}00ms"
  sh /workload.sh /bin/busybox "$marker" "$port" /attacks
  [ "$files" = 1 ] && echo "$marker" >"/etc/km-file-$marker"
  # Audit events without an EOE record are flushed after a short timeout.
  sleep 2
else
  echo "@@KM sensor-not-ready"
fi
kill -TERM "$sensor" 2>/dev/null
i=0
while [ $i -lt 300 ] && kill -0 "$sensor" 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
kill -KILL "$sensor" 2>/dev/null
wait "$sensor"
echo "@@KM sensor-exit status=$?"

echo "@@KM-BEGIN events"
cat "$out"
echo "@@KM-END events"
echo "@@KM-BEGIN stderr"
tail -n 40 "$err"
echo "@@KM-END stderr"
sync
poweroff -f
