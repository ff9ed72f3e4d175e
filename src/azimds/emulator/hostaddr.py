"""Make the metadata port's address (169.254.169.254) an address of this host, so a node agent answers pods there.

A pod's packets to 169.254.169.254 go to its default gateway, the node. When the node holds the address
(``ip addr add 169.254.169.254/32 dev lo``), the node's kernel delivers them to the agent listening on it, with
the pod's own address as the source: no address translation, no iptables. ``serve --add-host-address`` does
this before it listens, through a netlink socket (RTM_NEWADDR), so the agent's image needs no iproute2; it
needs CAP_NET_ADMIN. The address stays when the agent stops, so a restarting agent never lets pods' requests
fall through to whatever else answers 169.254.169.254 (``ip addr del 169.254.169.254/32 dev lo`` removes it).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct

from ..errors import ListenError

__all__ = ["add_address"]

_RTM_NEWADDR = 20
_NLMSG_ERROR = 2
_NLM_F_REQUEST, _NLM_F_ACK, _NLM_F_EXCL, _NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
_IFA_ADDRESS, _IFA_LOCAL = 1, 2
_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port id
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefix length, flags, scope, interface index


def add_address(address: str, interface: str = "lo") -> bool:
    """Add ``address``/32 to ``interface``: True when added, False when the interface had it already.
    ListenError saying why (not IPv4, no such interface, not allowed: CAP_NET_ADMIN) otherwise."""
    try:
        ip = ipaddress.IPv4Address(address)
    except ValueError:
        raise ListenError(f"--add-host-address needs --host to be an IPv4 address, not {address!r}") from None
    if ip.is_unspecified or ip.is_loopback or ip.is_multicast:
        raise ListenError(f"--add-host-address adds one address, such as 169.254.169.254, not {address}")
    try:
        index = socket.if_nametoindex(interface)
    except OSError:
        raise ListenError(f"cannot add {address} to {interface}: no such interface") from None
    attributes = b"".join(struct.pack("=HH", 4 + len(ip.packed), kind) + ip.packed
                          for kind in (_IFA_LOCAL, _IFA_ADDRESS))
    body = _IFADDRMSG.pack(socket.AF_INET, 32, 0, 0, index) + attributes
    flags = _NLM_F_REQUEST | _NLM_F_ACK | _NLM_F_CREATE | _NLM_F_EXCL
    message = _HEADER.pack(_HEADER.size + len(body), _RTM_NEWADDR, flags, 1, 0) + body
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
        sock.settimeout(5)
        sock.bind((0, 0))
        sock.sendto(message, (0, 0))
        reply = sock.recv(65536)
    _, kind, _, _, _ = _HEADER.unpack_from(reply)
    if kind != _NLMSG_ERROR:
        raise ListenError(f"cannot add {address} to {interface}: an unexpected netlink answer ({kind})")
    (code,) = struct.unpack_from("=i", reply, _HEADER.size)
    if code == 0:
        return True
    if -code == errno.EEXIST:
        return False
    why = "not allowed (the agent needs CAP_NET_ADMIN)" if -code == errno.EPERM else os.strerror(-code)
    raise ListenError(f"cannot add {address}/32 to {interface}: {why}")
