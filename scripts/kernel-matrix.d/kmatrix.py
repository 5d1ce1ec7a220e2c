#!/usr/bin/env python3
"""Host side of the kernel matrix (scripts/kernel-matrix) and of the Vagrant runs (vagrant/).

  kmatrix.py extract-vmlinux BZIMAGE OUT
      Write the uncompressed ELF kernel found inside a bzImage (boots faster under TCG).
  kmatrix.py verdict LOG --marker M --port P --expect MODE [--attacks | --no-ia32]
      Judge one cell from its console log (or a plain JSON-lines file): prints
      "<mode> PASS: <the sensor's reason for the mode>" or "<mode> FAIL: reasons" and
      exits 0 on pass, 1 on fail. With --attacks the blind-spot attacks the workload ran
      (ia32 and socketcall connects, an io_uring connect, all to a closed port, and setuid32
      through int 0x80) must each be seen with their result, or their blind spot named by the
      `sensor probe` output in the log; the PASS line then starts with what each showed.
      With --no-ia32 (a kernel booted with ia32_emulation=0) the ia32 attacks must fault
      before entering the kernel, and the sensor must say it has no ia32 entry to hook.

Kept compatible with Python 3.5 (Ubuntu 16.04 runs it too): no f-strings.
"""
import argparse
import json
import lzma
import re
import subprocess
import sys
import zlib

BEGIN = "@@KM-BEGIN events"
END = "@@KM-END events"
MARKER_EXIT_CODE = 7


def parse_console(text):
    """Return (events, complete, bad_lines) from a console log.

    Events are the JSON objects between the BEGIN and END lines. A log without a BEGIN line
    is taken as plain JSON lines (the Vagrant runs read the sensor's output file directly).
    `complete` says whether the END line was seen.
    """
    lines = [l.rstrip("\r") for l in text.splitlines()]
    if BEGIN in lines:
        start = lines.index(BEGIN) + 1
        try:
            end = lines.index(END, start)
            complete = True
        except ValueError:
            end = len(lines)
            complete = False
        body = lines[start:end]
    else:
        body, complete = lines, True
    events, bad = [], 0
    for line in body:
        line = line.strip()
        if not line:
            continue
        try:
            ev = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if isinstance(ev, dict):
            events.append(ev)
        else:
            bad += 1
    return events, complete, bad


def _get(obj, *path):
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def judge(events, marker, port, expect_mode, expect_files=False):
    """Decide one cell. Returns (mode, reasons); an empty reasons list means pass.

    With expect_files, a file event on /etc/km-file-MARKER (written by init.sh when the
    kernel command line has km.files=1) must come from a files rung (fanotify or inotify).
    """
    reasons = []
    health = [e for e in events if e.get("kind") == "sensor_health"]
    modes = [_get(e, "health", "mode") for e in health]
    mode = modes[0] if modes else None
    if not events:
        return None, ["no events at all"]
    if not health:
        reasons.append("no sensor_health event")
    elif mode != expect_mode:
        reasons.append("mode {} (expected {}): {}".format(
            mode, expect_mode, _get(health[0], "health", "reason")))
    elif any(m != mode for m in modes):
        reasons.append("mode changed during the run: {}".format(" -> ".join(map(str, modes))))

    # The marker exec is `busybox sh -c 'exit 7' MARKER`: its argv must end exactly so (the
    # workload script's own exec also carries the marker, as an argument).
    want = ["-c", "exit {}".format(MARKER_EXIT_CODE), marker]
    execs = [e for e in events if e.get("kind") == "process_exec"
             and (_get(e, "process", "argv") or [])[-3:] == want]
    exits = []
    if len(execs) != 1:
        reasons.append("{} exec events with argv ending {} (expected 1)".format(
            len(execs), json.dumps(want)))
    else:
        pid = _get(execs[0], "process", "pid")
        exits = [e for e in events if e.get("kind") == "process_exit"
                 and _get(e, "process", "pid") == pid]
        codes = [_get(e, "exit", "code") for e in exits]
        exits = [e for e in exits if _get(e, "exit", "code") == MARKER_EXIT_CODE]
        if not exits:
            reasons.append("no exit with code {} for marker pid {} (exits seen: {})".format(
                MARKER_EXIT_CODE, pid, codes))

    connects = [e for e in events if e.get("kind") == "net_connect"
                and _get(e, "connect", "dst_addr") == "127.0.0.1"
                and _get(e, "connect", "dst_port") == port
                and _get(e, "connect", "protocol") == "tcp"]
    if not connects:
        reasons.append("no tcp connect to 127.0.0.1:{}".format(port))

    if expect_files:
        files = [e for e in events if e.get("kind") == "file"
                 and marker in (_get(e, "file", "path") or "")]
        if not files:
            reasons.append("no file event on /etc/km-file-{}".format(marker))
        elif files[0].get("source") not in ("fanotify", "inotify"):
            reasons.append("file event from source {} (expected fanotify or inotify)".format(
                files[0].get("source")))

    # The workload's events must come from the capture rung the sensor says it runs.
    found = execs[:1] + exits[:1] + connects[:1] if len(execs) == 1 else connects[:1]
    for e in found:
        if e.get("source") != expect_mode:
            reasons.append("{} event from source {} (expected {})".format(
                e.get("kind"), e.get("source"), expect_mode))
    return mode, reasons


PROBE_BEGIN = "@@KM-BEGIN probe"
PROBE_END = "@@KM-END probe"
ATTACK = "@@KM attack "
ENOSYS = -38


def parse_probe(text):
    """The coverage rows of the `sensor probe` output in a console log: {what: status}."""
    lines = [l.rstrip("\r") for l in text.splitlines()]
    if PROBE_BEGIN not in lines:
        return {}
    start = lines.index(PROBE_BEGIN) + 1
    end = lines.index(PROBE_END, start) if PROBE_END in lines[start:] else len(lines)
    rows = {}
    for line in lines[start:end]:
        # "ebpf: ia32 connect           seen   cgroup connect4/..."
        m = re.match(r"^(\S.*?)\s+(seen|PART|BLIND|none)  ", line)
        if m:
            rows[m.group(1)] = m.group(2)
    return rows


def parse_attacks(text):
    """{name: {"pid": int, "ret": int}} from "@@KM attack NAME <its output line>" lines.

    An attack that could not run (no pid=) maps to None."""
    out = {}
    for line in text.splitlines():
        line = line.rstrip("\r")
        if not line.startswith(ATTACK):
            continue
        name, _, rest = line[len(ATTACK):].partition(" ")
        fields = dict(kv.split("=", 1) for kv in rest.split() if "=" in kv)
        try:
            ret = fields.get("ret", fields.get("res"))
            out[name] = {"pid": int(fields["pid"]), "ret": int(ret)}
        except (KeyError, TypeError, ValueError):
            out[name] = None
    return out


CONNECT_ATTACKS = (("connect32", "ia32 connect"), ("socketcall_connect", "ia32 connect"),
                   ("uring_connect", "io_uring connect"))


def hook_misses(events):
    """Skipped runs of the raw_syscalls program in the run's last health event (0 if none)."""
    health = [e for e in events if e.get("kind") == "sensor_health"]
    if not health:
        return 0
    n = _get(health[-1], "health", "events", "ebpf_syscall_hook_misses")
    return n if isinstance(n, int) else 0


def judge_attacks(events, text, port, mode):
    """Check the blind-spot attacks. Returns (summary, reasons).

    An ia32 call whose entry or exit run the kernel skipped (counted in
    ebpf_syscall_hook_misses, docs/ARCHITECTURE.md "Skipped runs") is reported late: a
    connect without its result (`attempted`), a setuid32 `observed` at the exit. That is
    accepted, and named, only in a run whose health counted such skipped runs."""
    attacks = parse_attacks(text)
    probe = parse_probe(text)
    skipped = hook_misses(events) if mode == "ebpf" else 0
    summary, reasons = [], []
    if not probe:
        reasons.append("no sensor probe coverage in the log")
    want_result = {-111: "refused", 0: "success"}
    for name, row in CONNECT_ATTACKS:
        a = attacks.get(name)
        if name not in attacks:
            reasons.append("attack {} did not run".format(name))
            continue
        if a is None or a["ret"] == ENOSYS:
            summary.append("{} n/a".format(name))  # no ia32 entry / io_uring on this kernel
            continue
        status = probe.get("{}: {}".format(mode, row), "seen")
        seen = [e for e in events if e.get("kind") == "net_connect"
                and _get(e, "process", "pid") == a["pid"]
                and _get(e, "connect", "dst_port") == port + 1]
        results = [_get(e, "connect", "result") for e in seen]
        expect = want_result.get(a["ret"], "error")
        # Audit mode's io_uring records carry the issue handler's return, not the completion's
        # result: such a connect is reported `in_progress` (README, blind spots).
        if mode == "audit" and name == "uring_connect":
            expect = "in_progress"
        judge_result = status == "seen"
        if status == "BLIND":
            summary.append("{} blind(named)".format(name))
        elif len(seen) != 1:
            reasons.append("{} (pid {}, ret {}): {} connect events, probe says {}".format(
                name, a["pid"], a["ret"], len(seen), status))
        elif (judge_result and results[0] == "attempted" and expect != "attempted"
              and skipped and row == "ia32 connect"):
            summary.append("{} attempted(late: {} hook runs skipped)".format(name, skipped))
        elif judge_result and results[0] != expect:
            reasons.append("{}: result {} (expected {})".format(name, results[0], expect))
        else:
            summary.append("{} {}{}".format(name, results[0], "" if status == "seen" else "(named)"))
    a = attacks.get("setuid32")
    if "setuid32" not in attacks:
        reasons.append("attack setuid32 did not run")
    elif a is None or a["ret"] == ENOSYS:
        summary.append("setuid32 n/a")
    else:
        status = probe.get("{}: ia32 set*id/capset".format(mode), "seen")
        changes = [e for e in events if e.get("kind") == "privilege_change"
                   and _get(e, "process", "pid") == a["pid"]
                   and _get(e, "privilege", "new_uid") == 65534]
        vias = [_get(e, "privilege", "via") for e in changes]
        if status == "BLIND":
            summary.append("setuid32 blind(named)")
        elif status == "seen" and vias == ["observed"] and skipped:
            summary.append("setuid32 observed(late: {} hook runs skipped)".format(skipped))
        elif status == "seen" and "setuid" not in vias:
            reasons.append("setuid32 (pid {}): not seen at the call (vias {})".format(a["pid"], vias))
        elif not vias:
            reasons.append("setuid32 (pid {}): not seen (probe says {})".format(a["pid"], status))
        else:
            summary.append("setuid32 {}".format(vias[0]))
    return ", ".join(summary), reasons


IA32_ATTACKS = ("connect32", "socketcall_connect", "setuid32")
IA32_ROWS = ("ebpf: ia32 connect", "ebpf: ia32 set*id/capset")
NO_IA32_NOTE = "this kernel has no ia32 entry"


def judge_no_ia32(events, text):
    """A kernel booted with ia32_emulation=0: the ia32 attacks fault before entering the kernel
    (no pid= line), `sensor probe` says `none` for the ia32 rows, and the sensor says in its
    health reason that it has no ia32 entry, so it did not attach the raw_syscalls hooks (and
    names no ia32 blind spot). Returns (summary, reasons)."""
    reasons = []
    attacks = parse_attacks(text)
    for name in IA32_ATTACKS:
        if name not in attacks:
            reasons.append("attack {} did not run".format(name))
        elif attacks[name] is not None:
            reasons.append("{} entered the kernel (ret {}) with ia32_emulation=0".format(
                name, attacks[name]["ret"]))
    probe = parse_probe(text)
    for row in IA32_ROWS:
        if probe.get(row) != "none":
            reasons.append("probe row '{}' is {} (expected none)".format(row, probe.get(row)))
    health = [e for e in events if e.get("kind") == "sensor_health"]
    reason = _get(health[0], "health", "reason") if health else None
    if not isinstance(reason, str) or NO_IA32_NOTE not in reason:
        reasons.append("the health reason does not say the kernel has no ia32 entry: {}".format(
            reason))
    elif "blind spot: ia32" in reason:
        reasons.append("an ia32 blind spot is named on a kernel without ia32: {}".format(reason))
    return "ia32 none (hooks not attached)", reasons


def find_magic(data, magic):
    pos = data.find(magic)
    while pos != -1:
        yield pos
        pos = data.find(magic, pos + 1)


def extract_vmlinux(data):
    """Return the ELF kernel inside a bzImage, trying every compressed stream found in it."""
    def xz(blob):
        return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(blob)

    def gz(blob):
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(blob)

    def zstd(blob):
        proc = subprocess.run(["zstd", "-dcq"], input=blob, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL)
        return proc.stdout

    for magic, fn in ((b"\xfd7zXZ\x00", xz), (b"\x28\xb5\x2f\xfd", zstd), (b"\x1f\x8b\x08", gz)):
        for off in find_magic(data, magic):
            try:
                out = fn(data[off:])
            except Exception:  # a false magic match: try the next one
                continue
            if out[:4] == b"\x7fELF":
                return out
    raise ValueError("no compressed ELF kernel found in the image")


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd")
    ex = sub.add_parser("extract-vmlinux")
    ex.add_argument("bzimage")
    ex.add_argument("out")
    vd = sub.add_parser("verdict")
    vd.add_argument("log")
    vd.add_argument("--marker", required=True)
    vd.add_argument("--port", required=True, type=int)
    vd.add_argument("--expect", required=True, choices=["ebpf", "audit"])
    vd.add_argument("--expect-files", action="store_true",
                    help="also require a file event on /etc/km-file-MARKER (km.files=1)")
    vd.add_argument("--attacks", action="store_true")
    vd.add_argument("--no-ia32", action="store_true",
                    help="the kernel was booted with ia32_emulation=0 (see judge_no_ia32)")
    args = ap.parse_args(argv)
    if args.cmd == "extract-vmlinux":
        with open(args.bzimage, "rb") as f:
            elf = extract_vmlinux(f.read())
        with open(args.out, "wb") as f:
            f.write(elf)
        return 0
    if args.cmd == "verdict":
        with open(args.log, "r", encoding="utf-8", errors="replace") as f:
            text = f.read()
        events, complete, bad = parse_console(text)
        mode, reasons = judge(events, args.marker, args.port, args.expect,
                              args.expect_files)
        summary = ""
        if args.no_ia32:
            summary, more = judge_no_ia32(events, text)
            reasons += more
        elif args.attacks:
            summary, more = judge_attacks(events, text, args.port, args.expect)
            reasons += more
        if not complete:
            reasons.append("console output ended before the END line")
        if reasons:
            print("{} FAIL: {}".format(mode or "-", "; ".join(reasons)))
            return 1
        health = [e for e in events if e.get("kind") == "sensor_health"]
        reason = _get(health[0], "health", "reason")
        print("{} PASS: {}".format(mode, "[{}] {}".format(summary, reason) if summary else reason))
        return 0
    ap.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
