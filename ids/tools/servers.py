"""A local PostgreSQL cluster and an MLflow tracking server, so sweeps can scale out.

Workers on several machines share one Optuna study (RDB storage on PostgreSQL) and one MLflow
experiment (a tracking server whose backend store is PostgreSQL and which serves artifacts):

    python -m ids.tools.servers team                      # both, in servers/; prints what workers need
    python -m ids.tools.servers postgres --data-dir servers/postgres --port 5432
    python -m ids.tools.servers mlflow \\
        --backend-store-uri postgresql+psycopg2://ids@127.0.0.1:5432/mlflow \\
        --artifacts-destination servers/artifacts --port 5000

Each command runs in the foreground and stops what it started on Ctrl-C. Everything listens on
127.0.0.1 unless `--host` says otherwise. The password of the PostgreSQL user `ids` is made at
initdb time and kept in `<data dir>/ids-password`; clients read it from PGPASSWORD, so it never
appears in URIs (which MLflow logs as parameters). The MLflow server requires a login
(`ids.tools.auth`: MLflow's basic-auth app, admin password generated once in
`<auth dir>/admin-password`); clients pass it in MLFLOW_TRACKING_USERNAME/PASSWORD.
"""

from __future__ import annotations

import argparse
import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from ids.tools.auth import APP_NAME, Auth, init_auth

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


@dataclass
class Mlflow:
    """A running `mlflow server` started by `start_mlflow`; `stop()` ends its process group."""

    url: str
    proc: subprocess.Popen
    log: Path | None = None
    stopped: bool = field(default=False, repr=False)

    def stop(self) -> None:
        if self.stopped or self.proc.poll() is not None:
            return
        self.stopped = True
        os.killpg(self.proc.pid, signal.SIGTERM)  # uvicorn's workers are in its group
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def start_mlflow(backend_store_uri: str, artifacts_destination: Path, port: int = 5000,
                 host: str = "127.0.0.1", workers: int = 2, log: Path | None = None,
                 password: str | None = None, allowed_hosts: str | None = None,
                 timeout: float = 180.0, auth: Auth | None = None) -> Mlflow:
    """`mlflow server` with a database backend store and proxied artifacts (clients upload
    through the server, so workers need no shared folder); with `auth`, only logged-in users
    get in (MLflow's basic-auth app). Waits until /health answers."""
    dest = Path(artifacts_destination).resolve()
    dest.mkdir(parents=True, exist_ok=True)
    log = Path(log) if log else None
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_store_uri,
           "--serve-artifacts", "--artifacts-destination", str(dest), "--host", host,
           "--port", str(port), "--workers", str(workers)]
    if allowed_hosts:
        cmd += ["--allowed-hosts", allowed_hosts]
    if auth is not None:
        cmd += ["--app-name", APP_NAME]
    env = dict(os.environ)
    # MLflow's job runner (GenAI scoring, trace archival) adds four processes we never use.
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    if password:
        env["PGPASSWORD"] = password
    if auth is not None:
        env.update(auth.server_env())
    out = open(log, "ab") if log else None  # the server keeps its own copy open
    proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT if out else None,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    if out:
        out.close()
    server = Mlflow(f"http://{_client_host(host)}:{port}", proc, log)
    try:
        _wait_healthy(server, timeout)
    except BaseException:  # Ctrl-C too: the server is in its own session, so stop it here
        server.stop()
        raise
    return server


def _wait_healthy(server: Mlflow, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise ServerError(f"mlflow server exited with code {server.proc.returncode} (port "
                              f"taken? backend store unreachable?){_tail(server.log)}")
        try:
            with urllib.request.urlopen(server.url + "/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise ServerError(f"mlflow server did not answer on {server.url} within {timeout:.0f} s"
                      f"{_tail(server.log)}")


def _public_host(host: str) -> str:
    """The name other machines use for this one."""
    return socket.getfqdn() if host in ("0.0.0.0", "*", "") else host


def _wait(servers: list) -> int:
    """Keep running until Ctrl-C / SIGTERM or a server dies; then stop them all, last first."""
    code = 0
    try:
        while True:
            dead = [s for s in servers if isinstance(s, Mlflow) and s.proc.poll() is not None]
            if dead:
                print(f"mlflow server exited with code {dead[0].proc.returncode}", file=sys.stderr)
                code = 1
                break
            time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        for s in reversed(servers):
            s.stop()
        print("servers stopped", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ids.tools.servers", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    team = sub.add_parser("team", help="PostgreSQL + MLflow server; prints the workers' URIs")
    team.add_argument("--dir", type=Path, default=Path("servers"),
                      help="holds postgres/ (the cluster) and artifacts/ (default: servers)")
    team.add_argument("--pg-port", type=int, default=5432)
    pg = sub.add_parser("postgres", help="a PostgreSQL cluster with databases optuna and mlflow")
    pg.add_argument("--data-dir", type=Path, required=True)
    pg.add_argument("--port", type=int, default=5432)
    ml = sub.add_parser("mlflow", help="an MLflow tracking server")
    ml.add_argument("--backend-store-uri", required=True,
                    help="e.g. postgresql+psycopg2://ids@127.0.0.1:5432/mlflow (password: "
                         "PGPASSWORD)")
    ml.add_argument("--artifacts-destination", type=Path, required=True)
    for p in (team, pg, ml):
        p.add_argument("--host", default="127.0.0.1",
                       help="interface to listen on (default 127.0.0.1; 0.0.0.0 for a team)")
    ml.add_argument("--auth-dir", type=Path, default=Path("servers/mlflow-auth"),
                    help="users and the generated admin password (default: servers/mlflow-auth)")
    for p in (team, ml):
        p.add_argument("--no-auth", action="store_true",
                       help="no login: whoever reaches the port reads and writes (trusted "
                            "networks only)")
        p.add_argument("--port", type=int, default=5000)
        p.add_argument("--workers", type=int, default=2, help="MLflow server processes")
        p.add_argument("--allowed-hosts", default=None,
                       help="Host headers MLflow accepts beyond localhost and private IPs")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with `&`
    started: list = []
    auth = None
    try:
        if args.command in ("team", "postgres"):
            data_dir = args.dir / "postgres" if args.command == "team" else args.data_dir
            pg_port = args.pg_port if args.command == "team" else args.port
            started.append(start_postgres(data_dir, pg_port, args.host))
            print(f"PostgreSQL on {args.host}:{pg_port}, data in {data_dir}", flush=True)
        if args.command in ("team", "mlflow"):
            backend = started[0].uri("mlflow") if args.command == "team" \
                else args.backend_store_uri
            dest = args.dir / "artifacts" if args.command == "team" \
                else args.artifacts_destination
            if not args.no_auth:
                auth = init_auth(args.dir / "mlflow-auth" if args.command == "team"
                                 else args.auth_dir)
            started.append(start_mlflow(backend, dest, args.port, args.host, args.workers,
                                        password=started[0].password if started else None,
                                        allowed_hosts=args.allowed_hosts, auth=auth))
            print(f"MLflow server on {started[-1].url} (artifacts in {dest}; "
                  f"{'login required' if auth else 'NO login'})", flush=True)
    except (ServerError, KeyboardInterrupt, SystemExit) as exc:
        for s in reversed(started):
            s.stop()
        if not isinstance(exc, ServerError):
            return 130
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if started and isinstance(started[0], Postgres):
        pg_srv, host = started[0], _public_host(args.host)
        storage = f"{DRIVER}://{USER}@{host}:{pg_srv.port}/optuna"
        print(f"\nOn every worker machine:\n  export PGPASSWORD='{pg_srv.password}'")
        _print_login(auth)
        if args.command == "team":
            tracking = f"http://{host}:{args.port}"
            print(f'  make sweep ARGS="sweep.storage={storage} tracking.uri={tracking}"\n'
                  f"Browse: {tracking}", flush=True)
        else:
            print(f"  sweep.storage={storage}", flush=True)
    elif auth is not None:
        print("\nOn every client machine:")
        _print_login(auth)
    print("Ctrl-C stops the servers.", flush=True)
    return _wait(started)


def _print_login(auth: Auth | None) -> None:
    """The admin password in full only right after it was generated; afterwards its file."""
    if auth is None:
        return
    secret = (f"'{auth.password}'" if auth.created
              else f'"$(cat {auth.password_file})"  # on this machine; copy it to the others')
    print(f"  export MLFLOW_TRACKING_USERNAME=admin MLFLOW_TRACKING_PASSWORD={secret}")
    if auth.created:
        print(f"  (the MLflow admin password is shown only now; it is kept in "
              f"{auth.password_file}, mode 0600)")


if __name__ == "__main__":
    sys.exit(main())
