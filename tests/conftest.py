import itertools
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import HypercornServer, Mitmdump, UpstreamApp, make_certs  # noqa: E402

_names = itertools.count()


@pytest.fixture(params=["C accelerators", "pure Python"])
def implementation(request, monkeypatch):
    """Runs a test with the C accelerators of sse_capture_addon/_speedups.c (when built) and without them: the
    Python code is what runs where no C compiler was at hand, and must give the same results."""
    from sse_capture_addon import recorder, recording, sse
    if request.param == "C accelerators":
        if recording._exact_c is None or sse._c_simple_blocks is None or recorder._token_chunk is None \
                or recorder._typed_chunk is None:
            pytest.fail("sse_capture_addon._speedups is not built, or its orjson self-check failed: scripts/test "
                        "installs gcc; then `touch sse_capture_addon/_speedups.c` and run it again")
    else:
        monkeypatch.setattr(recording, "_exact_c", None)
        monkeypatch.setattr(recording, "_exact_lines_c", None)
        monkeypatch.setattr(recorder, "_token_chunk", None)
        monkeypatch.setattr(recorder, "_typed_chunk", None)
        monkeypatch.setattr(sse, "_c_simple_blocks", None)
        monkeypatch.setattr(sse.SSEParser, "feed", sse.SSEParser._feed_py)  # not ParserCore.feed
    return request.param


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="session")
def upstream_app():
    return UpstreamApp()


@pytest.fixture(scope="session")
def servers(upstream_app, certs):
    """One hypercorn per kind, shared by the session: {"h1": ..., "h1-tls": ..., "h2-tls": ...}."""
    started = {kind: HypercornServer(upstream_app, kind, certs) for kind in ("h1", "h1-tls", "h2-tls")}
    yield started
    for server in started.values():
        server.stop()


@pytest.fixture
def scenario_name():
    return f"s{next(_names)}"


@pytest.fixture
def mitm(certs, tmp_path):
    """A real mitmdump with the capture addon, recording into tmp_path/recordings."""
    with Mitmdump(certs, tmp_path) as m:
        yield m
