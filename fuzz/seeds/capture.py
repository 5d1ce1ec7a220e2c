#!/usr/bin/env python3
"""Captures the fuzz seed corpus from what the sensor really reads on this host (run as root).

Each seed is real kernel or file output, wrapped only in the small selector the target's
input format documents. Run again to refresh; the files are small and checked in.

  proc_connector   NETLINK_CONNECTOR datagrams (fork, exec, exit, signal death) for a workload
  inotify_events   inotify read buffers for create/modify/rename/delete in a scratch tree
  audit_replies    NETLINK_AUDIT replies: AUDIT_GET, AUDIT_LIST_RULES (one temporary rule with
                   a unique key, deleted again), acks; plus record datagrams rebuilt from the
                   captured fixture sensor/src/sources/audit/fixtures/session.txt
  audit_records    the same fixture in the audit_records target's [selector][len][payload] form
  conntrack_msg    ctnetlink NEW/DESTROY events and a dump for one entry inserted (and deleted)
                   with the conntrack tool
  fanotify_parse   fanotify read buffers (fd mode and FID mode) for a workload
  procfs_parse     /proc/<pid>/{stat,cmdline,status,cgroup,uid_map} of this script and a child
  utmp_parse       the first records of /var/log/wtmp (if empty: records util-linux writes)
  redact_argv      /proc/<pid>/cmdline of workload processes holding secrets (and not)
  spool_scan / collector_ingest   see capture-spool (needs a sensor run; in scripts/fuzz-seeds)
"""
import ctypes
import ctypes.util
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def save(target, name, data):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def nlmsg(msg_type, flags, seq, payload):
    n = 16 + len(payload)
    b = struct.pack("=IHHII", n, msg_type, flags, seq, 0) + payload
    return b + b"\0" * (-len(b) % 4)


def workload(cwd):
    subprocess.run(["/bin/true"], cwd=cwd)
    subprocess.run(["/bin/sh", "-c", "exit 7"], cwd=cwd)
    p = subprocess.Popen(["/bin/sleep", "30"], cwd=cwd)
    p.send_signal(signal.SIGKILL)
    p.wait()


def proc_connector():
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 11)  # NETLINK_CONNECTOR
    s.bind((os.getpid(), 1))  # CN_IDX_PROC
    cn = struct.pack("=IIIIHHI", 1, 1, 0, 0, 4, 0, 1)  # PROC_CN_MCAST_LISTEN
    s.send(nlmsg(3, 0, 0, cn))  # NLMSG_DONE
    s.settimeout(0.5)
    with tempfile.TemporaryDirectory() as d:
        workload(d)
    seen = {}
    try:
        while len(seen) < 8:
            b = s.recv(65536)
            what = struct.unpack_from("=I", b, 36)[0] if len(b) >= 40 else None
            if what is None:
                continue
            key = what if what != 0x80000000 else (what, struct.unpack_from("=I", b, 36 + 16 + 8)[0])
            seen.setdefault(key, b)
    except socket.timeout:
        pass
    s.send(nlmsg(3, 0, 0, struct.pack("=IIIIHHI", 1, 1, 0, 0, 4, 0, 2)))  # IGNORE
    s.close()
    for i, b in enumerate(seen.values()):
        save("proc_connector", f"event-{i}", b)
    return len(seen)


def inotify():
    fd = libc.inotify_init1(os.O_NONBLOCK)
    assert fd >= 0
    with tempfile.TemporaryDirectory() as d:
        wd = libc.inotify_add_watch(fd, d.encode(), 0xFFF)  # IN_ALL_EVENTS
        assert wd >= 0
        with open(os.path.join(d, "a file.txt"), "w") as f:
            f.write("x")
        os.rename(os.path.join(d, "a file.txt"), os.path.join(d, "renamed-with-a-longer-name"))
        os.mkdir(os.path.join(d, "sub"))
        os.chmod(os.path.join(d, "sub"), 0o700)
        os.unlink(os.path.join(d, "renamed-with-a-longer-name"))
        os.rmdir(os.path.join(d, "sub"))
        time.sleep(0.1)
        buf = b""
        while True:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                break
            buf += chunk
    os.close(fd)
    save("inotify_events", "workload", buf)
    return len(buf)


AUDIT_GET, AUDIT_ADD_RULE, AUDIT_DEL_RULE, AUDIT_LIST_RULES = 1000, 1011, 1012, 1013


def audit_rule(key):
    mask = [0] * 64
    mask[59 // 32] |= 1 << (59 % 32)  # execve
    fields, values, flags = [11, 210], [0xC000003E, len(key)], [0x40000000, 0x40000000]
    fields += [0] * (64 - 2)
    values += [0] * (64 - 2)
    flags += [0] * (64 - 2)
    return struct.pack("=III", 4, 2, 2) + struct.pack("=64I", *mask) + struct.pack(
        "=64I", *fields
    ) + struct.pack("=64I", *values) + struct.pack("=64I", *flags) + struct.pack(
        "=I", len(key)
    ) + key


def audit_request(s, msg_type, payload, seq):
    s.send(nlmsg(msg_type, 1 | 4 | (0x300 if msg_type == AUDIT_LIST_RULES else 0), seq, payload))
    out = []
    s.settimeout(1.0)
    try:
        while True:
            b = s.recv(65536)
            out.append(b)
            t = struct.unpack_from("=H", b, 4)[0]
            if t == 3 or (t == 2 and msg_type != AUDIT_LIST_RULES and msg_type != AUDIT_GET):
                break
            if msg_type == AUDIT_GET and t == AUDIT_GET:
                break
    except socket.timeout:
        pass
    return out


def audit():
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 9)  # NETLINK_AUDIT
    s.bind((0, 0))
    n = 0
    for i, b in enumerate(audit_request(s, AUDIT_GET, b"", 1)):
        save("audit_replies", f"get-{i}", b)
        n += 1
    rule = audit_rule(b"sensor-fuzz-seed-%d" % os.getpid())
    added = audit_request(s, AUDIT_ADD_RULE, rule, 2)
    try:
        for i, b in enumerate(added):
            save("audit_replies", f"add-ack-{i}", b)
            n += 1
        for i, b in enumerate(audit_request(s, AUDIT_LIST_RULES, b"", 3)):
            save("audit_replies", f"list-{i}", b)
            n += 1
    finally:
        audit_request(s, AUDIT_DEL_RULE, rule, 4)
    # A refused request: deleting the rule again answers ENOENT.
    for i, b in enumerate(audit_request(s, AUDIT_DEL_RULE, rule, 5)):
        save("audit_replies", f"del-enoent-{i}", b)
        n += 1
    s.close()
    return n


def audit_fixture():
    path = os.path.join(REPO, "sensor/src/sources/audit/fixtures/session.txt")
    msgs = []
    with open(path, "rb") as f:
        for line in f:
            if line.startswith(b"#") or not line.strip():
                continue
            t, _, payload = line.rstrip(b"\n").partition(b" ")
            msgs.append((int(t), payload))
    # audit_replies: record datagrams (header as the kernel sends it: nlmsg_len excludes it).
    for i, (t, p) in enumerate(msgs[:12]):
        save("audit_replies", f"record-{i}", struct.pack("=IHHII", len(p), t, 0, 0, 0) + p)
    # audit_records: consecutive groups, raw-type selector 0xFF.
    chunk, k = b"", 0
    for t, p in msgs:
        p = p[:0xFFFF]
        chunk += bytes([0xFF]) + struct.pack("<HH", t, len(p)) + p
        if t == 1320 or len(chunk) > 2048:
            save("audit_records", f"group-{k}", chunk)
            chunk, k = b"", k + 1
            if k >= 12:
                break
    return len(msgs)


def conntrack():
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)  # NETLINK_NETFILTER
    s.bind((0, 0))
    s.send(nlmsg((1 << 8) | 1, 1 | 0x300, 1, struct.pack("=BBH", socket.AF_INET, 0, 0)))
    s.settimeout(1.0)
    n = 0
    try:
        while n < 6:
            b = s.recv(65536)
            if struct.unpack_from("=H", b, 4)[0] in (2, 3) and len(b) <= 40:
                break
            # The target's first byte: 0 = raw datagram.
            save("conntrack_msg", f"dump-{n}", b"\0" + b)
            n += 1
    except socket.timeout:
        pass
    s.close()
    return n


def fanotify():
    libc.fanotify_init.restype = ctypes.c_int
    libc.fanotify_mark.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_uint64, ctypes.c_int, ctypes.c_char_p]
    FAN_CLASS_NOTIF, FAN_NONBLOCK = 0, 2
    FAN_REPORT_DFID_NAME = 0x00000C00
    FAN_MARK_ADD = 1
    masks = 0x1 | 0x2 | 0x8 | 0x10 | 0x20  # access modify close_write close_nowrite open
    fid_masks = 0x2 | 0x4 | 0x100 | 0x200 | 0x40 | 0x80 | 0x40000000  # + attrib create delete moves ondir
    n = 0
    on_child = 0x08000000
    for name, flags, mask in (("fd", 0, masks | on_child), ("fid", FAN_REPORT_DFID_NAME, fid_masks)):
        fd = libc.fanotify_init(FAN_CLASS_NOTIF | FAN_NONBLOCK | flags, os.O_RDONLY)
        if fd < 0:
            continue
        with tempfile.TemporaryDirectory() as d:
            if libc.fanotify_mark(fd, FAN_MARK_ADD, mask, -100, d.encode()) != 0:
                os.close(fd)
                continue
            p = os.path.join(d, "seed file")
            with open(p, "w") as f:
                f.write("x")
            with open(p) as f:
                f.read()
            os.chmod(p, 0o600)
            os.rename(p, os.path.join(d, "moved"))
            os.unlink(os.path.join(d, "moved"))
            time.sleep(0.1)
            try:
                buf = os.read(fd, 65536)
            except BlockingIOError:
                buf = b""
        # fd mode hands us open fds inside the records: close them.
        if name == "fd":
            off = 0
            while off + 24 <= len(buf):
                ln, = struct.unpack_from("=I", buf, off)
                efd, = struct.unpack_from("=i", buf, off + 16)
                if efd >= 0:
                    try:
                        os.close(efd)
                    except OSError:
                        pass
                off += max(ln, 24)
        os.close(fd)
        if buf:
            save("fanotify_parse", name, buf)
            n += 1
    return n


def procfs():
    # This script and a child it starts: nothing of other processes on the host.
    child = subprocess.Popen(["/bin/sleep", "30"])
    n = 0
    try:
        for pid in (os.getpid(), child.pid):
            for f in ("stat", "cmdline", "status", "cgroup", "uid_map"):
                with open(f"/proc/{pid}/{f}", "rb") as fh:
                    save("procfs_parse", f"{f}-{n}", fh.read())
                n += 1
    finally:
        child.kill()
        child.wait()
    return n


UTMP_SESSION = """\
[2] [00000] [~~  ] [reboot  ] [~           ] [6.1.0-18-amd64      ] [0.0.0.0        ] [2026-12-06T04:34:00,000000+00:00]
[7] [01234] [ts/0] [alice   ] [pts/0       ] [192.0.2.7           ] [192.0.2.7      ] [2026-12-06T04:35:00,123456+00:00]
[8] [01234] [ts/0] [        ] [pts/0       ] [                    ] [0.0.0.0        ] [2026-12-06T04:36:00,000000+00:00]
[6] [01300] [    ] [root    ] [ssh:notty   ] [2001:db8::1         ] [2001:db8::1    ] [2026-12-06T04:37:00,000000+00:00]
"""


def utmp():
    try:
        with open("/var/log/wtmp", "rb") as f:
            data = f.read(384 * 6)
    except OSError:
        data = b""
    if not data:
        # An empty wtmp (containers): util-linux writes a boot, a login, its logout and a
        # failed ssh login in the C library's record layout.
        data = subprocess.run(["utmpdump", "-r"], input=UTMP_SESSION.encode(),
                              capture_output=True, check=True).stdout
    save("utmp_parse", "wtmp-head", data)
    return len(data) // 384


def conntrack_insert():
    """A real ctnetlink NEW event and dump entry: one conntrack entry inserted with the
    conntrack tool (TEST-NET addresses), captured from the multicast group, then deleted."""
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)
    s.bind((0, 1 | 4))  # NFNLGRP_CONNTRACK_NEW | NFNLGRP_CONNTRACK_DESTROY
    entry = ["-p", "tcp", "-s", "192.0.2.1", "-d", "198.51.100.2", "--sport", "40000",
             "--dport", "443"]
    subprocess.run(["conntrack", "-I", *entry, "--state", "ESTABLISHED", "-t", "30",
                    "-u", "ASSURED"], check=True, capture_output=True)
    n = 0
    try:
        s.settimeout(1.0)
        save("conntrack_msg", "event-new", b"\0" + s.recv(65536))
        n += 1
        n += conntrack()
    finally:
        subprocess.run(["conntrack", "-D", *entry], capture_output=True)
    try:
        save("conntrack_msg", "event-destroy", b"\0" + s.recv(65536))
        n += 1
    except socket.timeout:
        pass
    s.close()
    return n


# Command lines the redactor must handle (the issue 16 gaps and ordinary neighbours), run for
# real so the seed is the kernel's /proc/<pid>/cmdline bytes.
WORKLOADS = [
    ["curl", "-d", '{"password":"hunter2"}', "https://x"],
    ["sqlplus", "scott/tiger@orcl"],
    ["nmcli", "device", "wifi", "connect", "X", "password", "hunter2"],
    ["openssl", "enc", "-aes-256-cbc", "-K", "00112233445566778899aabbccddeeff", "-in", "f"],
    ["az", "login", "-u", "me", "-p", "pw"],
    ["env", "DB_PW=x", "cmd"],
    ["curl", "https://hooks.slack.com/services/T0000000/B0000000/XXXXXXXXXXXXXXXXXXXXXXXX"],
    ["curl", "-H", "X-Auth-Key: abc123", "-H", "Authorization: Bearer tok", "https://x"],
    ["mysql", "-uroot", "-phunter2", "db"],
    ["sh", "-c", "PASSWORD=hunter2 ./run.sh && sshpass -p pw ssh h"],
    ["git", "clone", "https://me:hunter2@git.example/r.git"],
    ["ls", "-la", "/tmp", "--color=auto"],
]


def redact():
    n = 0
    for argv in WORKLOADS:
        # sh runs `sleep` and keeps the workload's argv as its positional parameters.
        p = subprocess.Popen(["/bin/sh", "-c", "sleep 30", *argv])
        try:
            time.sleep(0.05)
            with open(f"/proc/{p.pid}/cmdline", "rb") as f:
                parts = f.read().rstrip(b"\0").split(b"\0")
        finally:
            p.kill()
            p.wait()
        save("redact_argv", f"cmdline-{n}", b"\0".join(parts[3:]))
        n += 1
    return n


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("capture.py: run as root (netlink audit, connector, fanotify)")
    for name, f in [("proc_connector", proc_connector), ("inotify_events", inotify),
                    ("audit_replies", audit), ("audit fixture", audit_fixture),
                    ("conntrack_msg", conntrack_insert), ("fanotify_parse", fanotify),
                    ("procfs_parse", procfs), ("utmp_parse", utmp), ("redact_argv", redact)]:
        print(f"{name}: {f()}")
