"""A tiny authoritative DNS server for tests: A records from the command line.

usage: dns_authority.py ADDR PORT NAME=IPV4 [NAME=IPV4 ...]

Answers A queries for the given names, NOERROR with no answer for other
types of a known name, NXDOMAIN otherwise. UDP only. It stands in for "the
internet's DNS" inside a test network namespace; it never forwards.
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
    if qtype != 1:
        return struct.pack("!HHHHHH", ident, 0x8180, 1, 0, 0, 0) + question
    rdata = socket.inet_aton(records[name])
    rr = struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + rdata
    return struct.pack("!HHHHHH", ident, 0x8180, 1, 1, 0, 0) + question + rr


def main():
    addr, port = sys.argv[1], int(sys.argv[2])
    records = dict(arg.split("=", 1) for arg in sys.argv[3:])
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
