#!/usr/bin/env python3
"""An independent gRPC client (and fake collector) for the attack tests: Python grpcio with
stubs generated at run time from the project's sensor-proto/sensor.proto. Every subcommand prints
one JSON object on stdout.

  stubs DIR                        generate sensor_pb2*.py into DIR (grpcio-tools)
  send ...                         Hello + batches; prints the acks or the error
  amplify ...                      Hello + one message of N repeated `22 00` (default events)
  streams --n N ...                open N concurrent streams (Hello each, then hold them); how
                                   many were welcomed and how many refused, by status
  idle --addr HOST:PORT --n N      open N TCP connections, send nothing (or with --partial,
                                   half an HTTP/2 preface), hold them
  bind --socket PATH               try to listen on PATH (as an impostor collector would)
  fake-collector --port P ...      a collector impostor: acks batch ids it never received
"""
import argparse
import json
import os
import socket
import sys
import threading
import time


def out(obj):
    print(json.dumps(obj), flush=True)


def load_stubs(d):
    sys.path.insert(0, d)
    import sensor_pb2  # noqa: E402
    import sensor_pb2_grpc  # noqa: E402
    return sensor_pb2, sensor_pb2_grpc


def cmd_stubs(a):
    from grpc_tools import protoc
    proto = os.path.abspath(a.proto)
    rc = protoc.main(["protoc", f"-I{os.path.dirname(proto)}", f"--python_out={a.dir}",
                      f"--grpc_python_out={a.dir}", proto])
    out({"rc": rc})
    sys.exit(rc)


def channel(a, extra=()):
    import grpc
    opts = [("grpc.max_send_message_length", 64 << 20),
            ("grpc.max_receive_message_length", 64 << 20), *extra]
    if a.target.startswith("unix:"):
        # grpcio's default authority for a unix target is the escaped path ('%2F'), which
        # HTTP/2 servers built on hyper refuse; name the host instead.
        opts.append(("grpc.default_authority", "localhost"))
    if a.ca:
        creds = grpc.ssl_channel_credentials(
            root_certificates=open(a.ca, "rb").read(),
            private_key=open(a.key, "rb").read() if a.key else None,
            certificate_chain=open(a.cert, "rb").read() if a.cert else None)
        opts.append(("grpc.ssl_target_name_override", a.server_name))
        return grpc.secure_channel(a.target, creds, options=opts)
    return grpc.insecure_channel(a.target, options=opts)


def run_stream(a, messages, raw=False):
    """Sends `messages` (SensorMessage objects, or bytes when raw) and collects replies."""
    import grpc
    pb, _ = load_stubs(a.stubs)
    ch = channel(a)
    call = ch.stream_stream(
        "/sensor.v1.Ingest/Stream",
        request_serializer=(lambda b: b) if raw else pb.SensorMessage.SerializeToString,
        response_deserializer=pb.CollectorMessage.FromString)
    comp = grpc.Compression.Gzip if getattr(a, "gzip", False) else grpc.Compression.NoCompression
    res = {"welcome": False, "acks": [], "code": "OK", "details": ""}
    t0 = time.time()
    try:
        for r in call(iter(messages), timeout=a.timeout, compression=comp):
            kind = r.WhichOneof("msg")
            if kind == "welcome":
                res["welcome"] = True
            elif kind == "ack":
                res["acks"].append({"batch_id": r.ack.batch_id, "stored": r.ack.stored,
                                    "duplicates": r.ack.duplicates})
    except grpc.RpcError as e:
        res["code"] = e.code().name
        res["details"] = e.details() or ""
    res["seconds"] = round(time.time() - t0, 3)
    ch.close()
    return res


def hello(pb, a, host=None):
    return pb.SensorMessage(hello=pb.Hello(
        sensor_id=a.sensor_id, boot_id=a.boot_id, version="attack", host=host or a.host,
        kernel="k", mode="ebpf", protocol_version=1, sent_unix_ns=time.time_ns()))


def batch(pb, a, first, count, batch_id, event_host):
    evs = [pb.Event(seq=first + i, time_unix_ns=time.time_ns(), host=event_host,
                    source=pb.SOURCE_EBPF, kind=pb.KIND_PROCESS_EXEC,
                    process=pb.Process(pid=4242, comm=f"{a.marker}-{first + i}",
                                       argv=pb.Argv(args=[a.marker, str(first + i)])))
           for i in range(count)]
    return pb.SensorMessage(batch=pb.Batch(
        sensor_id=a.sensor_id, boot_id=a.boot_id, first_seq=first, events=evs,
        batch_id=batch_id, sent_unix_ns=time.time_ns()))


def cmd_send(a):
    pb, _ = load_stubs(a.stubs)
    msgs = [hello(pb, a, a.hello_host)]
    for i in range(a.batches):
        first = a.first_seq + i * a.events
        msgs.append(batch(pb, a, first, a.events, 1000 + i, a.event_host or a.host))
    out(run_stream(a, msgs))


def cmd_streams(a):
    """N concurrent streams, each on its own connection (the per-connection stream limit
    does not apply across connections), each sends a Hello and then waits: held until stdin
    closes, so the test can check what else is served meanwhile."""
    import grpc
    pb, _ = load_stubs(a.stubs)
    chans = []
    release = threading.Event()
    results = []
    lock = threading.Lock()

    def one(i):
        def msgs():
            yield hello(pb, a)
            release.wait()
        # A distinct channel argument keeps grpcio from sharing one connection.
        ch = channel(a, extra=[("sensor-test.stream", i)])
        with lock:
            chans.append(ch)
        call = ch.stream_stream(
            "/sensor.v1.Ingest/Stream",
            request_serializer=pb.SensorMessage.SerializeToString,
            response_deserializer=pb.CollectorMessage.FromString)
        it = call(msgs(), timeout=a.timeout)
        try:
            r = next(it)
            got = "welcome" if r.WhichOneof("msg") == "welcome" else "other"
        except grpc.RpcError as e:
            got = e.code().name
        with lock:
            results.append(got)
        if got == "welcome":
            release.wait()
            it.cancel()

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(a.n)]
    for t in threads:
        t.start()
    deadline = time.time() + a.timeout
    while time.time() < deadline:
        with lock:
            if len(results) == a.n:
                break
        time.sleep(0.05)
    with lock:
        counts = {k: results.count(k) for k in set(results)}
    out({"opened": a.n, "results": counts})
    sys.stdin.read()
    release.set()
    for t in threads:
        t.join(timeout=5)
    for ch in chans:
        ch.close()
    print(json.dumps({"done": True}), file=sys.stderr, flush=True)


def varint(n):
    b = bytearray()
    while n >= 0x80:
        b.append((n & 0x7F) | 0x80)
        n >>= 7
    b.append(n)
    return bytes(b)


def cmd_amplify(a):
    pb, _ = load_stubs(a.stubs)
    h = hello(pb, a).SerializeToString()
    # Batch{ sensor_id, boot_id, first_seq: 0, events: N x empty Event } as raw wire bytes.
    inner = (b"\x0a" + varint(len(a.sensor_id)) + a.sensor_id.encode()
             + b"\x12" + varint(len(a.boot_id)) + a.boot_id.encode()
             + b"\x22\x00" * a.count)
    msg = b"\x12" + varint(len(inner)) + inner
    res = run_stream(a, [h, msg], raw=True)
    res["message_bytes"] = len(msg)
    out(res)


def cmd_idle(a):
    host, port = a.addr.rsplit(":", 1)
    socks, failed = [], 0
    for _ in range(a.n):
        try:
            s = socket.create_connection((host, int(port)), timeout=5)
            if a.partial:
                s.sendall(b"PRI * HTTP/2.0\r\n")  # 16 of the preface's 24 bytes
            socks.append(s)
        except OSError:
            failed += 1
    out({"opened": len(socks), "failed": failed})
    # Held until stdin closes (the test decides when the attack ends).
    sys.stdin.read()
    alive = 0
    for s in socks:
        s.setblocking(False)
        try:
            alive += 1 if s.recv(1) != b"" else 0
        except BlockingIOError:
            alive += 1
        except OSError:
            pass
        s.close()
    print(json.dumps({"still_open": alive}), file=sys.stderr, flush=True)


def cmd_bind(a):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.bind(a.socket)
        s.listen(1)
        out({"bound": True})
    except OSError as e:
        out({"bound": False, "errno": e.errno, "error": str(e)})


def cmd_listen(a):
    """An impostor collector socket: counts connections and bytes until stdin closes."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.bind(a.socket)
        s.listen(16)
    except OSError as e:
        out({"bound": False, "errno": e.errno, "error": str(e)})
        return
    out({"bound": True})
    got = {"connections": 0, "bytes": 0}

    def serve():
        while True:
            try:
                c, _ = s.accept()
            except OSError:
                return
            got["connections"] += 1
            c.settimeout(1)
            try:
                while True:
                    b = c.recv(65536)
                    if not b:
                        break
                    got["bytes"] += len(b)
            except OSError:
                pass
            c.close()

    threading.Thread(target=serve, daemon=True).start()
    sys.stdin.read()
    s.close()
    print(json.dumps(got), file=sys.stderr, flush=True)


def cmd_connect(a):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(a.socket)
        out({"connected": True})
    except OSError as e:
        out({"connected": False, "errno": e.errno, "error": str(e)})


def cmd_fake_collector(a):
    """Acks batch ids the sensor never sent (received id + max_in_flight + 1 ...), never the
    real ones, so the only way the sensor's spool can shrink is by honouring a fake ack."""
    import grpc
    from concurrent import futures
    pb, pbg = load_stubs(a.stubs)
    seen = {"received": [], "faked": 0}
    lock = threading.Lock()

    class Fake(pbg.IngestServicer):
        def Stream(self, request_iterator, context):
            yield pb.CollectorMessage(welcome=pb.Welcome(
                version="fake", protocol_version=1, max_message_bytes=16 << 20,
                max_batch_events=20000))
            for m in request_iterator:
                if m.WhichOneof("msg") != "batch":
                    continue
                b = m.batch.batch_id
                with lock:
                    seen["received"].append(b)
                # Let the sensor spool more batches (ids past its window, never sent), then
                # ack those.
                time.sleep(a.delay)
                for fake in range(b + 1, b + 1 + a.per_batch):
                    with lock:
                        if fake in seen["received"]:
                            continue
                        seen["faked"] += 1
                    yield pb.CollectorMessage(ack=pb.Ack(batch_id=fake, stored=1))

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pbg.add_IngestServicer_to_server(Fake(), server)
    port = server.add_insecure_port(f"127.0.0.1:{a.port}")
    server.start()
    out({"port": port})
    sys.stdin.read()
    server.stop(0)
    with lock:
        print(json.dumps({"received": sorted(set(seen["received"])), "faked": seen["faked"]}),
              file=sys.stderr, flush=True)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("stubs")
    s.add_argument("dir")
    s.add_argument("--proto", required=True)

    def client(sp):
        sp.add_argument("--stubs", required=True)
        sp.add_argument("--target", required=True)
        sp.add_argument("--ca")
        sp.add_argument("--cert")
        sp.add_argument("--key")
        sp.add_argument("--server-name", default="localhost")
        sp.add_argument("--sensor-id", default="attack-sensor")
        sp.add_argument("--boot-id", default="attack-boot")
        sp.add_argument("--host", default="attacker")
        sp.add_argument("--timeout", type=float, default=60)
        sp.add_argument("--marker", default="attack-marker")

    s = sub.add_parser("send")
    client(s)
    s.add_argument("--hello-host")
    s.add_argument("--event-host")
    s.add_argument("--first-seq", type=int, default=1)
    s.add_argument("--events", type=int, default=10)
    s.add_argument("--batches", type=int, default=1)
    s = sub.add_parser("amplify")
    client(s)
    s.add_argument("--count", type=int, default=(16 << 20) // 2 - 64)
    s.add_argument("--gzip", action="store_true")
    s = sub.add_parser("streams")
    client(s)
    s.add_argument("--n", type=int, default=9)
    s = sub.add_parser("idle")
    s.add_argument("--addr", required=True)
    s.add_argument("--n", type=int, default=1000)
    s.add_argument("--partial", action="store_true")
    s = sub.add_parser("bind")
    s.add_argument("--socket", required=True)
    s = sub.add_parser("connect")
    s.add_argument("--socket", required=True)
    s = sub.add_parser("fake-collector")
    s.add_argument("--stubs", required=True)
    s.add_argument("--port", type=int, default=0)
    s.add_argument("--per-batch", type=int, default=50)
    s.add_argument("--delay", type=float, default=3.0)
    s = sub.add_parser("listen")
    s.add_argument("--socket", required=True)
    a = p.parse_args()
    {"stubs": cmd_stubs, "send": cmd_send, "amplify": cmd_amplify, "idle": cmd_idle, "streams": cmd_streams,
     "bind": cmd_bind, "connect": cmd_connect, "listen": cmd_listen,
     "fake-collector": cmd_fake_collector}[a.cmd](a)


if __name__ == "__main__":
    main()
