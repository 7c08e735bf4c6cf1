"""The team's MLflow server requires a login: real `mlflow server --app-name basic-auth` on
loopback (SQLite backend: the login does not depend on PostgreSQL), real sweep and promote
commands (in this process) authenticated through MLflow's environment variables only."""

from __future__ import annotations

import base64
import os
import shutil
import stat
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from conftest import patience, run_cli_status, tiny_overrides
from ids.tools import servers
from ids.tools.auth import ADMIN, init_auth

NAME = "ids-cnn-bilstm"


def test_admin_password_is_generated_once_private_and_printed_once(tmp_path, capsys):
    first = init_auth(tmp_path / "auth")
    assert first.created and len(first.password) >= 20
    for f in (first.password_file, first.config, first.folder / "flask-secret-key"):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    assert first.password not in first.config.read_text()
    assert "auth_cache_ttl_seconds = 60" in first.config.read_text()  # one hash per minute
    again = init_auth(tmp_path / "auth")
    assert not again.created and again.password == first.password
    assert again.secret_key == first.secret_key
    servers._print_login(first)
    servers._print_login(again)
    out = capsys.readouterr().out
    assert out.count(first.password) == 1  # shown when made, then only the file is named
    assert f"$(cat {again.password_file})" in out


def _get(url: str, user: str | None = None, password: str | None = None) -> int:
    headers = {}
    if user:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                    timeout=patience(30)) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.slow
def test_only_logged_in_users_reach_the_server_and_only_authorised_ones_move_champion(
        tmp_path, monkeypatch, capsys):
    work = Path(tempfile.mkdtemp(prefix="ids-test-auth-"))
    auth = init_auth(work / "mlflow-auth")
    server = servers.start_mlflow(f"sqlite:///{work}/mlflow.db", work / "artifacts",
                                  port=servers.free_port(), workers=1, log=work / "mlflow.log",
                                  auth=auth)
    previous_uri = mlflow.get_tracking_uri()
    try:
        search = server.url + "/api/2.0/mlflow/experiments/search?max_results=5"
        assert _get(search) == 401
        assert _get(search, ADMIN, "wrong-password") == 401
        assert _get(search, ADMIN, auth.password) == 200

        # A worker: sweep and promote, credentials only in MLflow's environment variables.
        for key in [k for k in os.environ if k.startswith("MLFLOW_TRACKING")]:
            monkeypatch.delenv(key)
        overrides = [o for o in tiny_overrides(tmp_path) if not o.startswith("tracking.uri=")]
        overrides += [f"tracking.uri={server.url}", "trainer.epochs=1", "sweep.n_trials=1",
                      "promote.evaluate=false", "trainer.baselines=false", "tracking.log_plots=false",
                      f"hydra.run.dir={tmp_path}/hydra"]
        code, _, err = run_cli_status(monkeypatch, capsys, "ids.sweep", *overrides)
        assert code == 2, err[-3000:]  # refused before any trial
        assert "requires a login" in err and "MLFLOW_TRACKING_PASSWORD" in err
        for key, value in auth.client_env().items():
            monkeypatch.setenv(key, value)
        # ids.promote takes the trial's data settings from its run: tiny_overrides' data.window
        # (which the default space varies) would be refused as differing from the trial's.
        promote = [o for o in overrides if not o.startswith("data.")]
        for module, args in (("ids.sweep", overrides), ("ids.promote", promote)):
            code, out, err = run_cli_status(monkeypatch, capsys, module, *args)
            assert code == 0, (module, out[-2000:], err[-3000:])
            assert auth.password not in out + err

        admin = MlflowClient(server.url)
        champion = admin.get_model_version_by_alias(NAME, "champion")
        # Another user (READ by default) may look, not move the alias.
        from mlflow.server import get_app_client

        monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
        users = get_app_client("basic-auth", tracking_uri=server.url)
        users.create_user("reader", "reader-password-42")
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "reader")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "reader-password-42")
        reader = MlflowClient(server.url)
        assert reader.get_model_version_by_alias(NAME, "champion").version == champion.version
        with pytest.raises(MlflowException, match="PERMISSION_DENIED|Permission denied|403"):
            reader.set_registered_model_alias(NAME, "champion", "1" if champion.version != "1"
                                              else "2")
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN)
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", auth.password)
        assert admin.get_model_version_by_alias(NAME, "champion").version == champion.version
    finally:
        mlflow.set_tracking_uri(previous_uri)  # the commands pointed this process at the server
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
