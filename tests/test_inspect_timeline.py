"""``timeline``: the page drawn from real recordings, opened in headless Chromium."""

from __future__ import annotations

import os
import re
import shutil

from harness import browser
from inspect_helpers import run

pytest_plugins = ["inspect_fixtures"]  # the session-wide `recs` recordings


def test_timeline_page_in_a_real_browser(recs, tmp_path):
    page_file = tmp_path / "timeline.html"
    r = run("timeline", recs["anthropic-ok"], recs["stall"], recs["openai-reset"], recs["killed"],
            "-o", page_file, "--stall", "1")
    assert r.code == 0, r.err
    html = page_file.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)  # self-contained: nothing to fetch

    with browser() as ctx:
        requests = []
        page = ctx.new_page()
        page.on("request", lambda req: requests.append(req.url))
        page.set_viewport_size({"width": 1280, "height": 800})
        page.goto(page_file.as_uri())
        assert [u for u in requests if not u.startswith("file:")] == []
        lanes = page.locator("g.lane")
        assert lanes.count() == 4
        assert [lanes.nth(i).get_attribute("data-ending") for i in range(4)] == \
            ["complete", "complete", "server_error", "proxy_died"]
        assert page.locator("g.lane").nth(0).locator("rect.ev").count() == 8
        assert "message_start 1" in page.locator(".legend").inner_text()
        # the 1.3s silence in the second recording is shaded and labelled
        stall = page.locator("g.lane").nth(1).locator("text.stall-label")
        assert re.fullmatch(r"stall 1\.\d\ds", stall.text_content())
        assert page.locator("g.lane").nth(2).locator("text.end-label").text_content() == "server error"
        assert page.locator("g.lane").nth(3).locator("text.end-label").text_content() == "proxy died"
        # event colours follow the type, the same in every lane
        colours = page.eval_on_selector_all("rect.ev", "els => els.map(e => e.getAttribute('fill'))")
        assert len(set(colours)) >= 6
        # hovering an event shows its data
        page.locator("g.lane").nth(0).locator("rect.ev").nth(3).hover()
        tip = page.locator("#tip")
        assert tip.is_visible()
        assert tip.inner_text().startswith("#4 content_block_delta")
        assert '"text": "Hel"' in tip.inner_text()
        page.screenshot(path=str(tmp_path / "timeline.png"), full_page=True)
    assert (tmp_path / "timeline.png").stat().st_size > 10_000


def test_timeline_of_a_directory_and_bad_input(recs, tmp_path):
    out = tmp_path / "all.html"
    r = run("timeline", recs["dir"], "-o", out)
    assert r.code == 0 and r.out.strip() == f"wrote {out} (10 recording(s))"
    assert out.read_text().count('<g class="lane"') == 10
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run("timeline", empty, "-o", out)
    assert r.code == 2 and r.err.strip() == f"sse-capture: {empty}: no recordings (*.jsonl) here"


def test_timeline_of_a_directory_with_an_unreadable_file_draws_the_others(recs, tmp_path):
    """As ls, stats and lint do: the good ones are reported, one line per bad file, exit status 2."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(recs["anthropic-ok"], folder / "a.jsonl")
    (folder / "b.jsonl").write_text("not json\n")
    out = tmp_path / "mixed.html"
    r = run("timeline", folder, tmp_path / "missing.jsonl", "-o", out)
    assert r.code == 2 and r.out.strip() == f"wrote {out} (1 recording(s))"
    assert r.err.splitlines() == [f"sse-capture: {folder / 'b.jsonl'}:1: invalid JSON: invalid literal, expected "
                                  "'null': line 1 column 1 (char 0)",
                                  f"sse-capture: {tmp_path / 'missing.jsonl'}: no such file or directory"]
    assert out.read_text().count('<g class="lane"') == 1


def test_timeline_output_that_cannot_be_written_is_a_bad_option(recs, tmp_path):
    for output, reason in ((tmp_path / "no" / "x.html", f"cannot write {tmp_path / 'no' / 'x.html'}: no such "
                                                        f"directory {tmp_path / 'no'}"),
                           (tmp_path, f"{tmp_path} is a directory; give a file name")):
        r = run("timeline", recs["anthropic-ok"], "-o", output)
        assert r.code == 2 and "Traceback" not in r.err
        assert r.err.splitlines()[-1] == f"Error: Invalid value for '-o' / '--output': {reason}"
    read_only = tmp_path / "read-only.html"
    read_only.write_text("")
    read_only.chmod(0o400)
    if not os.access(read_only, os.W_OK):  # (root may write anyway)
        r = run("timeline", recs["anthropic-ok"], "-o", read_only)
        assert r.code == 2 and r.err.splitlines()[-1] == \
            f"Error: Invalid value for '-o' / '--output': cannot write {read_only}: permission denied"


def test_a_recording_still_being_written_is_shaded_like_lint_counts_it(tmp_path):
    """The silence after the last event of a stream still going is a stall for lint and stats: timeline shades
    it too, up to the last line written so far."""
    import fcntl

    import orjson

    from sse_capture_addon.inspect.timeline import read_lane

    path = tmp_path / "live.jsonl"
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in [
        {"kind": "header", "format": "sse-capture", "version": 3, "stream_id": "s", "started": "2026-01-01T00:00:00Z",
         "request": {"method": "GET", "url": "http://x/sse", "headers": []}, "response": {"status": 200, "headers": []}},
        {"t": 0.1, "kind": "event", "event": "message", "data": "a"},
        {"t": 100.0, "kind": "comment", "text": " ping"}]))
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as a proxy still writing it holds it
        lane = read_lane(str(path), stall=30.0)
        lint = run("lint", path, "--max-stall", "30", "--preset", "none")
    finally:
        os.close(fd)
    assert lane.ending == "in_progress" and lane.stalls == [(0.1, 99.9)]
    assert "no event for 99.900s after the last event #1, until its last line so far" in lint.out
