"""A throwaway PostgreSQL server in a temporary directory, reached over its Unix socket only:
tests/metering's fixture runs one for a whole session; a fault test runs its own, to take down
and start again."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path


def pg_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)
    return Path(candidates[0]).parent if candidates else None


class PostgresServer:
    def __init__(self, bin_dir: Path, *, options: str = "", prefix: str = "fairgate-pg-") -> None:
        self.bin = bin_dir
        self.options = options
        self.user = _server_user()
        self.base = Path(tempfile.mkdtemp(prefix=prefix))
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.base, entry.pw_uid, entry.pw_gid)
        self.data = self.base / "data"
        self.url = f"postgresql://fairgate@/postgres?host={self.base}"

    def _run(self, *args: str) -> None:
        done = subprocess.run(
            [str(self.bin / args[0]), *args[1:]],
            user=self.user,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")

    def init(self) -> PostgresServer:
        self._run("initdb", "-D", str(self.data), "--username=fairgate", "--auth=trust",
                  "--encoding=UTF8", "--locale=C", "--no-sync")  # fmt: skip
        return self.start()

    def start(self) -> PostgresServer:
        options = f"-c listen_addresses='' -c unix_socket_directories='{self.base}' {self.options}"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.base / "server.log"),
                  "-o", options, "-w", "-t", "60", "start")  # fmt: skip
        return self

    def stop(self) -> None:
        """As a crash would: no shutdown checkpoint, clients cut off."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def remove(self) -> None:
        subprocess.run(
            [str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"],
            user=self.user, capture_output=True, timeout=60,
        )  # fmt: skip
        shutil.rmtree(self.base, ignore_errors=True)


def _server_user() -> str | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise RuntimeError("running as root and neither 'postgres' nor 'nobody' exists")
