"""Servers of a test's own, to restart at will: a PostgreSQL cluster and a Redis, on loopback.

The outage tests crash and restart these (``pg_ctl stop -m immediate``, Redis killed with no
persistence, so its queued messages are lost) without touching the machine's shared servers.
Both listen on 127.0.0.1 only and are removed, data and all, when closed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["PrivatePostgres", "PrivateRedis"]


def _postgres_bin() -> Path:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
                      key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    if not versions:
        raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql (bin/test "
                           "installs the postgresql package)")
    return versions[-1].parent


class PrivatePostgres:
    """A PostgreSQL cluster in a temporary directory, on ``127.0.0.1:port``, trust auth."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.bin = _postgres_bin()
        self.root = Path(tempfile.mkdtemp(prefix="beluga-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        if os.geteuid() == 0:  # the server refuses to run as root: it runs as postgres
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync",
                  "-E", "UTF8", timeout=120)
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(f"\nlisten_addresses = '127.0.0.1'\nport = {port}\n"
                       f"unix_socket_directories = '{self.root}'\nmax_connections = 100\n")
        self.start()

    def _run(self, tool: str, *args: str, timeout: float = 60) -> None:
        command = [str(self.bin / tool), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{tool} {' '.join(args)} failed: {done.stderr.strip()}\n{log}")

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")

    def crash(self) -> None:
        """Stop it as a crash would (``-m immediate``: no checkpoint, connections cut)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "-t", "60", "stop")

    def restart(self) -> None:
        """Crash it, then start it again (crash recovery replays the WAL)."""
        self.crash()
        self.start()

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self.crash()
        shutil.rmtree(self.root, ignore_errors=True)


class PrivateRedis:
    """A Redis server on ``127.0.0.1:port`` keeping nothing on disk."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.root = Path(tempfile.mkdtemp(prefix="beluga-redis-"))
        self.proc: subprocess.Popen | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it (empty) and wait until it answers PING."""
        import redis

        log = open(self.root / "server.log", "ab")  # noqa: SIM115 - closed in kill()
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.root)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        self.proc.log = log  # type: ignore[attr-defined]
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + 30
        while True:
            try:
                if client.ping():
                    break
            except redis.RedisError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server on port {self.port} did not start") from None
                time.sleep(0.05)
        client.close()

    def kill(self) -> None:
        """``kill -9``: every queued message is lost (nothing was persisted)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        if self.proc is not None:
            self.proc.log.close()  # type: ignore[attr-defined]
        self.proc = None

    def restart(self) -> None:
        """Kill it, then start it again, empty."""
        self.kill()
        self.start()

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.root, ignore_errors=True)
