"""Real parts for the tests: a real mitmdump process, real upstream SSE servers, CA files.

Everything listens on 127.0.0.1 only. Servers run in background threads of the test process so a test
can script exactly what the upstream sends and when (``Scenario``), and wait for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sse_capture_addon.processes import (free_port, listening_sockets, stop_process,  # noqa: F401 (re-exported)
                                         wait_for_port)

ROOT = Path(__file__).resolve().parent.parent
ADDON = ROOT / "sse_capture_addon" / "addon.py"
BIN = Path(sys.executable).parent
MITMDUMP = BIN / "mitmdump"
#: for subprocesses: mitmdump (whose -s scripts import the package) and ``python -m`` import this checkout's package,
#: not the one installed in the venv (which may be another checkout's, e.g. from a git worktree)
CHECKOUT_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1", "--proxy-bypass-list=<-loopback>",
]


# --- certificates ----------------------------------------------------------------------------------------

@dataclass
class Certs:
    mitm_confdir: Path    # mitmproxy's confdir with its CA (clients trust mitmproxy-ca-cert.pem)
    upstream_ca: Path     # CA that signed the upstream servers' certificate (mitmproxy trusts it)
    upstream_cert: Path
    upstream_key: Path

    @property
    def mitm_ca(self) -> Path:
        return self.mitm_confdir / "mitmproxy-ca-cert.pem"


def make_certs(base: Path) -> Certs:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    from mitmproxy.certs import CertStore

    confdir = base / "mitm"
    confdir.mkdir(parents=True, exist_ok=True)
    CertStore.from_store(str(confdir), "mitmproxy", 2048)

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sse-capture test upstream CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    import ipaddress
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    up = base / "upstream"
    up.mkdir(exist_ok=True)
    (up / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (up / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (up / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                   serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
    return Certs(confdir, up / "ca.pem", up / "cert.pem", up / "key.pem")


# --- mitmdump --------------------------------------------------------------------------------------------

class Mitmdump:
    """A real ``mitmdump`` subprocess. ``scripts`` defaults to the capture addon."""

    def __init__(self, certs: Certs, workdir: Path, *, record_dir: Path | None = None,
                 args: Iterable[str] = (), scripts: Iterable[Path] | None = None, port: int | None = None,
                 env: dict | None = None, wait: bool = True, preexec_fn: Callable | None = None,
                 listen_host: str | None = "127.0.0.1"):
        self.port = port or free_port()
        self.record_dir = record_dir or (workdir / "recordings")
        self.log_path = workdir / f"mitmdump-{self.port}.log"
        scripts = [ADDON] if scripts is None else list(scripts)
        cmd = [str(MITMDUMP), *(["--listen-host", listen_host] if listen_host is not None else []),
               "--listen-port", str(self.port),
               "--set", f"confdir={certs.mitm_confdir}",
               "--set", f"ssl_verify_upstream_trusted_ca={certs.upstream_ca}"]
        for script in scripts:
            cmd += ["-s", str(script)]
        if ADDON in scripts:
            cmd += ["--set", f"sse_capture_dir={self.record_dir}"]
        cmd += list(args)
        self.cmd = cmd
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, cwd=workdir,
                                     env={**CHECKOUT_ENV, **(env or {})}, preexec_fn=preexec_fn)
        if wait:
            wait_for_port(self.port, proc=self.proc, log=self.log_path)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def recordings(self) -> list[Path]:
        return sorted(self.record_dir.rglob("*.jsonl")) if self.record_dir.exists() else []

    def wait_for_recordings(self, n: int, ended: bool = True, timeout: float = 15.0) -> list[Path]:
        """Wait until ``n`` recordings exist (and, with ``ended``, each has its end line)."""
        from sse_capture_addon.recording import read_recording

        deadline = time.monotonic() + timeout
        while True:
            files = self.recordings()
            if len(files) >= n and (not ended or all(read_recording(f).end is not None for f in files)):
                return files
            if time.monotonic() > deadline:
                raise TimeoutError(f"expected {n} recordings (ended={ended}), have {files}\n{self.log()}")
            time.sleep(0.05)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=15)

    def stop(self) -> None:
        stop_process(self.proc)
        self._log.close()

    def __enter__(self) -> "Mitmdump":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def run_mitmdump_expect_failure(certs: Certs, workdir: Path, args: Iterable[str], timeout: float = 30,
                                scripts_before: Iterable[Path] = ()) -> tuple[int, str]:
    """Start mitmdump with the addon (after ``scripts_before``) and options expected to be refused; return (exit
    code, output)."""
    cmd = [str(MITMDUMP), "--listen-host", "127.0.0.1", "--listen-port", str(free_port()),
           "--set", f"confdir={certs.mitm_confdir}", *(a for s in scripts_before for a in ("-s", str(s))),
           "-s", str(ADDON), *args]
    proc = subprocess.run(cmd, capture_output=True, timeout=timeout, cwd=workdir, stdin=subprocess.DEVNULL,
                          env=CHECKOUT_ENV)
    return proc.returncode, (proc.stdout + proc.stderr).decode(errors="replace")


# --- upstream SSE servers --------------------------------------------------------------------------------

class Abort(Exception):
    """Raised inside the ASGI app to make the server reset the stream mid-body."""


@dataclass
class Scenario:
    """What the upstream sends for one path: steps are bytes (a chunk), a float (sleep seconds),
    a ``threading.Event`` (wait for the test), or ``"abort"`` (reset the stream)."""

    steps: list
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=lambda: [("content-type", "text/event-stream"),
                                                                     ("cache-control", "no-cache")])
    requests: list[dict] = field(default_factory=list)   # what the server received
    sent: int = 0                                          # chunks sent so far
    finished: threading.Event = field(default_factory=threading.Event)
    disconnected: threading.Event = field(default_factory=threading.Event)


PAGE_EVENTSOURCE = """<!doctype html><meta charset=utf-8><title>es</title><script>
window.__log = []; window.__done = false;
const es = new EventSource(%(src)s);
const types = %(types)s;
function rec(e) { window.__log.push({type: e.type, data: e.data, id: e.lastEventId}); }
for (const t of types) es.addEventListener(t, rec);
es.onerror = () => { window.__log.push({type: "error", readyState: es.readyState}); es.close(); window.__done = true; };
</script>"""

PAGE_FETCH = """<!doctype html><meta charset=utf-8><title>fetch</title><script>
window.__chunks = []; window.__text = ""; window.__done = false; window.__error = null;
(async () => {
  try {
    const r = await fetch(%(src)s, {method: "POST", headers: {"content-type": "application/json"},
                                    body: JSON.stringify({messages: [{role: "user", content: "hi"}]})});
    window.__status = r.status;
    const reader = r.body.getReader(); const dec = new TextDecoder();
    for (;;) { const {value, done} = await reader.read(); if (done) break;
      window.__chunks.push(value.length); window.__text += dec.decode(value, {stream: true}); }
  } catch (e) { window.__error = String(e); }
  window.__done = true;
})();
</script>"""


class UpstreamApp:
    """ASGI app: ``/sse/<name>`` plays the registered ``Scenario``; ``/page/es`` and ``/page/fetch``
    serve pages that log what a browser receives from ``?src=``."""

    def __init__(self) -> None:
        self.scenarios: dict[str, Scenario] = {}

    def add(self, name: str, scenario: Scenario) -> Scenario:
        self.scenarios[name] = scenario
        return scenario

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        path = scope["path"]
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        if path.startswith("/page/"):
            import json
            from urllib.parse import parse_qs
            qs = parse_qs(scope["query_string"].decode())
            src = qs.get("src", ["/sse/default"])[0]
            types = qs.get("types", ["message"])[0].split(",")
            page = PAGE_EVENTSOURCE if path == "/page/es" else PAGE_FETCH
            html = (page % {"src": json.dumps(src), "types": json.dumps(types)}).encode()
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/html; charset=utf-8")]})
            await send({"type": "http.response.body", "body": html})
            return
        name = path.removeprefix("/sse/")
        scenario = self.scenarios.get(name)
        if scenario is None:
            await send({"type": "http.response.start", "status": 404, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"no such scenario"})
            return
        scenario.requests.append({"method": scope["method"], "headers": scope["headers"], "body": body,
                                  "http_version": scope["http_version"]})
        await send({"type": "http.response.start", "status": scenario.status,
                    "headers": [(k.encode(), v.encode()) for k, v in scenario.headers]})
        try:
            for step in scenario.steps:
                if isinstance(step, bytes):
                    await send({"type": "http.response.body", "body": step, "more_body": True})
                    scenario.sent += 1
                elif isinstance(step, (int, float)):
                    await asyncio.sleep(step)
                elif isinstance(step, threading.Event):
                    while not step.is_set():
                        await asyncio.sleep(0.01)
                elif step == "abort":
                    raise Abort("scenario asked for a reset")
                else:
                    raise ValueError(f"bad step {step!r}")
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except (OSError, asyncio.CancelledError):
            scenario.disconnected.set()
            raise
        finally:
            scenario.finished.set()


class HypercornServer:
    """Hypercorn serving an ``UpstreamApp`` in a thread: ``kind`` is ``h1``, ``h1-tls`` or ``h2-tls``."""

    def __init__(self, app: UpstreamApp, kind: str, certs: Certs):
        from hypercorn.config import Config

        self.app, self.kind = app, kind
        self.port = free_port()
        config = Config()
        config.bind = [f"127.0.0.1:{self.port}"]
        config.accesslog = None
        config.errorlog = None
        config.graceful_timeout = 0.5
        config.keep_alive_timeout = 5
        if kind != "h1":
            config.certfile, config.keyfile = str(certs.upstream_cert), str(certs.upstream_key)
            config.alpn_protocols = ["h2", "http/1.1"] if kind == "h2-tls" else ["http/1.1"]
        self.config = config
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = threading.Event()
        self._thread.start()
        self._started.wait(10)
        wait_for_port(self.port)

    @property
    def scheme(self) -> str:
        return "http" if self.kind == "h1" else "https"

    @property
    def base(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def _run(self) -> None:
        from hypercorn.asyncio import serve

        async def main():
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._started.set()
            await serve(self.app, self.config, shutdown_trigger=self._stop.wait)

        asyncio.run(main())

    def stop(self) -> None:
        if self._loop and self._stop:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(10)


class LoopbackServer:
    """A threaded TCP server on 127.0.0.1 (or ``host="::1"``): a thread per connection runs ``_serve(conn)``."""

    scheme = "http"

    def __init__(self, backlog: int = 64, host: str = "127.0.0.1"):
        self.host = host
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(backlog)
        self.port = self.sock.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def base(self) -> str:
        return f"{self.scheme}://{f'[{self.host}]' if ':' in self.host else self.host}:{self.port}"

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self._closed = True
        self.sock.close()


class RawServer(LoopbackServer):
    """A raw TCP server for byte-exact or broken HTTP/1.1 responses: ``respond(request_bytes)`` returns the
    list of steps (bytes / float sleep / "reset" for a TCP RST / "close")."""

    def __init__(self, respond: Callable[[bytes], list], host: str = "127.0.0.1"):
        self.respond = respond
        self.requests: list[bytes] = []
        super().__init__(host=host)

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            self.requests.append(data)
            try:
                for step in self.respond(data):
                    if isinstance(step, bytes):
                        conn.sendall(step)
                    elif isinstance(step, (int, float)):
                        time.sleep(step)
                    elif step == "reset":
                        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                        return
                    elif step == "close":
                        return
            except OSError:
                return


def sse_response_head(extra: str = "", chunked: bool = False) -> bytes:
    head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    head += "transfer-encoding: chunked\r\n" if chunked else "connection: close\r\n"
    return (head + extra + "\r\n").encode()


def chunked(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


# --- clients ---------------------------------------------------------------------------------------------

def httpx_client(mitm: Mitmdump, certs: Certs, http2: bool = False, timeout: float = 20.0):
    import httpx

    return httpx.Client(proxy=mitm.url, verify=ssl.create_default_context(cafile=str(certs.mitm_ca)),
                        http2=http2, timeout=timeout)


@contextlib.contextmanager
def browser(proxy: str | None = None, ignore_https_errors: bool = True) -> Iterator:
    """A Playwright browser context on Debian's headless Chromium, optionally through a proxy."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        kwargs = {"executable_path": CHROMIUM, "args": CHROMIUM_ARGS, "headless": True}
        if proxy:
            kwargs["proxy"] = {"server": proxy}
        b = p.chromium.launch(**kwargs)
        try:
            ctx = b.new_context(ignore_https_errors=ignore_https_errors)
            yield ctx
        finally:
            b.close()


def listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as in /proc/net/tcp*) with a socket listening on ``port``."""
    return set(listening_sockets(port).values())


LOOPBACK_HEX = {"0100007F", "00000000000000000000000001000000"}


def wait_until(predicate: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)
