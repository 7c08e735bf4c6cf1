"""Login for the team's MLflow server: MLflow's basic-auth app with a generated admin password.

`mlflow server --app-name basic-auth` refuses every request without a user and password (except
/health), keeps users and permissions in its own SQLite database, and lets only an admin, or a
user granted EDIT/MANAGE on a registered model, move that model's aliases (`champion`). Every
other user reads (`default_permission = READ`).

The admin password is generated once, like the PostgreSQL one, kept in
`<folder>/admin-password` (mode 0600) and printed only when it is made. Clients pass it through
MLflow's own environment variables, never in a URI:

    export MLFLOW_TRACKING_USERNAME=admin MLFLOW_TRACKING_PASSWORD='<printed once>'
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

ADMIN = "admin"
APP_NAME = "basic-auth"


@dataclass
class Auth:
    """What `mlflow server` needs for its login, and whether the password was just made."""

    folder: Path
    password: str
    created: bool
    secret_key: str  # Flask's CSRF key: the same across restarts and server processes

    @property
    def config(self) -> Path:
        return self.folder / "basic_auth.ini"

    @property
    def password_file(self) -> Path:
        return self.folder / "admin-password"

    def server_env(self) -> dict[str, str]:
        """Environment of the server process: where its config is, and the first admin's
        password (ignored by MLflow once the admin exists)."""
        return {"MLFLOW_AUTH_CONFIG_PATH": str(self.config),
                "MLFLOW_AUTH_ADMIN_USERNAME": ADMIN, "MLFLOW_AUTH_ADMIN_PASSWORD": self.password,
                "MLFLOW_FLASK_SERVER_SECRET_KEY": self.secret_key}

    def client_env(self) -> dict[str, str]:
        """What a worker exports to log runs and register models as the admin."""
        return {"MLFLOW_TRACKING_USERNAME": ADMIN, "MLFLOW_TRACKING_PASSWORD": self.password}


def _write_private(path: Path, text: str) -> None:
    """Create or replace `path` with mode 0600 from the start (never readable by others)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def init_auth(folder: Path) -> Auth:
    """The login of the server whose data is in `folder` (created with a new admin password
    the first time; the same password on every later start)."""
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    pw_file, key_file = folder / "admin-password", folder / "flask-secret-key"
    created = not pw_file.exists()
    if created:
        _write_private(pw_file, secrets.token_urlsafe(18) + "\n")
    if not key_file.exists():
        _write_private(key_file, secrets.token_hex(32) + "\n")
    auth = Auth(folder, pw_file.read_text().strip(), created, key_file.read_text().strip())
    _write_private(auth.config, "\n".join([
        "[mlflow]",
        "default_permission = READ",
        f"database_uri = sqlite:///{folder / 'basic_auth.db'}",
        f"admin_username = {ADMIN}",
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth",
        "grant_default_workspace_access = false",
        # A checked password is remembered for a minute (per server worker) instead of being
        # hashed again on every request: a sweep worker makes hundreds of requests per trial,
        # and each check costs tens of ms of server CPU. A changed password or deleted user
        # reaches the other server workers within that minute.
        "auth_cache_ttl_seconds = 60", ""]))
    return auth
