"""The ways a user starts capture: scripts/record, sse-capture record/demo, mitmweb, an installed package."""

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from harness import ADDON, CHECKOUT_ENV, ROOT, Scenario, free_port, httpx_client, stop_process, wait_for_port, wait_until
from sse_capture_addon.recording import decode_data, find_recordings, read_recording

BIN = Path(sys.executable).parent


class _Proc:
    """A proxy started by some user-facing command, with the client helpers the tests need."""

    def __init__(self, cmd, port, cwd, env=None):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = Path(cwd) / f"proc-{port}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, cwd=cwd, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env={**CHECKOUT_ENV, **(env or {})})
        wait_for_port(port, timeout=120, proc=self.proc, log=self.log_path)

    def stop(self):
        stop_process(self.proc, timeout=15)
        self._log.close()


def _stream_once(proxy, certs, server, upstream_app, name, record_dir):
    upstream_app.add(name, Scenario([b'event: tool_use\ndata: {"type":"tool_use"}\n\n']))
    with httpx_client(proxy, certs) as client:
        assert client.get(f"{server.base}/sse/{name}").text == 'event: tool_use\ndata: {"type":"tool_use"}\n\n'
    wait_until(lambda: find_recordings(record_dir) if record_dir.exists() else [], what="a recording")
    [path] = find_recordings(record_dir)
    wait_until(lambda: read_recording(path).end is not None, what="the end line")
    assert [decode_data(e["data"]) for e in read_recording(path).events] == ['{"type":"tool_use"}']


def test_scripts_record_starts_a_capturing_proxy(certs, tmp_path, servers, upstream_app, scenario_name):
    port = free_port()
    proxy = _Proc([str(ROOT / "scripts" / "record"), "--listen-port", str(port), "--set",
                   f"confdir={certs.mitm_confdir}", "--set", f"ssl_verify_upstream_trusted_ca={certs.upstream_ca}"],
                  port, tmp_path, env={"SSE_CAPTURE_VENV": str(BIN.parent)})
    try:
        _stream_once(proxy, certs, servers["h1-tls"], upstream_app, scenario_name, tmp_path / "recordings")
    finally:
        proxy.stop()


def test_sse_capture_record_takes_the_directory_from_a_set_option_too(certs, tmp_path, servers, upstream_app,
                                                                      scenario_name):
    port = free_port()
    proxy = _Proc([str(BIN / "sse-capture"), "record", "--listen-port", str(port), "--set",
                   f"confdir={certs.mitm_confdir}", "--set", f"sse_capture_dir={tmp_path / 'set-dir'}"], port, tmp_path)
    try:
        _stream_once(proxy, certs, servers["h1"], upstream_app, scenario_name, tmp_path / "set-dir")
    finally:
        proxy.stop()
    assert not (tmp_path / "recordings").exists()
    both = subprocess.run([str(BIN / "sse-capture"), "record", "-d", "a", "--set", "sse_capture_dir=b"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, env=CHECKOUT_ENV, stdin=subprocess.DEVNULL)
    assert both.returncode == 2 and "given twice" in both.stderr, both


@pytest.mark.parametrize("asked", [None, "option", "config file"])
def test_sse_capture_record_shows_no_credential_from_a_url_unless_asked(certs, tmp_path, servers, upstream_app,
                                                                        scenario_name, asked):
    """mitmdump's own line per flow prints the URL as it is: a key in the query reached the terminal (and CI logs)
    although the recording and the addon's line redact it. ``record`` turns those lines off unless asked."""
    port = free_port()
    confdir = certs.mitm_confdir
    if asked == "config file":  # (a confdir of its own: mitmproxy makes a CA there, which plain HTTP does not use)
        confdir = tmp_path / "confdir"
        confdir.mkdir()
        (confdir / "config.yaml").write_text("flow_detail: 1\n")
    args = ["--flow-detail", "1"] if asked == "option" else []
    proxy = _Proc([str(BIN / "sse-capture"), "record", "--listen-port", str(port), "--set", f"confdir={confdir}",
                   *args], port, tmp_path)
    server = servers["h1"]
    upstream_app.add(scenario_name, Scenario([b"data: 1\n\n"]))
    try:
        with httpx_client(proxy, certs) as client:
            assert client.get(f"{server.base}/sse/{scenario_name}?api_key=K3Y-1N-URL&n=1").text == "data: 1\n\n"
        wait_until(lambda: "api_key=[REDACTED]&n=1: 1 events" in proxy.log_path.read_text(), what="the addon's line")
        if asked:
            wait_until(lambda: "api_key=K3Y-1N-URL" in proxy.log_path.read_text(), what="mitmdump's flow line")
    finally:
        proxy.stop()
    log = proxy.log_path.read_text()
    if not asked:
        assert "K3Y-1N-URL" not in log, log
        assert "line per flow is off, as it shows URLs unredacted (--flow-detail 1 to have it)" in log
    else:
        assert "line per flow is off" not in log


@pytest.mark.parametrize("args", [["-d", "mine"], ["--set", "sse_capture_dir=mine"], ["--set=sse_capture_filter=~u x"]])
def test_sse_capture_record_refuses_an_option_mitmproxys_config_file_would_override(certs, tmp_path, args):
    """mitmproxy applies confdir/config.yaml after --set (its issue #5069): -d would silently not be where the
    recordings go."""
    confdir = tmp_path / "conf"
    shutil.copytree(certs.mitm_confdir, confdir)
    (confdir / "config.yaml").write_text("sse_capture_dir: elsewhere\nsse_capture_filter: '~u chat'\n")
    r = subprocess.run([str(BIN / "sse-capture"), "record", *args, "--listen-port", str(free_port()),
                        "--set", f"confdir={confdir}"], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                       env=CHECKOUT_ENV, stdin=subprocess.DEVNULL)
    name = "sse_capture_filter" if "filter" in args[0] else "sse_capture_dir"
    assert r.returncode == 2 and r.stdout == "", r
    assert f"Error: {name} set both on the command line and in {confdir / 'config.yaml'}" in r.stderr, r.stderr
    assert not (tmp_path / "mine").exists() and not (tmp_path / "elsewhere").exists()


@pytest.mark.parametrize("option, message", [
    ("sse_capture_max_body=0", "sse_capture_max_body must be a positive number of bytes, got 0"),
    ("sse_capture_filter=~q(", "sse_capture_filter: invalid filter expression '~q(': "),
    ("sse_capture_filter=~bs delta", "sse_capture_filter: ~bs cannot choose streams by their response body: "),
    ("sse_capture_dir=/proc/none", "sse_capture_dir: cannot write recordings to '/proc/none': "),
    ("sse_capture_fsync=maybe", "Failed to parse option sse_capture_fsync: "),
])
def test_sse_capture_record_refuses_a_bad_option_in_one_line(certs, tmp_path, option, message):
    r = subprocess.run([str(BIN / "sse-capture"), "record", "--listen-port", str(free_port()),
                        "--set", f"confdir={certs.mitm_confdir}", "--set", option], cwd=tmp_path, capture_output=True,
                       text=True, timeout=60, env=CHECKOUT_ENV, stdin=subprocess.DEVNULL)
    assert r.returncode == 1 and r.stdout == "", r
    [line] = r.stderr.splitlines()  # no traceback, no "proxy listening at"
    assert line.startswith(f"Error: {message}"), line


def test_mitmweb_records_too(certs, tmp_path, servers, upstream_app, scenario_name):
    port = free_port()
    proxy = _Proc([str(BIN / "mitmweb"), "--no-web-open-browser", "--web-port", str(free_port()),
                   "--listen-host", "127.0.0.1", "--listen-port", str(port), "-s", str(ADDON),
                   "--set", f"confdir={certs.mitm_confdir}", "--set", f"sse_capture_dir={tmp_path / 'rec'}"],
                  port, tmp_path)
    try:
        _stream_once(proxy, certs, servers["h1"], upstream_app, scenario_name, tmp_path / "rec")
    finally:
        proxy.stop()


def test_mitmproxy_console_records_too(certs, tmp_path, servers, upstream_app, scenario_name):
    """mitmproxy's interactive console, on a real terminal (tmux)."""
    port, session = free_port(), f"sse-capture-test-{uuid.uuid4().hex[:8]}"
    cmd = " ".join([str(BIN / "mitmproxy"), "--listen-host", "127.0.0.1", "--listen-port", str(port),
                    "-s", str(ADDON), "--set", f"confdir={certs.mitm_confdir}",
                    "--set", f"sse_capture_dir={tmp_path / 'rec'}"])
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "200", "-y", "50", cmd], check=True,
                   env={**os.environ, "TERM": "xterm-256color"})
    try:
        wait_for_port(port, timeout=60)
        proxy = type("Console", (), {"url": f"http://127.0.0.1:{port}"})()
        _stream_once(proxy, certs, servers["h1"], upstream_app, scenario_name, tmp_path / "rec")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


def test_installed_package_works_outside_the_checkout(certs, tmp_path, servers, upstream_app, scenario_name):
    """pip install . (not editable): the -s script loads from site-packages and imports the package."""
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "--target", str(target), str(ROOT)], check=True, capture_output=True, timeout=300)
    addon = target / "sse_capture_addon" / "addon.py"
    assert addon.exists() and (target / "sse_capture_addon" / "recording.schema.json").exists()
    assert (target / "sse_capture_addon" / "replay").is_dir() and (target / "sse_capture_addon" / "inspect").is_dir()
    port = free_port()
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    env = {"PYTHONPATH": str(target)}
    proxy = _Proc([sys.executable, "-m", "sse_capture_addon.cli", "record", "--dir", str(tmp_path / "rec"),
                   "--listen-port", str(port), "--set", f"confdir={certs.mitm_confdir}"], port, cwd, env=env)
    try:
        _stream_once(proxy, certs, servers["h1"], upstream_app, scenario_name, tmp_path / "rec")
        assert f"Loading script {addon}" in proxy.log_path.read_text()
    finally:
        proxy.stop()


@pytest.mark.parametrize("command", ["sse-capture demo", "scripts/demo"])
def test_demo_records_a_chat_from_the_bundled_agent(tmp_path, command):
    # a relative --dir is the caller's (scripts/demo used to write it into the checkout), and the demo's own
    # mitmproxy CA, private key included, does not outlive it
    program = [str(BIN / "sse-capture"), "demo"] if command == "sse-capture demo" else [str(ROOT / "scripts" / "demo")]
    (tmp_path / "tmp").mkdir()
    out = subprocess.run([*program, "--dir", "rec"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "TMPDIR": str(tmp_path / "tmp"), "SSE_CAPTURE_VENV": str(BIN.parent)})
    assert out.returncode == 0, out.stderr
    assert list((tmp_path / "tmp").iterdir()) == []
    [path] = find_recordings(tmp_path / "rec")
    rec = read_recording(path)
    assert rec.ending == "complete"
    assert [e["event"] for e in rec.events] == ["message_start", "delta", "delta", "tool_use", "tool_result",
                                                "delta", "delta", "done"]
    assert '"type":"tool_use"' in out.stdout and f"recorded {os.path.relpath(path, tmp_path)} " in out.stdout


@pytest.mark.parametrize("fsync", ["true", "false"])
def test_fsync_option_records_the_same(certs, tmp_path, servers, upstream_app, scenario_name, fsync):
    from harness import Mitmdump

    upstream_app.add(scenario_name, Scenario([b"data: a\n\n", b"data: b\n\n"]))
    with Mitmdump(certs, tmp_path, args=["--set", f"sse_capture_fsync={fsync}"]) as mitm:
        with httpx_client(mitm, certs) as client:
            client.get(f"{servers['h1'].base}/sse/{scenario_name}")
        [path] = mitm.wait_for_recordings(1)
    assert [decode_data(e["data"]) for e in read_recording(path).events] == ["a", "b"]
