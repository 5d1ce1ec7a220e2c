#!/usr/bin/env python3
"""Tests of the kernel-matrix verdict from captured console logs (no qemu needed).

    python3 scripts/kernel-matrix.d/test_kmatrix.py
"""
import gzip
import io
import json
import lzma
import os
import sys
import unittest
from contextlib import redirect_stdout

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kmatrix  # noqa: E402

FIX = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
EBPF = ("kmabc-deb12-6.1-default", 23456)
AUDIT = ("kmxyz-sid-7.x-lockdown", 31000)


def load(name):
    with open(os.path.join(FIX, name)) as f:
        return kmatrix.parse_console(f.read())


def verdict(name, marker, port, expect):
    out = io.StringIO()
    with redirect_stdout(out):
        rc = kmatrix.main(["verdict", os.path.join(FIX, name), "--marker", marker,
                           "--port", str(port), "--expect", expect])
    return rc, out.getvalue().strip()


class Verdict(unittest.TestCase):
    def test_ebpf_cell_passes(self):
        self.assertEqual(verdict("ebpf_pass.log", EBPF[0], EBPF[1], "ebpf"),
                         (0, "ebpf PASS: auto: ebpf is the first usable rung"))

    def test_audit_cell_with_crlf_and_kernel_noise_passes(self):
        events, complete, bad = load("audit_pass.log")
        self.assertTrue(complete)
        self.assertEqual((len(events), bad), (4, 1))
        self.assertEqual(verdict("audit_pass.log", AUDIT[0], AUDIT[1], "audit"),
                         (0, "audit PASS: ebpf load failed: Operation not permitted"))

    def test_wrong_mode_fails_and_names_the_reason(self):
        rc, line = verdict("ebpf_pass.log", EBPF[0], EBPF[1], "audit")
        self.assertEqual(rc, 1)
        self.assertIn("mode ebpf (expected audit)", line)

    def test_expect_files_needs_a_file_event_from_a_files_rung(self):
        events, _, _ = load("audit_pass.log")
        marker, port = AUDIT
        _, reasons = kmatrix.judge(events, marker, port, "audit", expect_files=True)
        self.assertEqual(reasons, ["no file event on /etc/km-file-" + marker])
        f = {"kind": "file", "source": "fanotify", "file": {"path": "/etc/km-file-" + marker}}
        self.assertEqual(kmatrix.judge(events + [f], marker, port, "audit", True)[1], [])
        f["source"] = "audit"
        self.assertIn("file event from source audit (expected fanotify or inotify)",
                      kmatrix.judge(events + [f], marker, port, "audit", True)[1])

    def test_no_events_fails(self):
        rc, line = verdict("no_events.log", "kmq", 20000, "audit")
        self.assertEqual((rc, line), (1, "- FAIL: no events at all"))

    def test_other_marker_or_port_fails(self):
        rc, line = verdict("ebpf_pass.log", "km-other-run", EBPF[1], "ebpf")
        self.assertEqual(rc, 1)
        self.assertIn('0 exec events with argv ending ["-c", "exit 7", "km-other-run"]', line)
        rc, line = verdict("ebpf_pass.log", EBPF[0], 23457, "ebpf")
        self.assertEqual(rc, 1)
        self.assertIn("no tcp connect to 127.0.0.1:23457", line)

    def test_truncated_console_fails_even_if_prefix_looks_good(self):
        rc, line = verdict("truncated.log", EBPF[0], EBPF[1], "ebpf")
        self.assertEqual(rc, 1)
        self.assertIn("no exit with code 7", line)
        self.assertIn("no tcp connect", line)
        self.assertIn("ended before the END line", line)

    def test_each_missing_piece_is_reported(self):
        events, _, _ = load("ebpf_pass.log")
        for kind, reason in (("process_exit", "no exit with code 7"),
                             ("net_connect", "no tcp connect"),
                             ("process_exec", "0 exec events")):
            kept = [e for e in events if e["kind"] != kind]
            mode, reasons = kmatrix.judge(kept, EBPF[0], EBPF[1], "ebpf")
            self.assertEqual(mode, "ebpf")
            self.assertEqual(len(reasons), 1, reasons)
            self.assertIn(reason, reasons[0])

    def test_marker_elsewhere_in_argv_does_not_count(self):
        events, _, _ = load("ebpf_pass.log")
        script = {"kind": "process_exec", "process": {"pid": 60, "argv": [
            "sh", "/workload.sh", "/bin/busybox", EBPF[0], str(EBPF[1])]}}
        _, reasons = kmatrix.judge(events + [script], EBPF[0], EBPF[1], "ebpf")
        self.assertEqual(reasons, [])
        _, reasons = kmatrix.judge([e for e in events if e["kind"] != "process_exec"] + [script],
                                   EBPF[0], EBPF[1], "ebpf")
        self.assertEqual(len(reasons), 1, reasons)
        self.assertIn("0 exec events", reasons[0])

    def test_wrong_exit_code_or_udp_connect_fails(self):
        events, _, _ = load("ebpf_pass.log")
        events = json.loads(json.dumps(events))
        events[2]["exit"]["code"] = 0
        events[4]["connect"]["protocol"] = "udp"
        _, reasons = kmatrix.judge(events, EBPF[0], EBPF[1], "ebpf")
        self.assertEqual(len(reasons), 2, reasons)

    def test_events_from_another_source_fail(self):
        events, _, _ = load("ebpf_pass.log")
        for i in (1, 2, 4):  # the marker exec, its exit, the connect
            changed = json.loads(json.dumps(events))
            changed[i]["source"] = "audit"
            _, reasons = kmatrix.judge(changed, EBPF[0], EBPF[1], "ebpf")
            self.assertEqual(len(reasons), 1, reasons)
            self.assertIn("from source audit (expected ebpf)", reasons[0])

    def test_mode_change_during_run_fails(self):
        events, _, _ = load("ebpf_pass.log")
        events[-1]["health"]["mode"] = "audit"
        _, reasons = kmatrix.judge(events, EBPF[0], EBPF[1], "ebpf")
        self.assertEqual(reasons, ["mode changed during the run: ebpf -> audit"])

    def test_plain_json_lines_file_is_accepted(self):
        events, _, _ = load("ebpf_pass.log")
        text = "\n".join(json.dumps(e) for e in events)
        parsed, complete, bad = kmatrix.parse_console(text)
        self.assertEqual((parsed, complete, bad), (events, True, 0))


class Attacks(unittest.TestCase):
    PORT = 30000
    PROBE = ("@@KM-BEGIN probe\n"
             "ebpf: ia32 connect           seen   cgroup connect4/connect6, result from ...\n"
             "ebpf: io_uring connect       {uring}   cgroup connect4/connect6; blind spot: ...\n"
             "ebpf: ia32 set*id/capset     seen   at the call\n"
             "@@KM-END probe\n")
    RUN = ("@@KM attack connect32 connect32 pid=11 ret=-111\n"
           "@@KM attack socketcall_connect socketcall_connect pid=12 ret=-111\n"
           "@@KM attack uring_connect uring_connect pid=13 res=-111\n"
           "@@KM attack setuid32 setuid32 pid=14 ret=0 uid=65534\n")

    def connect(self, pid, result):
        return {"kind": "net_connect", "process": {"pid": pid},
                "connect": {"dst_port": self.PORT + 1, "result": result}}

    def events(self, uring_result="refused", via="setuid"):
        return [self.connect(11, "refused"), self.connect(12, "refused"),
                self.connect(13, uring_result),
                {"kind": "privilege_change", "process": {"pid": 14},
                 "privilege": {"new_uid": 65534, "via": via}}]

    def judge(self, events, uring="seen", run=None):
        text = self.PROBE.format(uring=uring) + (self.RUN if run is None else run)
        return kmatrix.judge_attacks(events, text, self.PORT, "ebpf")

    def test_every_attack_seen_with_its_result(self):
        summary, reasons = self.judge(self.events())
        self.assertEqual(reasons, [])
        self.assertEqual(summary, "connect32 refused, socketcall_connect refused, "
                                  "uring_connect refused, setuid32 setuid")

    def test_a_wrong_result_or_a_late_setuid_fails(self):
        _, reasons = self.judge(self.events(uring_result="attempted", via="observed"))
        self.assertEqual(len(reasons), 2, reasons)
        self.assertIn("uring_connect: result attempted (expected refused)", reasons[0])
        self.assertIn("not seen at the call", reasons[1])

    @staticmethod
    def health(skipped):
        return {"kind": "sensor_health",
                "health": {"events": {"ebpf_syscall_hook_misses": skipped}, "drops": {}}}

    def test_a_late_ia32_report_passes_only_when_skipped_runs_were_counted(self):
        late = self.events(via="observed")
        late[0] = self.connect(11, "attempted")
        _, reasons = self.judge(late + [self.health(0)])
        self.assertEqual(len(reasons), 2, reasons)
        self.assertIn("connect32: result attempted (expected refused)", reasons[0])
        self.assertIn("not seen at the call", reasons[1])
        summary, reasons = self.judge(late + [self.health(7)])
        self.assertEqual(reasons, [])
        self.assertIn("connect32 attempted(late: 7 hook runs skipped)", summary)
        self.assertIn("setuid32 observed(late: 7 hook runs skipped)", summary)
        # Not for io_uring (its result never goes through the syscall hooks), nor for a
        # wrong result other than `attempted`.
        bad = self.events(uring_result="attempted")
        bad[0] = self.connect(11, "success")
        _, reasons = self.judge(bad + [self.health(7)])
        self.assertEqual(len(reasons), 2, reasons)

    def test_a_named_blind_spot_passes_without_the_result(self):
        summary, reasons = self.judge(self.events(uring_result="attempted"), uring="PART")
        self.assertEqual(reasons, [])
        self.assertIn("uring_connect attempted(named)", summary)
        _, reasons = self.judge(self.events()[:2] + self.events()[3:], uring="PART")
        self.assertIn("uring_connect (pid 13, ret -111): 0 connect events", reasons[0])

    def test_missing_attacks_or_probe_fail_and_unsupported_is_na(self):
        _, reasons = kmatrix.judge_attacks(self.events(), "", self.PORT, "ebpf")
        self.assertIn("no sensor probe coverage in the log", reasons)
        self.assertIn("attack connect32 did not run", reasons)
        run = self.RUN.replace("pid=11 ret=-111", "pid=11 ret=-38").replace(
            "uring_connect pid=13 res=-111", "io_uring_setup: Function not implemented")
        summary, reasons = self.judge(self.events(), run=run)
        self.assertEqual(reasons, [])
        self.assertIn("connect32 n/a", summary)
        self.assertIn("uring_connect n/a", summary)


class NoIa32(unittest.TestCase):
    """A kernel booted with ia32_emulation=0 (the `noia32` config)."""
    PROBE = ("@@KM-BEGIN probe\n"
             "ebpf: ia32 connect           none   this kernel has no ia32 entry (int 0x80 ...\n"
             "ebpf: io_uring connect       seen   cgroup connect4/connect6, result from ...\n"
             "ebpf: ia32 set*id/capset     none   this kernel has no ia32 entry (int 0x80 ...\n"
             "@@KM-END probe\n")
    # A faulted attack prints no result line (as on 7.2 with ia32_emulation=0).
    RUN = ("@@KM attack connect32 \n"
           "@@KM attack socketcall_connect \n"
           "@@KM attack uring_connect uring_connect pid=13 res=-111\n"
           "@@KM attack setuid32 \n")
    NOTE = ("auto: ebpf is the first usable rung; ia32: this kernel has no ia32 entry (int "
            "0x80 faults): no 32-bit syscalls to see; the raw_syscalls hooks are not attached; "
            "files: fanotify-fid")

    def health(self, reason):
        return [{"kind": "sensor_health", "health": {"mode": "ebpf", "reason": reason}}]

    def test_faulted_attacks_none_rows_and_the_note_pass(self):
        summary, reasons = kmatrix.judge_no_ia32(self.health(self.NOTE), self.PROBE + self.RUN)
        self.assertEqual(reasons, [])
        self.assertIn("ia32 none", summary)

    def test_an_ia32_call_that_entered_the_kernel_fails(self):
        run = self.RUN.replace("setuid32 \n", "setuid32 setuid32 pid=14 ret=0\n")
        _, reasons = kmatrix.judge_no_ia32(self.health(self.NOTE), self.PROBE + run)
        self.assertEqual(len(reasons), 1, reasons)
        self.assertIn("setuid32 entered the kernel", reasons[0])

    def test_hooks_attached_or_rows_seen_fail(self):
        probe = self.PROBE.replace("ia32 connect           none", "ia32 connect           seen")
        _, reasons = kmatrix.judge_no_ia32(self.health("requested ebpf: usable"),
                                           probe + self.RUN)
        self.assertEqual(len(reasons), 2, reasons)
        self.assertIn("probe row 'ebpf: ia32 connect' is seen", reasons[0])
        self.assertIn("does not say the kernel has no ia32 entry", reasons[1])
        blind = self.NOTE + "; blind spot: ia32 (int 0x80) syscalls: ..."
        _, reasons = kmatrix.judge_no_ia32(self.health(blind), self.PROBE + self.RUN)
        self.assertIn("an ia32 blind spot is named", reasons[0])

    def test_probe_rows_parse_none(self):
        rows = kmatrix.parse_probe(self.PROBE)
        self.assertEqual(rows["ebpf: ia32 connect"], "none")
        self.assertEqual(rows["ebpf: io_uring connect"], "seen")


class RealCaptures(unittest.TestCase):
    """Console logs captured from scripts/kernel-matrix runs (Debian 6.1 default, sid 7.2
    under lockdown=confidentiality), with the marker and port those runs used."""

    def test_ebpf_capture_from_6_1(self):
        args = ("real_deb12-6.1_default.log", "kmddeddc92-deb12-6.1-default", 25423)
        self.assertEqual(verdict(*args, expect="ebpf")[0], 0)
        rc, line = verdict(*args, expect="audit")
        self.assertEqual(rc, 1)
        self.assertIn("mode ebpf (expected audit)", line)
        rc, line = verdict(args[0], "kmddeddc92-deb12-6.1-lockdown", args[2], "ebpf")
        self.assertEqual(rc, 1)

    def test_audit_fallback_capture_from_7_2_lockdown(self):
        args = ("real_sid-7.x_lockdown.log", "kme15897be-sid-7.x-lockdown", 20517)
        rc, line = verdict(*args, expect="audit")
        self.assertEqual(rc, 0, line)
        self.assertIn("tracefs is mounted at /sys/kernel/tracing but", line)
        events, complete, bad = load(args[0])
        self.assertTrue(complete)
        self.assertEqual(bad, 0)
        self.assertEqual(verdict(args[0], args[1], 20518, "audit")[0], 1)


class RealAttackCapture(unittest.TestCase):
    """A scripts/kernel-matrix cell with the blind-spot attacks (Debian 5.10, default): the
    io_uring tracepoints there carry no request pointer, so the probe names that blind spot
    and the io_uring connect passes as `attempted`; the ia32 ones carry their result."""
    ARGS = ("real_deb11-5.10_default_attacks.log", "km4d654caa-deb11-5.10-default", 37853)

    def test_passes_with_each_attack_judged(self):
        out = io.StringIO()
        with redirect_stdout(out):
            rc = kmatrix.main(["verdict", os.path.join(FIX, self.ARGS[0]), "--marker",
                               self.ARGS[1], "--port", str(self.ARGS[2]), "--expect", "ebpf",
                               "--attacks"])
        self.assertEqual(rc, 0, out.getvalue())
        self.assertIn("[connect32 refused, socketcall_connect refused, uring_connect "
                      "attempted(named), setuid32 setuid]", out.getvalue())

    def test_probe_rows(self):
        with open(os.path.join(FIX, self.ARGS[0])) as f:
            rows = kmatrix.parse_probe(f.read())
        self.assertEqual(rows["ebpf: io_uring connect"], "PART")
        self.assertEqual(rows["ebpf: ia32 connect"], "seen")
        self.assertEqual(rows["audit: io_uring connect"], "BLIND")


class ExtractVmlinux(unittest.TestCase):
    ELF = b"\x7fELF" + bytes(range(256)) * 64

    def image(self, payload):
        # A bzImage-like blob: setup code, a false gzip magic, then the compressed kernel.
        return b"MZ" + b"\x00" * 500 + b"\x1f\x8b\x08garbage" + payload + b"\x00" * 64

    def test_xz_payload(self):
        blob = self.image(lzma.compress(self.ELF, format=lzma.FORMAT_XZ))
        self.assertEqual(kmatrix.extract_vmlinux(blob), self.ELF)

    def test_gzip_payload(self):
        self.assertEqual(kmatrix.extract_vmlinux(self.image(gzip.compress(self.ELF))), self.ELF)

    def test_no_kernel_raises(self):
        with self.assertRaises(ValueError):
            kmatrix.extract_vmlinux(self.image(gzip.compress(b"not an elf")))


if __name__ == "__main__":
    unittest.main()
