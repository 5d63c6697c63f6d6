"""Blocks the network in every Python process that has this folder on ``PYTHONPATH`` (tests only).

Any socket connect to a non-loopback address and any DNS lookup of a name other than
``localhost`` fails with ``OSError``, and is appended as one line to ``$MMRE_NET_GUARD_LOG``
(when set), so a test can assert that nothing tried. Loopback (127.0.0.0/8, ::1) and Unix sockets
stay open: DDP over gloo on 127.0.0.1 and the DVC/git machinery need them.
"""

import ipaddress
import os
import socket

_LOG = os.environ.get("MMRE_NET_GUARD_LOG")
_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", ""}


def _record(what: str) -> None:
    if _LOG:
        with open(_LOG, "a", encoding="utf-8") as f:
            f.write(f"{os.getpid()} {what}\n")


def _loopback(host) -> bool:
    if host is None:
        return True
    host = host.decode() if isinstance(host, bytes) else str(host)
    if host in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


_connect, _connect_ex, _getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo


def _check(sock, address) -> None:
    if sock.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address[0]):
        _record(f"connect {address!r}")
        raise OSError(f"network blocked by the test guard (connect to {address!r})")


def connect(self, address):
    _check(self, address)
    return _connect(self, address)


def connect_ex(self, address):
    _check(self, address)
    return _connect_ex(self, address)


def getaddrinfo(host, *args, **kwargs):
    if not _loopback(host):
        _record(f"dns {host!r}")
        raise socket.gaierror(f"network blocked by the test guard (lookup {host!r})")
    return _getaddrinfo(host, *args, **kwargs)


socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = connect, connect_ex, getaddrinfo
