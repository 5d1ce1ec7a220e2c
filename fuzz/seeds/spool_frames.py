#!/usr/bin/env python3
"""Turns a real spool segment into seeds (see capture-spool.sh):

  spool_scan/segment         [0] + the segment's first frames (whole, real CRCs), <= 16 KiB
  spool_scan/frames          [1] + the same frames as [flags][len u16 le][payload] pieces
  collector_ingest/batch-N   [1] + one spooled batch (an encoded sensor.v1.Batch)
  collector_ingest/message-0 [0] + a SensorMessage holding the first batch, as on the wire
"""
import os
import struct
import sys

seg_path, out = sys.argv[1], sys.argv[2]
data = open(seg_path, "rb").read()
assert data[:8] == b"SNSPOOL1", "not a spool segment"
frames, off = [], 8
while off + 12 <= len(data):
    ln, _crc, flags = struct.unpack_from("<III", data, off)
    end = off + 12 + ln
    if end > len(data):
        break
    frames.append((off, end, flags, data[off + 12 : end]))
    off = end


def save(target, name, b):
    os.makedirs(os.path.join(out, target), exist_ok=True)
    with open(os.path.join(out, target, name), "wb") as f:
        f.write(b)


keep = [f for f in frames if f[1] <= 16 * 1024] or frames[:1]
save("spool_scan", "segment", b"\0" + data[: keep[-1][1]])
save("spool_scan", "frames", b"\1" + b"".join(
    bytes([flags & 0xFF]) + struct.pack("<H", len(p)) + p for _, _, flags, p in keep if len(p) <= 0xFFFF))
small = sorted((f for f in frames), key=lambda f: len(f[3]))[:6]
for i, (_, _, _, p) in enumerate(small):
    save("collector_ingest", f"batch-{i}", b"\1" + p)


def varint(n):
    b = b""
    while True:
        c = n & 0x7F
        n >>= 7
        if n:
            b += bytes([c | 0x80])
        else:
            return b + bytes([c])


p = small[0][3]
save("collector_ingest", "message-0", b"\0" + b"\x12" + varint(len(p)) + p)
print(f"{len(frames)} frames in {seg_path}; seeds: {len(keep)} frames, {len(small)} batches")
