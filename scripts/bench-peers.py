"""The analysis half of scripts/bench-peers: reads its per-round results and each monitor's
output, prints the side-by-side table and the targets of issue 17 (reported, never failed).

Arguments: RESULTS CLK_TCK MONITORS(csv) LOAD_BEFORE LOAD_AFTER AUDIT_STATE_BEFORE
AUDIT_STATE_AFTER AUDIT_CHANGED SKIPPED SENSOR_BIN BEFORE_BIN
"""
import glob
import json
import os
import re
import statistics
import sys

LABEL = {
    "ebpf": "sensor, eBPF mode",
    "audit": "sensor, audit mode",
    "ebpf-before": "sensor (before), eBPF mode",
    "ebpf-noia32": "sensor, eBPF mode, ia32 hooks off",
    "audit-before": "sensor (before), audit mode",
    "execsnoop": "libbpf-tools execsnoop (exec only)",
    "auditd": "Debian auditd, one execve rule, raw log",
    "laurel": "auditd + laurel plugin",
}


def marker_ids(text, marker):
    """The distinct i of `MARKER-<i>` in text (the marker ends at a digit boundary)."""
    return {int(m) for m in re.findall(re.escape(marker) + r"-(\d+)\b", text)}


def sensor_counts(path, marker):
    """Marker execs in a sensor's output, the sum of the drops in its final health, and the
    names of the non-zero drop counters (a file-source drop is not a lost exec, but it is a
    loss and is shown)."""
    seen, drops, health, names = set(), None, False, {}
    pat = re.compile(re.escape(marker) + r"-(\d+)$")
    with open(path, errors="replace") as f:
        for line in f:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if ev.get("kind") == "process_exec":
                argv = (ev.get("process") or {}).get("argv") or []
                if len(argv) > 1 and isinstance(argv[1], str):
                    m = pat.match(argv[1])
                    if m:
                        seen.add(int(m.group(1)))
            elif ev.get("kind") == "sensor_health":
                health = True
                d = (ev.get("health") or {}).get("drops") or {}
                drops = sum(v for v in d.values() if isinstance(v, (int, float)))
                names = {k: v for k, v in d.items() if isinstance(v, (int, float)) and v}
    how = "drops in final health" + "".join(f"; {k} {v}" for k, v in sorted(names.items()))
    return seen, (drops if health else None), how


def text_of(paths):
    out = []
    for p in paths:
        with open(p, errors="replace") as f:
            out.append(f.read())
    return "\n".join(out)


def counts(row):
    mon, out, marker = row["monitor"], row["output"], row["marker"]
    if mon in ("ebpf", "audit", "ebpf-before", "audit-before", "ebpf-noia32"):
        seen, lost, how = sensor_counts(out, marker)
        if mon.startswith("audit"):
            lost = None if lost is None else lost + row.get("kernel_lost", 0)
            head, _, names = how.partition("; ")
            how = head + " + kernel audit lost" + (f"; {names}" if names else "")
        return seen, lost, how
    if mon == "execsnoop":
        seen = marker_ids(text_of([out]), marker)
        err = text_of([out[: -len(".txt")] + ".err"])
        lost = sum(int(x) for x in re.findall(r"Lost (\d+) events", err))
        return seen, lost, "its 'Lost N events'"
    # auditd (raw log, may be rotated) or laurel (its own log, may be rotated)
    files = sorted(glob.glob(out + "*"))
    text = text_of(files)
    if mon == "auditd":
        seen = marker_ids(" ".join(re.findall(r'a1="([^"]*)"', text)), marker)
    else:
        seen = marker_ids(text, marker)
    return seen, row.get("kernel_lost", 0), "kernel audit lost"


def main():
    (results, tck, mons, load0, load1, st0, st1, changed, skipped, sensor_bin,
     before_bin) = sys.argv[1:12]
    tck = int(tck)
    mons = mons.split(",")
    rows = [json.loads(l) for l in open(results) if l.strip()]
    rounds = sorted({r["round"] for r in rows})
    by = {(r["round"], r["monitor"]): r for r in rows}
    n = rows[0]["storm"]["n"]
    base_secs = [r["storm"]["secs"] for r in rows if r["monitor"].startswith("base")]
    table = {}
    for i, m in enumerate(mons):
        slow, cpu, ticks, rec, lost, hows = [], [], [], [], [], []
        for rnd in rounds:
            row = by[(rnd, m)]
            b = (by[(rnd, f"base{i + 1}")]["storm"]["secs"] + by[(rnd, f"base{i + 2}")]["storm"]["secs"]) / 2
            slow.append(row["storm"]["secs"] / b)
            cpu.append(row["cpu_ns"] / 1e9 / n * 1000)
            ticks.append(row["cpu_ticks"] / tck / n * 1000)
            seen, l, how = counts(row)
            rec.append(len(seen))
            lost.append(l)
            hows.append(how)
        table[m] = {
            "slowdown": statistics.median(slow),
            "slowdowns": slow,
            "cpu": statistics.median(cpu),
            "cpus": cpu,
            "cpu_ticks": statistics.median(ticks),
            "recorded_worst": min(rec),
            "recorded": rec,
            "lost": lost,
            "lost_how": how.split(";")[0],
            "lost_detail": [h.split("; ", 1)[1] if "; " in h else "" for h in hows],
        }
    print(f"\nbench-peers: exec storm of {n} (fork+exec of /bin/true MARKER-i, in sequence), "
          f"{len(rounds)} rounds, each monitored run between two unmonitored ones; medians")
    print(f"load average before {load0}, after {load1}; {os.cpu_count()} CPUs; "
          f"unmonitored storm {statistics.median(base_secs):.3f} s median "
          f"({min(base_secs):.3f}-{max(base_secs):.3f})")
    print("unmonitored storm per round, in order: " + "; ".join(
        ", ".join(f"{by[(rnd, f'base{k}')]['storm']['secs']:.2f}" for k in range(1, len(mons) + 2))
        for rnd in rounds))
    spread = max(base_secs) / min(base_secs)
    if spread > 1.5:
        print(f"WARNING: the unmonitored storms differ up to {spread:.1f}x between runs: the machine "
              "is too noisy for the slowdown figures to mean much (CPU and counts still do)")
    print(f"sensor binary: {sensor_bin}" + (f"; before: {before_bin}" if before_bin else ""))
    if skipped:
        print(f"skipped: {skipped}")
    print()
    print("| monitor | exec-storm slowdown | monitor CPU s per 1,000 execs | (same, from 10 ms ticks) | marker execs recorded (worst round) | lost (as the monitor counts it) |")
    print("|---|---|---|---|---|---|")
    for m in mons:
        t = table[m]
        lost = "n/a" if any(x is None for x in t["lost"]) else str(sum(t["lost"]))
        print(f"| {LABEL[m]} | {t['slowdown']:.3f}x | {t['cpu']:.4f} | {t['cpu_ticks']:.3f} | {t['recorded_worst']:,} of {n:,} | {lost} ({t['lost_how']}) |")
    print()
    for m in mons:
        t = table[m]
        print(f"  {m}: slowdown per round " + ", ".join(f"{x:.3f}" for x in t["slowdowns"])
              + "; CPU per round " + ", ".join(f"{x:.4f}" for x in t["cpus"])
              + "; recorded per round " + ", ".join(str(x) for x in t["recorded"])
              + ("; drops by name per round: " + " | ".join(d or "none" for d in t["lost_detail"])
                 if any(t["lost_detail"]) else ""))
    print()

    def target(name, ok, text):
        print(f"  target {name}: {text}: {'ok' if ok else 'MISSED'}")

    if "ebpf" in table and "execsnoop" in table:
        e, x = table["ebpf"], table["execsnoop"]
        target("eBPF CPU", e["cpu"] <= x["cpu"], f"{e['cpu']:.4f} <= execsnoop's {x['cpu']:.4f} (goal half: {x['cpu'] / 2:.4f})")
        target("eBPF slowdown", e["slowdown"] <= x["slowdown"] and e["slowdown"] <= 1.03,
               f"{e['slowdown']:.3f}x <= execsnoop's {x['slowdown']:.3f}x and <= 1.03x")
    def capture_drops(t):
        """Drops per round other than the file source's (`files_*`: fanotify events of other
        activity on the host, not of the storm), which are shown by name above."""
        out = []
        for total, detail in zip(t["lost"], t["lost_detail"]):
            files = sum(int(x.rsplit(" ", 1)[1]) for x in detail.split("; ") if x.startswith("files_"))
            out.append(None if total is None else total - files)
        return out

    if "ebpf" in table:
        e = table["ebpf"]
        d = capture_drops(e)
        target("eBPF lost", e["recorded_worst"] == n and all(x == 0 for x in d),
               f"{e['recorded_worst']} of {n} recorded, capture drops per round {d}")
    if "audit" in table and "auditd" in table:
        a, d = table["audit"], table["auditd"]
        target("audit CPU", a["cpu"] <= d["cpu"], f"{a['cpu']:.4f} <= auditd's {d['cpu']:.4f}")
        target("audit slowdown", a["slowdown"] <= d["slowdown"], f"{a['slowdown']:.3f}x <= auditd's {d['slowdown']:.3f}x")
    if "audit" in table:
        a = table["audit"]
        d = capture_drops(a)
        target("audit lost", a["recorded_worst"] == n and all(x == 0 for x in d),
               f"{a['recorded_worst']} of {n} recorded, capture drops per round {d}")
    print(f"\naudit state before: {st0}\naudit state after:  {st1}")
    if changed:
        print(f"WARNING: the audit state changed during the run: {changed}")


if __name__ == "__main__":
    main()
