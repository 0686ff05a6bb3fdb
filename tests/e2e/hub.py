"""A real JupyterHub for the e2e tests: DockerSpawner, DummyAuthenticator and
configurable-http-proxy (from npm, tests/tools), on a user-defined docker network.

The hub runs on this machine; the single-user containers reach its API through
the network's gateway, and the proxy reaches them on their network address.
Every request of the tests goes through the proxy, as a browser's would.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conftest import REPO

from e2e.conftest import docker

TOKEN = "bakegen-hub-test-token-" + uuid.uuid4().hex
TOOLS = REPO / "tests" / "tools"
CHP = TOOLS / "node_modules" / ".bin" / "configurable-http-proxy"

CONFIG = """
import json
c = get_config()  # noqa
settings = json.loads({settings!r})
c.JupyterHub.spawner_class = "dockerspawner.DockerSpawner"
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.JupyterHub.bind_url = "http://127.0.0.1:%d" % settings["port"]
c.JupyterHub.hub_ip = "0.0.0.0"
c.JupyterHub.hub_port = settings["hub_port"]
c.JupyterHub.hub_connect_ip = settings["gateway"]
c.ConfigurableHTTPProxy.command = [settings["chp"]]
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:%d" % settings["proxy_api_port"]
c.JupyterHub.db_url = "sqlite:///" + settings["dir"] + "/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = settings["dir"] + "/cookie_secret"
c.JupyterHub.services = [{{"name": "bakegen-test", "api_token": settings["token"]}}]
c.JupyterHub.load_roles = [{{
    "name": "bakegen-test",
    "services": ["bakegen-test"],
    "scopes": ["admin:users", "admin:servers", "access:servers", "read:users"],
}}]
c.DockerSpawner.image = settings["image"]
c.DockerSpawner.network_name = settings["network"]
c.DockerSpawner.remove = True
c.DockerSpawner.name_template = settings["prefix"] + "-{{username}}"
c.DockerSpawner.volumes = settings["volumes"]
c.Spawner.start_timeout = 180
c.Spawner.http_timeout = 180
for key, value in settings["spawner"].items():
    setattr(c.DockerSpawner, key, value)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_path() -> str:
    """PATH with a Node.js for configurable-http-proxy (the venv's, from PyPI, else the machine's)."""
    venv_bin = str(Path(sys.executable).parent)
    return os.pathsep.join([venv_bin, os.environ.get("PATH", "")])


@dataclass
class Hub:
    """One JupyterHub process with its proxy. ``spawner`` holds extra DockerSpawner settings."""

    directory: Path
    image: str
    network: str
    jupyterhub: str
    spawner: dict = field(default_factory=dict)
    volumes: dict = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    prefix: str = field(default_factory=lambda: "bakegen-hub-" + uuid.uuid4().hex[:8])
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> str:
        path = self.directory / "jupyterhub.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self) -> Hub:
        self.directory.mkdir(parents=True, exist_ok=True)
        gateway = json.loads(docker("network", "inspect", self.network))[0]["IPAM"]["Config"][0]["Gateway"]
        settings = {
            "port": self.port, "hub_port": free_port(), "proxy_api_port": free_port(), "gateway": gateway,
            "chp": str(CHP), "dir": str(self.directory), "token": TOKEN, "image": self.image, "network": self.network,
            "prefix": self.prefix, "volumes": self.volumes, "spawner": self.spawner,
        }
        config = self.directory / "jupyterhub_config.py"
        config.write_text(CONFIG.format(settings=json.dumps(settings)))
        log = (self.directory / "jupyterhub.log").open("w")
        env = {**os.environ, "PATH": node_path()}
        self.process = subprocess.Popen([self.jupyterhub, "-f", str(config)], cwd=self.directory, stdout=log, stderr=subprocess.STDOUT, env=env)
        self._wait(lambda: self.api("GET", "/")[0] == 200, "the hub API", 60)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        for cid in docker("ps", "-aq", "--filter", f"name={self.prefix}-", check=False).split():
            docker("rm", "-f", cid, check=False)

    # --- HTTP through the proxy ---------------------------------------------------------

    def request(self, method: str, path: str, body: dict | None = None, timeout: float = 30) -> tuple[int, bytes, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Authorization": f"token {TOKEN}", "Content-Type": "application/json"})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())
        try:
            with opener.open(req, timeout=timeout) as resp:
                return resp.status, resp.read(), resp.headers
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), exc.headers
        except OSError:
            return 0, b"", {}

    def api(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        status, data, _ = self.request(method, "/hub/api" + path, body)
        try:
            return status, json.loads(data) if data else {}
        except ValueError:
            return status, {"raw": data.decode(errors="replace")}

    def user_get(self, user: str, path: str) -> tuple[int, bytes, Any]:
        return self.request("GET", f"/user/{user}{path}")

    # --- servers -----------------------------------------------------------------------------

    def start_server(self, user: str, timeout: float = 240) -> None:
        status, _ = self.api("POST", f"/users/{user}")
        assert status in (201, 409), (status, self.log[-3000:])
        status, body = self.api("POST", f"/users/{user}/server")
        assert status in (201, 202), (status, body, self.log[-3000:])

        def ready() -> bool:
            _, info = self.api("GET", f"/users/{user}")
            server = info.get("servers", {}).get("", {})
            if not server and not info.get("pending"):
                raise AssertionError(f"{user}'s server stopped while starting:\n{self.log[-4000:]}\n{self.container_logs(user)}")
            return bool(server.get("ready"))

        self._wait(ready, f"{user}'s server", timeout)

    def stop_server(self, user: str, timeout: float = 60) -> None:
        self.api("DELETE", f"/users/{user}/server")
        self._wait(lambda: not self.api("GET", f"/users/{user}")[1].get("servers"), f"{user}'s server to stop", timeout)

    def container(self, user: str) -> str:
        return f"{self.prefix}-{user}"

    def container_logs(self, user: str) -> str:
        """What the user's container wrote, stdout and stderr."""
        out = subprocess.run(["docker", "logs", self.container(user)], capture_output=True, text=True)
        return out.stdout + out.stderr

    def _wait(self, check, what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"jupyterhub exited with {self.process.returncode}:\n{self.log[-4000:]}")
            if check():
                return
            time.sleep(1)
        raise AssertionError(f"timed out waiting for {what}:\n{self.log[-4000:]}")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return None


def execute(hub: Hub, user: str, code: str, timeout: float = 120) -> dict:
    """Run ``code`` in a new kernel of ``user``'s server, through the hub's proxy."""
    return execute_at(f"{hub.url}/user/{user}", {"Authorization": f"token {TOKEN}"}, code, timeout)


def execute_at(server: str, headers: dict[str, str], code: str, timeout: float = 120) -> dict:
    """Start a kernel on the Jupyter server at ``server`` (http://host:port[/base]) and run ``code``
    over the kernel websocket. Returns {"status", "stdout", "error"} from execute_reply and iopub."""
    api = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    req = urllib.request.Request(f"{server}/api/kernels", data=b'{"name": "python3"}', method="POST", headers={**headers, "Content-Type": "application/json"})
    with api.open(req, timeout=60) as resp:
        kernel = json.loads(resp.read())["id"]
    try:
        return asyncio.run(_execute(server.replace("http", "ws", 1), headers, kernel, code, timeout))
    finally:
        api.open(urllib.request.Request(f"{server}/api/kernels/{kernel}", method="DELETE", headers=headers), timeout=30).close()


async def _execute(ws_server: str, headers: dict[str, str], kernel: str, code: str, timeout: float) -> dict:
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    url = f"{ws_server}/api/kernels/{kernel}/channels"
    conn = await websocket_connect(HTTPRequest(url, headers=headers, request_timeout=60))
    msg_id, session = uuid.uuid4().hex, uuid.uuid4().hex
    conn.write_message(json.dumps({
        "header": {"msg_id": msg_id, "username": "test", "session": session, "msg_type": "execute_request", "version": "5.3", "date": ""},
        "parent_header": {}, "metadata": {}, "buffers": [], "channel": "shell",
        "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
    }))
    out: dict = {"stdout": "", "error": None, "status": None}
    idle = False  # iopub's "idle" comes after the output; the shell reply may come before it
    deadline = time.monotonic() + timeout
    while out["status"] is None or not idle:
        raw = await asyncio.wait_for(conn.read_message(), max(1.0, deadline - time.monotonic()))
        assert raw is not None, "the kernel websocket closed"
        msg = json.loads(raw)
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind = msg["header"]["msg_type"]
        if kind == "stream" and msg["content"]["name"] == "stdout":
            out["stdout"] += msg["content"]["text"]
        elif kind == "error":
            out["error"] = f"{msg['content']['ename']}: {msg['content']['evalue']}"
        elif kind == "execute_reply":
            out["status"] = msg["content"]["status"]
        elif kind == "status" and msg["content"]["execution_state"] == "idle":
            idle = True
    conn.close()
    return out


def previous_hub() -> str:
    """jupyterhub of the previous major version (tests/tools/hub-previous, made by make tools)."""
    path = TOOLS / "hub-previous" / "bin" / "jupyterhub"
    assert path.exists(), f"{path} is missing: run make tools"
    return str(path)


def current_hub() -> str:
    path = shutil.which("jupyterhub", path=str(Path(sys.executable).parent))
    assert path, "jupyterhub is not installed in the test environment: pip install -e '.[test]'"
    return path
