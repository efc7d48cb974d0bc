"""The dashboard's Host check (against DNS rebinding): create_app, serve_in_thread and the command
all answer only requests addressed to a loopback name or to the address they are bound to."""

from __future__ import annotations

import http.client
import json
import logging
import socket
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import tunelab
from tunelab.dashboard import create_app, serve_in_thread
from tunelab.dashboard.app import HostCheck, default_allowed_hosts
from tunelab.errors import ConfigError

EVIL = "evil.example"


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'h.db'}"
    tunelab.create_study(name="s", storage=url, seed=0)
    return url


def get(base: str, path: str, host: str | None = None) -> tuple[int, Any]:
    """GET ``path`` from the server at ``base`` (http://ADDRESS:PORT) with this Host header."""
    address, port = base.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(address.strip("[]"), int(port), timeout=5)
    try:
        conn.putrequest("GET", path, skip_host=host is not None)
        if host is not None:
            conn.putheader("Host", host)
        conn.endheaders()
        answer = conn.getresponse()
        body = answer.read()
        return answer.status, json.loads(body) if body.startswith((b"[", b"{")) else body
    finally:
        conn.close()


def test_create_app_refuses_a_foreign_host_by_default(url: str) -> None:
    with TestClient(create_app(url), base_url="http://127.0.0.1:8123") as c:
        assert c.get("/api/studies").status_code == 200
        for host in (EVIL, f"{EVIL}:8123", "127.0.0.1.evil.example", "localhost.evil.example:8123", "10.0.0.1"):
            r = c.get("/api/studies", headers={"Host": host})
            assert r.status_code == 400, host
            assert "Host" in r.json()["detail"] and "s" not in [s.get("name") for s in r.json() if isinstance(s, dict)]
        assert c.get("/", headers={"Host": EVIL}).status_code == 400  # the page too
        # an action from a rebound page: refused before it reaches the study
        r = c.post("/api/studies/s/enqueue", json={"params": {"a": 1}}, headers={"Host": EVIL})
        assert r.status_code == 400
        assert tunelab.load_study("s", url).trials == []
        for host in ("127.0.0.1:8123", "localhost:8123", "LOCALHOST", "[::1]:8123", "127.0.0.1"):
            assert c.get("/api/studies", headers={"Host": host}).status_code == 200, host


def test_create_app_accepts_its_bound_host_and_listed_names(url: str) -> None:
    with TestClient(create_app(url, host="127.0.0.2"), base_url="http://127.0.0.2:9000") as c:
        assert c.get("/api/studies").status_code == 200
        assert c.get("/api/studies", headers={"Host": "localhost:9000"}).status_code == 200
        assert c.get("/api/studies", headers={"Host": "127.0.0.3:9000"}).status_code == 400
    app = create_app(url, allowed_hosts=["dash.lan", "*.corp.example", "192.168.1.5"])
    with TestClient(app, base_url="http://dash.lan:8000") as c:
        assert c.get("/api/studies").status_code == 200
        assert c.get("/api/studies", headers={"Host": "a.corp.example"}).status_code == 200
        assert c.get("/api/studies", headers={"Host": "192.168.1.5:8000"}).status_code == 200
        assert c.get("/api/studies", headers={"Host": "corp.example.evil.example"}).status_code == 400
        assert c.get("/api/studies", headers={"Host": "localhost"}).status_code == 400  # the list replaces the default
    with TestClient(create_app(url, allowed_hosts=["*"]), base_url=f"http://{EVIL}") as c:
        assert c.get("/api/studies").status_code == 200  # explicitly any


def test_host_names_and_warnings(url: str, caplog: pytest.LogCaptureFixture) -> None:
    assert default_allowed_hosts() == ["localhost", "127.0.0.1", "[::1]"]
    assert default_allowed_hosts("127.0.0.2")[-1] == "127.0.0.2"
    assert default_allowed_hosts("::1") == default_allowed_hosts() == default_allowed_hosts("0.0.0.0")
    assert default_allowed_hosts("fe80::1")[-1] == "[fe80::1]"
    check = HostCheck(default_allowed_hosts("Dash.Lan"))
    assert check("dash.lan:80") and check("[::1]") and not check("") and not check(None) and not check("[::2]:80")
    with pytest.raises(ConfigError, match="list"):
        create_app(url, allowed_hosts="localhost")
    with caplog.at_level(logging.WARNING, logger="tunelab"):
        create_app(url, host="0.0.0.0")
    assert "--allowed-host" in caplog.text and "0.0.0.0" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tunelab"):
        create_app(url, host="0.0.0.0", allowed_hosts=["*"])
    assert "DNS rebinding" in caplog.text


def test_serve_in_thread_checks_the_host(url: str) -> None:
    with serve_in_thread(url) as base:
        port = base.rsplit(":", 1)[1]
        status, body = get(base, "/api/studies", f"{EVIL}:{port}")
        assert status == 400 and "Host" in body["detail"]
        for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
            status, body = get(base, "/api/studies", host)
            assert status == 200 and [s["name"] for s in body] == ["s"], host


def _can_bind(address: str) -> bool:
    try:
        with socket.socket() as s:
            s.bind((address, 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _can_bind("127.0.0.2"), reason="this system cannot bind 127.0.0.2")
def test_a_dashboard_bound_to_another_loopback_address_answers(url: str) -> None:
    with serve_in_thread(url, host="127.0.0.2") as base:
        assert base.startswith("http://127.0.0.2:")
        port = base.rsplit(":", 1)[1]
        status, body = get(base, "/api/studies", f"127.0.0.2:{port}")
        assert status == 200 and [s["name"] for s in body] == ["s"]
        assert get(base, "/api/studies", f"{EVIL}:{port}")[0] == 400


def test_the_command_passes_its_host_and_allowed_hosts(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    from tunelab.cli import app

    served: list[Any] = []

    def run(server: uvicorn.Server, sockets: list[socket.socket]) -> None:
        served.append(server.config.app)
        server.started = True

    monkeypatch.setattr(uvicorn.Server, "run", run)
    # uvicorn.Config sets up logging for the whole process, its handlers on the sys.stderr of the moment: the
    # CliRunner's stream here, closed when the command returns (a later test's served dashboard then logs to a
    # closed file, and pytest lost its stderr)
    monkeypatch.setattr(uvicorn.Config, "configure_logging", lambda self: None)
    runner = CliRunner()

    def status(args: list[str], host: str) -> int:
        r = runner.invoke(app, ["dashboard", "--storage", url, "--port", "0", *args])
        assert r.exit_code == 0, r.output
        with TestClient(served[-1], base_url="http://127.0.0.1:8000") as c:
            return c.get("/api/studies", headers={"Host": host}).status_code

    assert status([], "127.0.0.1:8000") == 200 and status([], EVIL) == 400
    assert status(["--host", "127.0.0.2"], "127.0.0.2:8000") == 200  # used to refuse every request
    assert status(["--host", "127.0.0.2"], EVIL) == 400
    assert status(["--host", "0.0.0.0"], "192.168.1.5:8000") == 400
    assert status(["--host", "0.0.0.0", "--allowed-host", "192.168.1.5", "--allowed-host", "dash.lan"],
                  "dash.lan:8000") == 200
    assert status(["--host", "0.0.0.0", "--allowed-host", "192.168.1.5"], "localhost:8000") == 200
    assert status(["--host", "0.0.0.0", "--allowed-host", "*"], EVIL) == 200


def test_the_command_refuses_a_host_it_cannot_bind_before_serving(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # printed "tunelab dashboard on http://not a host:0/", then uvicorn's "[Errno -2] Name or service not
    # known", exit 3; 192.0.2.1 (TEST-NET-1, documentation only) is an address of no machine of ours
    import uvicorn

    from tunelab.cli import app

    served: list[Any] = []

    def run(server: uvicorn.Server, sockets: list[socket.socket]) -> None:
        served.append({"host": server.config.host, "port": server.config.port, "log_level": server.config.log_level})
        server.started = True

    monkeypatch.setattr(uvicorn.Server, "run", run)
    # uvicorn.Config sets up logging for the whole process, its handlers on the sys.stderr of the moment: the
    # CliRunner's stream here, closed when the command returns (a later test's served dashboard then logs to a
    # closed file, and pytest lost its stderr)
    monkeypatch.setattr(uvicorn.Config, "configure_logging", lambda self: None)
    runner = CliRunner()
    for host, why in [("not a host", "is not a name or address this machine can resolve"),
                      ("192.0.2.1", "cannot be bound here")]:
        r = runner.invoke(app, ["dashboard", "--storage", url, "--host", host, "--port", "0"])
        assert r.exit_code == 1, r.output
        line = r.stderr.strip()
        assert line.startswith(f"error: --host {host!r} {why}") and "\n" not in line, r.stderr
        assert "e.g. --host 127.0.0.1 (this machine only) or --host 0.0.0.0" in line
    assert served == []
    r = runner.invoke(app, ["dashboard", "--storage", url, "--host", "localhost", "--port", "0"])
    assert r.exit_code == 0 and served == [{"host": "localhost", "port": 0, "log_level": "warning"}], r.output


def test_the_command_on_a_port_in_use_says_so_in_one_line_and_exits_as_a_usage_error(url: str) -> None:
    # printed "tunelab dashboard on http://127.0.0.1:P/", then uvicorn's "ERROR: [Errno 98] error while
    # attempting to bind on address ...: address already in use", and exited 3
    from tunelab.cli import app

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = CliRunner().invoke(app, ["dashboard", "--storage", url, "--port", str(port)])
    assert r.exit_code == 2, r.output
    line = r.stderr.strip()
    assert line.startswith(f"error: port {port} of 127.0.0.1 is in use") and "\n" not in line, r.stderr
    assert f"give another with --port, e.g. --port {port + 1}, or --port 0 for a free one" in line, line
    assert "tunelab dashboard on" not in r.output and "Traceback" not in r.output


def test_the_command_serves_on_a_free_port_and_names_it(url: str, tmp_path: Path) -> None:
    # --port 0 printed "tunelab dashboard on http://127.0.0.1:0/": the port was uvicorn's to pick
    import subprocess
    import sys

    command = [sys.executable, "-c", "from tunelab.cli import app; app()", "dashboard", "--storage", url, "--port", "0"]
    with subprocess.Popen(command, stderr=subprocess.PIPE, text=True, cwd=tmp_path) as served:
        try:
            assert served.stderr is not None
            line = served.stderr.readline().strip()
            assert line.startswith("tunelab dashboard on http://127.0.0.1:") and not line.endswith(":0/"), line
            status, body = get(line.removeprefix("tunelab dashboard on ").rstrip("/"), "/api/studies")
            assert status == 200 and [s["name"] for s in body] == ["s"]
        finally:
            served.terminate()
