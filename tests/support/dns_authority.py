"""A tiny authoritative DNS server for tests: A and AAAA records from the
command line.

usage: dns_authority.py ADDR PORT NAME=IP [NAME=IP ...]

An IPv4 address is an A record, an IPv6 one an AAAA record; a name may be
given more than once. Answers A and AAAA queries for the given names,
NOERROR with no answer for other types of a known name (or a type it has no
record of), NXDOMAIN otherwise. UDP only. It stands in for "the internet's
DNS" inside a test network namespace; it never forwards.
"""
import socket
import struct
import sys


def parse_name(packet, offset):
    labels = []
    while True:
        length = packet[offset]
        offset += 1
        if length == 0:
            return ".".join(labels).lower(), offset
        labels.append(packet[offset:offset + length].decode("ascii", "replace"))
        offset += length


def answer(packet, records):
    if len(packet) < 12:
        return None
    ident, _flags, qdcount = struct.unpack("!HHH", packet[:6])
    if qdcount != 1:
        return None
    name, offset = parse_name(packet, 12)
    qtype, _qclass = struct.unpack("!HH", packet[offset:offset + 4])
    question = packet[12:offset + 4]
    if name not in records:
        return struct.pack("!HHHHHH", ident, 0x8183, 1, 0, 0, 0) + question
    rdatas = records[name].get(qtype, [])
    rrs = b"".join(struct.pack("!HHHIH", 0xC00C, qtype, 1, 60, len(r)) + r for r in rdatas)
    return struct.pack("!HHHHHH", ident, 0x8180, 1, len(rdatas), 0, 0) + question + rrs


def record(ip):
    """(qtype, rdata) of an address."""
    if ":" in ip:
        return 28, socket.inet_pton(socket.AF_INET6, ip)
    return 1, socket.inet_aton(ip)


def main():
    addr, port = sys.argv[1], int(sys.argv[2])
    records = {}
    for arg in sys.argv[3:]:
        name, ip = arg.split("=", 1)
        qtype, rdata = record(ip)
        records.setdefault(name.lower(), {}).setdefault(qtype, []).append(rdata)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((addr, port))
    while True:
        packet, peer = sock.recvfrom(4096)
        try:
            reply = answer(packet, records)
        except (IndexError, struct.error):
            reply = None
        if reply:
            sock.sendto(reply, peer)


if __name__ == "__main__":
    main()
