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
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from ids.tools.auth import APP_NAME, Auth, init_auth
from ids.tools.postgres import (  # noqa: F401 - re-exported: the team's servers in one place
    DATABASES,
    DRIVER,
    USER,
    Postgres,
    ServerError,
    _client_host,
    _run_as,
    _server_user,
    _tail,
    free_port,
    init_postgres,
    pg_bin_dir,
    start_postgres,
)


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
