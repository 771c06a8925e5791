#!/usr/bin/env python3
"""Read a loopback capture (pcap, as tcpdump -w writes it) of one racelab
http race and say how together the buyers' first requests completed.

    release-capture.py FILE.pcap PORT h1|h2 [--expect-sync] [--buyers N] [--path /purchase]
    release-capture.py summary JSON SERVER_US RACELAB_US

Race with --attempts 1, so that every request seen is a buyer's first.
h1: for every client connection to PORT, the segment that completed its
first request (its head and content-length bytes of body); with
--expect-sync each must be a one-byte segment. h2: every stream's
END_STREAM frame (DATA or HEADERS) on each client connection; with
--expect-sync those of one connection must all be in one segment. Prints one JSON line: the spread (first to last
completing segment, in microseconds) and what was checked. Exit 1 when an
expectation fails. No third-party modules: the pcap and TCP framing are read
by hand.
"""

import json
import struct
import sys


def packets(path):
    """(timestamp in µs, src port, dst port, seq, payload) of TCP/IPv4 packets."""
    with open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack("<I", data[:4])[0]
    if magic == 0xA1B2C3D4:
        endian, nano = "<", False
    elif magic == 0xA1B23C4D:
        endian, nano = "<", True
    elif magic == 0xD4C3B2A1:
        endian, nano = ">", False
    else:
        raise SystemExit(f"{path}: not a pcap file")
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    off = 24
    while off + 16 <= len(data):
        sec, frac, incl, _ = struct.unpack(endian + "IIII", data[off : off + 16])
        off += 16
        frame = data[off : off + incl]
        off += incl
        us = sec * 1_000_000 + (frac // 1000 if nano else frac)
        if linktype == 1:  # Ethernet (tcpdump -i lo)
            if struct.unpack(">H", frame[12:14])[0] != 0x0800:
                continue
            ip = frame[14:]
        elif linktype == 113:  # Linux cooked (tcpdump -i any)
            ip = frame[16:]
        else:
            raise SystemExit(f"unsupported link type {linktype}")
        if ip[0] >> 4 != 4 or ip[9] != 6:
            continue
        ihl = (ip[0] & 0xF) * 4
        total = struct.unpack(">H", ip[2:4])[0]
        tcp = ip[ihl:total]
        sport, dport, seq = struct.unpack(">HHI", tcp[:8])
        doff = (tcp[12] >> 4) * 4
        yield us, sport, dport, seq, bytes(tcp[doff:])


def client_streams(path, port):
    """Per client connection: its segments to the server, in order, without
    retransmissions: [(µs, payload)]."""
    conns = {}
    for us, sport, dport, seq, payload in packets(path):
        if dport != port or not payload:
            continue
        c = conns.setdefault(sport, {"next": None, "segs": []})
        if c["next"] is not None and seq != c["next"]:
            continue  # a retransmission or out of order: keep the first
        c["next"] = (seq + len(payload)) & 0xFFFFFFFF
        c["segs"].append((us, payload))
    return conns


def first_request_end(segs):
    """The segment (index) that completed the first HTTP/1.1 request."""
    buf = b""
    for i, (_, payload) in enumerate(segs):
        buf += payload
        head_end = buf.find(b"\r\n\r\n")
        if head_end < 0:
            continue
        length = 0
        for line in buf[:head_end].split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        if len(buf) >= head_end + 4 + length:
            return i
    return None


def h2_ends(segs):
    """[(segment index, stream id)] of every END_STREAM frame sent."""
    out = []
    pending = b""
    skip = 24  # the connection preface
    for i, (_, payload) in enumerate(segs):
        pending += payload
        while True:
            if skip:
                n = min(skip, len(pending))
                pending, skip = pending[n:], skip - n
                if skip:
                    break
            if len(pending) < 9:
                break
            length = int.from_bytes(pending[:3], "big")
            kind, flags = pending[3], pending[4]
            stream = int.from_bytes(pending[5:9], "big") & 0x7FFFFFFF
            if kind in (0, 1) and flags & 1:
                out.append((i, stream))
            pending, skip = pending[9:], length
    return out


def summary(line, served, own):
    """One human line from the JSON report and the server's and racelab's spreads."""
    r = json.loads(line)
    if r["mode"] == "h1":
        extra = f"{r['completed_by_one_byte']:>3}/{r['requests']} completed by 1 byte"
    else:
        segs = [c["segments"] for c in r["per_connection"]]
        extra = f"{len(segs)} connection(s), END_STREAM segments per connection {segs}"
    fail = ("  FAIL: " + "; ".join(r["problems"])) if r["problems"] else ""
    print(f"  wire {r['spread_us']:>6} us | server {served:>6} us | racelab {own:>6} | {extra}{fail}")


def main():
    args = sys.argv[1:]
    if args and args[0] == "summary":
        return summary(*args[1:4])
    if len(args) < 3 or args[2] not in ("h1", "h2"):
        raise SystemExit(__doc__)
    path, port, mode = args[0], int(args[1]), args[2]
    expect_sync = "--expect-sync" in args
    buyers = int(args[args.index("--buyers") + 1]) if "--buyers" in args else None
    path_prefix = (args[args.index("--path") + 1] if "--path" in args else "/purchase").encode()
    conns = client_streams(path, port)
    problems = []
    ends = []
    report = {"mode": mode}
    if mode == "h1":
        one_byte = 0
        for port_, c in conns.items():
            i = first_request_end(c["segs"])
            if i is None:
                continue
            us, payload = c["segs"][i]
            # Only the purchases (not the stock reads around the race).
            line = c["segs"][0][1].split(b"\r\n", 1)[0]
            if len(line.split(b" ")) < 2 or not line.split(b" ")[1].startswith(path_prefix):
                continue
            ends.append(us)
            one_byte += len(payload) == 1
        report.update(requests=len(ends), completed_by_one_byte=one_byte)
        if expect_sync and one_byte != len(ends):
            problems.append(f"{len(ends) - one_byte} first requests not completed by a one-byte segment")
    else:
        # Every END_STREAM of the capture: race with --attempts 1, so that
        # each stream is a buyer's first request.
        per_conn = []
        for c in conns.values():
            found = h2_ends(c["segs"])
            if not found:
                continue
            segs = sorted({i for i, _ in found})
            per_conn.append({"streams": len(found), "segments": len(segs)})
            ends.extend(c["segs"][i][0] for i, _ in found)
        report.update(connections=len(per_conn), per_connection=per_conn)
        if expect_sync and any(c["segments"] != 1 for c in per_conn):
            problems.append("a connection's END_STREAM frames were spread over several segments")
        if buyers is not None and sum(c["streams"] for c in per_conn) != buyers:
            problems.append(
                f"found {sum(c['streams'] for c in per_conn)} requests, expected {buyers}"
            )
    if buyers is not None and mode == "h1" and len(ends) != buyers:
        problems.append(f"found {len(ends)} first requests, expected {buyers}")
    report["spread_us"] = (max(ends) - min(ends)) if ends else None
    report["problems"] = problems
    print(json.dumps(report))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
