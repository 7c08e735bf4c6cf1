"""A local PostgreSQL cluster for the team's Optuna study and MLflow backend (`ids.tools.servers`).

The password of the PostgreSQL user `ids` is made at initdb time and kept in
`<data dir>/ids-password` (mode 0600); clients read it from PGPASSWORD, so it never appears in
URIs. Also the small process helpers both servers use (free ports, log tails, errors).
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

USER = "ids"  # PostgreSQL role owning the databases
DRIVER = "postgresql+psycopg2"  # psycopg2-binary is in the dev extra
DATABASES = ("optuna", "mlflow")  # separate: both keep an `alembic_version` table


class ServerError(RuntimeError):
    """A server cannot start; the message names the fix."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (for tests and one-off servers)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def pg_bin_dir() -> Path:
    """Where initdb and pg_ctl live: on PATH, or Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent  # initdb lies beside the real pg_ctl
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                  key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if not dirs:
        raise ServerError("PostgreSQL server programs (initdb, pg_ctl) not found: "
                          "install PostgreSQL: apt-get install postgresql")
    return Path(dirs[-1]).parent


def _server_user() -> pwd.struct_passwd | None:
    """PostgreSQL refuses to run as root, so root runs it as the `postgres` user."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise ServerError("PostgreSQL refuses to run as root and there is no 'postgres' user: "
                          "apt-get install postgresql creates it, or run as a normal user") from None


def _run_as(user: pwd.struct_passwd | None) -> dict:
    return {} if user is None else {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


@dataclass
class Postgres:
    """A running cluster started by `start_postgres`; `stop()` shuts it down."""

    data_dir: Path
    host: str
    port: int
    password: str
    bin_dir: Path
    user: pwd.struct_passwd | None = None

    def uri(self, database: str) -> str:
        """SQLAlchemy URL without the password (clients take it from PGPASSWORD). The driver is
        explicit: SQLAlchemy 2.1 maps plain postgresql:// to psycopg 3, not psycopg2."""
        return f"{DRIVER}://{USER}@{_client_host(self.host)}:{self.port}/{database}"

    def create_database(self, name: str) -> None:
        """CREATE DATABASE unless it exists (a restarted cluster keeps its databases)."""
        import psycopg2

        conn = psycopg2.connect(host=_client_host(self.host), port=self.port, user=USER,
                                password=self.password, dbname="postgres")
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{name}" OWNER "{USER}"')
        finally:
            conn.close()

    def stop(self) -> None:
        subprocess.run([str(self.bin_dir / "pg_ctl"), "stop", "-D", str(self.data_dir),
                        "-m", "fast", "-w"], capture_output=True, **_run_as(self.user))


def _client_host(host: str) -> str:
    """Where a client on this machine connects to a server bound to `host`."""
    return "127.0.0.1" if host in ("0.0.0.0", "*", "") else host


def _tail(log: Path | None, lines: int = 20) -> str:
    """The end of a server's log, for error messages."""
    if log is None:
        return ""
    try:
        return ":\n" + "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def init_postgres(data_dir: Path) -> str:
    """initdb a new cluster (user `ids`, password auth) unless `data_dir` holds one; returns
    the password."""
    data_dir = Path(data_dir).resolve()
    pw_file = data_dir / "ids-password"
    if (data_dir / "PG_VERSION").exists():
        if not pw_file.is_file():
            raise ServerError(f"{data_dir} holds a PostgreSQL cluster but not its password file "
                              f"{pw_file.name}: put the password of user '{USER}' there (one "
                              "line, chmod 600), or choose an empty --data-dir / --dir for a new "
                              "cluster")
        return pw_file.read_text().strip()
    user = _server_user()
    data_dir.mkdir(parents=True, exist_ok=True)
    if any(data_dir.iterdir()):
        raise ServerError(f"{data_dir} is neither empty nor a PostgreSQL data folder: "
                          "choose another --data-dir")
    password = secrets.token_urlsafe(18)
    with tempfile.NamedTemporaryFile("w", suffix=".pw", delete=False) as f:
        f.write(password + "\n")
    try:
        if user is not None:
            os.chown(data_dir, user.pw_uid, user.pw_gid)
            os.chown(f.name, user.pw_uid, user.pw_gid)
        out = subprocess.run(
            [str(pg_bin_dir() / "initdb"), "-D", str(data_dir), "-U", USER,
             f"--pwfile={f.name}", "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C",
             "--no-instructions"], capture_output=True, text=True, **_run_as(user))
    finally:
        os.unlink(f.name)
    if out.returncode != 0:
        hint = (" (as root, the folder's parents must be searchable by user 'postgres': "
                "use one under /tmp, /var/lib or the repo)" if user else "")
        raise ServerError(f"initdb failed in {data_dir}{hint}:\n{out.stderr.strip()}")
    with open(data_dir / "pg_hba.conf", "a") as hba:  # other machines, if --host allows them
        hba.write("host all all all scram-sha-256\n")
    pw_file.write_text(password + "\n")
    pw_file.chmod(0o600)
    if user is not None:
        os.chown(pw_file, user.pw_uid, user.pw_gid)
    return password


def start_postgres(data_dir: Path, port: int = 5432, host: str = "127.0.0.1") -> Postgres:
    """Start the cluster in `data_dir` (created by initdb if new) on host:port, TCP only, and
    create the `optuna` and `mlflow` databases."""
    data_dir = Path(data_dir).resolve()
    password = init_postgres(data_dir)
    pg = Postgres(data_dir, host, port, password, pg_bin_dir(), _server_user())
    log = data_dir / "postgres.log"
    opts = f"-c listen_addresses='{host}' -p {port} -c unix_socket_directories=''"
    out = subprocess.run([str(pg.bin_dir / "pg_ctl"), "start", "-D", str(data_dir), "-l",
                          str(log), "-w", "-t", "60", "-o", opts],
                         capture_output=True, text=True, **_run_as(pg.user))
    if out.returncode != 0:
        raise ServerError(f"PostgreSQL did not start on {host}:{port} (port taken? a server "
                          f"already running on {data_dir}?):\n{out.stderr.strip()}{_tail(log)}")
    try:
        for name in DATABASES:
            pg.create_database(name)
    except BaseException:
        pg.stop()
        raise
    return pg
