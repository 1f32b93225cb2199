"""Test support: refuse every non-loopback socket connection in this interpreter and its children.

Activated only when MLLM_OOD_NETWORK_RECORD names a file; each refused attempt is appended there, so a
test can assert that nothing tried to reach the network (kernels still talk to papermill on loopback).
"""

import os
import socket

_record = os.environ.get("MLLM_OOD_NETWORK_RECORD")


def _loopback(address) -> bool:
    if isinstance(address, (str, bytes)):  # AF_UNIX path
        return True
    host = str(address[0])
    return host in ("localhost", "::1") or host.startswith("127.") or host == "0.0.0.0"


if _record:
    _connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex

    def _guard(self, address, _orig=_connect):
        if not _loopback(address):
            with open(_record, "a") as fh:
                fh.write(f"{os.getpid()} connect {address!r}\n")
            raise OSError(f"network blocked by tests: connect to {address!r}")
        return _orig(self, address)

    def _guard_ex(self, address):
        if not _loopback(address):
            with open(_record, "a") as fh:
                fh.write(f"{os.getpid()} connect_ex {address!r}\n")
            return 111  # ECONNREFUSED
        return _connect_ex(self, address)

    _getaddrinfo = socket.getaddrinfo

    def _guard_dns(host, *args, **kwargs):
        if host not in (None, "localhost") and not str(host).startswith("127.") and host != "::1":
            with open(_record, "a") as fh:
                fh.write(f"{os.getpid()} getaddrinfo {host!r}\n")
            raise socket.gaierror(f"network blocked by tests: resolve {host!r}")
        return _getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = _guard
    socket.socket.connect_ex = _guard_ex
    socket.getaddrinfo = _guard_dns
