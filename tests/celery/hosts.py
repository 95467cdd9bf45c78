"""Test hosts: network namespaces joined to this machine by veth pairs, whose links a test can cut.

``TestHosts(count)`` makes ``count`` namespaces. Host ``i`` has a veth pair on a link of its own,
with link-local addresses the test picks (``169.254.<base + i>.1`` on this side, ``.2`` inside),
and sees the servers of this machine (PostgreSQL, Redis on loopback) through TCP forwarders bound
to this side's address: a process started in the namespace with ``host.address`` as its database
and broker host reaches them only over its link. ``cut(i)`` takes the link down (packets are
dropped both ways, connections stall as on a failed network), ``heal(i)`` brings it back.

Traffic goes only to loopback and to these hosts' addresses. Everything is torn down on exit
(namespaces, links, forwarders), also after a failure.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import subprocess
import threading
import uuid
from dataclasses import dataclass, field

__all__ = ["TestHost", "TestHosts", "netns_available"]

# The third octet of host 0's link; hosts 1, 2... take the next ones.
BASE_OCTET = 77


def _ip(*args: str, netns: str | None = None) -> None:
    command = ["ip", *args] if netns is None else ["ip", "netns", "exec", netns, "ip", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=20)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip()}")


def netns_available() -> str:
    """Why network namespaces cannot be made here ("" when they can)."""
    if os.geteuid() != 0:
        return "making network namespaces needs root"
    try:
        name = f"bwprobe{uuid.uuid4().hex[:6]}"
        _ip("netns", "add", name)
        _ip("netns", "del", name)
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
        return f"cannot make a network namespace: {exc}"
    return ""


class Forwarder:
    """Accepts TCP connections on ``listen`` and pipes each to ``target`` (both ``(host, port)``).

    One selector thread moves the bytes of every connection; closing the forwarder closes them all.
    """

    def __init__(self, listen: tuple[str, int], target: tuple[str, int]) -> None:
        self.target = target
        self._server = socket.create_server(listen, reuse_port=False)
        self._server.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._server, selectors.EVENT_READ, None)
        self._peers: dict[socket.socket, socket.socket] = {}
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"forward-{listen}", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        with contextlib.suppress(BlockingIOError):
            client, _ = self._server.accept()
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                return
            for sock in (client, upstream):
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._peers[client], self._peers[upstream] = upstream, client
            self._selector.register(client, selectors.EVENT_READ, None)
            self._selector.register(upstream, selectors.EVENT_READ, None)

    def _drop(self, sock: socket.socket) -> None:
        peer = self._peers.pop(sock, None)
        for s in (sock, peer):
            if s is None:
                continue
            self._peers.pop(s, None)
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(s)
            s.close()

    def _pump(self, sock: socket.socket) -> None:
        peer = self._peers.get(sock)
        if peer is None:
            return
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop(sock)
            return
        try:
            peer.setblocking(True)
            peer.settimeout(60)  # a stalled peer (link down) must not hold the loop forever
            peer.sendall(data)
            peer.setblocking(False)
        except OSError:
            self._drop(sock)

    def _loop(self) -> None:
        while not self._closed.is_set():
            for key, _ in self._selector.select(timeout=0.2):
                if key.fileobj is self._server:
                    self._accept()
                else:
                    self._pump(key.fileobj)  # type: ignore[arg-type]

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=10)
        for sock in list(self._peers):
            self._drop(sock)
        self._selector.close()
        self._server.close()


@dataclass
class TestHost:
    """One namespace: its name, its link's two ends and addresses."""

    __test__ = False

    index: int
    netns: str
    outer_link: str
    address: str  # this side's address, where the host reaches the servers
    inner_address: str
    forwarders: list[Forwarder] = field(default_factory=list)

    def command(self, args: list[str]) -> list[str]:
        """``args`` run inside this host's namespace."""
        return ["ip", "netns", "exec", self.netns, *args]


class TestHosts:
    """``count`` test hosts forwarding ``ports`` of this machine's loopback (see the module doc)."""

    __test__ = False  # not a pytest test class

    def __init__(self, count: int, ports: tuple[int, ...] = (5432, 6379)) -> None:
        self.tag = uuid.uuid4().hex[:5]
        self.ports = ports
        self.hosts: list[TestHost] = []
        try:
            for i in range(count):
                self.hosts.append(self._make(i))
        except BaseException:
            self.close()
            raise

    def _make(self, i: int) -> TestHost:
        octet = BASE_OCTET + i
        host = TestHost(i, f"bw-{self.tag}-{i}", f"bwo{self.tag}{i}",
                        f"169.254.{octet}.1", f"169.254.{octet}.2")
        inner = f"bwi{self.tag}{i}"
        _ip("netns", "add", host.netns)
        _ip("link", "set", "lo", "up", netns=host.netns)
        _ip("link", "add", host.outer_link, "type", "veth", "peer", "name", inner)
        _ip("link", "set", inner, "netns", host.netns)
        _ip("addr", "add", f"{host.address}/30", "dev", host.outer_link)
        _ip("link", "set", host.outer_link, "up")
        _ip("addr", "add", f"{host.inner_address}/30", "dev", inner, netns=host.netns)
        _ip("link", "set", inner, "up", netns=host.netns)
        for port in self.ports:
            host.forwarders.append(Forwarder((host.address, port), ("127.0.0.1", port)))
        return host

    def __enter__(self) -> TestHosts:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def cut(self, i: int) -> None:
        """Take host ``i``'s link down: nothing passes until ``heal(i)``."""
        _ip("link", "set", self.hosts[i].outer_link, "down")

    def heal(self, i: int) -> None:
        """Bring host ``i``'s link back up."""
        _ip("link", "set", self.hosts[i].outer_link, "up")

    def close(self) -> None:
        """Remove every namespace, link and forwarder made (errors are ignored: best effort)."""
        for host in self.hosts:
            for forwarder in host.forwarders:
                forwarder.close()
            with contextlib.suppress(RuntimeError, OSError, subprocess.TimeoutExpired):
                _ip("link", "del", host.outer_link)
            with contextlib.suppress(RuntimeError, OSError, subprocess.TimeoutExpired):
                _ip("netns", "del", host.netns)
        self.hosts = []
