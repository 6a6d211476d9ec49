"""`interp ui` answers only to its own names (DNS rebinding): the real app through Starlette's test
client with forged Host headers, the real command bound with --host, and the parsing of Host
values."""
from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time

import pytest

from interp.ui.hosts import HostCheck, host_name


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8765", "127.0.0.1.evil.example",
                                  "localhost.evil.example:8765", "testserver", "[::2]:8765",
                                  "127.0.0.1:80x", "[::1]x", ""])
def test_a_foreign_host_is_refused_on_every_route(client, host):
    for path in ("/", "/latents", "/api/latents", "/static/style.css", "/no/such/page"):
        r = client.get(path, headers={"Host": host})
        assert r.status_code == 421, (path, r.status_code)
        assert "interp ui --host" in r.text and "evil" not in r.text  # the Host is not echoed


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.1:8765", "localhost", "LocalHost:1",
                                  "localhost.", "[::1]", "[::1]:8765"])
def test_loopback_names_are_served(client, host):
    r = client.get("/", headers={"Host": host})
    assert r.status_code == 200 and "CE loss recovered" in r.text


def test_the_host_given_to_interp_ui_is_served_and_others_still_refused(ui_home):
    from starlette.testclient import TestClient

    from interp.ui.app import create_app

    app = create_app(ui_home, host="labbox.lan", preload_model=False)
    with TestClient(app, base_url="http://labbox.lan:8765") as c:
        assert c.get("/").status_code == 200
        assert c.get("/", headers={"Host": "localhost:8765"}).status_code == 200
        assert c.get("/", headers={"Host": "evil.example"}).status_code == 421


def test_a_wildcard_bind_accepts_addresses_but_not_foreign_names():
    check = HostCheck(app=None, bind_host="0.0.0.0")
    assert check.accepts("192.168.1.20:8765") and check.accepts("[fe80::1]:8765")
    assert check.accepts("localhost:8765")
    assert not check.accepts("evil.example:8765") and not check.accepts(None)
    assert not HostCheck(app=None).accepts("192.168.1.20:8765")  # the default, loopback bind


def test_host_header_parsing():
    assert host_name("Example.COM:80") == "example.com"
    assert host_name("[::1]:8765") == host_name("[::1]") == "::1"
    assert host_name("localhost.") == "localhost"
    assert host_name("a:b") == host_name("[::1") == host_name("[::1]:x") == ""


@pytest.mark.timeout(90)
def test_interp_ui_serves_under_its_host_flag_and_refuses_others(ui_home):
    # The real command in its own process, bound to another loopback address (Linux routes all
    # of 127/8 to lo), so its --host reaches the check through the CLI.
    with socket.socket() as s:
        s.bind(("127.0.0.2", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-m", "interp.cli", "ui", "--home", str(ui_home),
                             "--host", "127.0.0.2", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert "serving" in proc.stdout.readline()
        statuses = {host: _status_when_up(port, host) for host in
                    (f"127.0.0.2:{port}", f"localhost:{port}", f"evil.example:{port}", "127.0.0.1")}
    finally:
        proc.terminate()
        proc.wait(10)
    assert statuses == {f"127.0.0.2:{port}": 200, f"localhost:{port}": 200,
                        f"evil.example:{port}": 421, "127.0.0.1": 200}


def _status_when_up(port: int, host: str) -> int:
    deadline = time.monotonic() + 30
    while True:
        conn = http.client.HTTPConnection("127.0.0.2", port, timeout=10)
        try:
            conn.request("GET", "/", headers={"Host": host})
            return conn.getresponse().status
        except ConnectionRefusedError:
            assert time.monotonic() < deadline, "interp ui did not listen within 30 s"
            time.sleep(0.1)
        finally:
            conn.close()
