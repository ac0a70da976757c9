"""The recordings' file system fails: traffic continues, the error is logged once per stream, the
recording is marked failed, and recording recovers when space (or the directory) comes back.

Disk full uses a real 4 MiB tmpfs mounted over the recordings directory (we run as root, in CI too);
the file-size limit case uses RLIMIT_FSIZE on the mitmdump process (Python ignores SIGXFSZ, so writes
fail with EFBIG). The end line, which tells readers the stream ended rather than the proxy dying, is
written even on a disk that is still full, from a small space reserve kept in the recordings directory;
the StreamRecorder tests below check that on the same tmpfs without a proxy.
"""

import errno
import json
import os
import resource
import shutil
import subprocess
import threading
import time

import httpx
import pytest

from inspect_helpers import run

from harness import ADDON, Mitmdump, RawServer, Scenario, httpx_client, sse_response_head, wait_until
from reliability_helpers import fill_fs, log_lines, mount_tmpfs, recording_for, reference_events, umount, whole_lines
from sse_capture_addon.inspect.timeline import read_lane
from sse_capture_addon.recorder import StreamRecorder
from sse_capture_addon.recording import FORMAT, FORMAT_VERSION, decode_data, find_recordings, read_recording
from sse_capture_addon.writer import RecordingFile, SpaceReserve


@pytest.fixture
def small_fs(tmp_path):
    d = tmp_path / "small-fs"
    mount_tmpfs(d, "4m")
    yield d
    umount(d)


def _events(rec):
    return [(e["event"], decode_data(e["data"]), e.get("id")) for e in rec.events]


def _small(i):
    return f"id: {i}\ndata: small {i}\n\n".encode()


def _big(i):
    return f"id: {i}\ndata: {'B' * 6000} {i}\n\n".encode()


def _reader(client, url, out: dict, key, ready: threading.Event | None = None, ready_size: int = 0):
    got = bytearray()
    try:
        with client.stream("GET", url) as r:
            for piece in r.iter_raw():
                got += piece
                if ready is not None and len(got) >= ready_size:
                    ready.set()
    except httpx.HTTPError as e:
        out[key + "-error"] = e
    out[key] = bytes(got)


def test_disk_full_mid_stream_then_space_returns(certs, tmp_path, small_fs, servers, upstream_app, scenario_name):
    names = [f"{scenario_name}-a", f"{scenario_name}-b"]
    full, freed = threading.Event(), threading.Event()
    sent = {}
    for n in names:
        first = [_small(i) for i in range(5)]
        during = [_big(i) for i in range(5, 11)]
        after = [_small(i) for i in range(11, 14)]
        upstream_app.add(n, Scenario([*first, full, *during, freed, *after]))
        sent[n] = (b"".join(first), b"".join(first + during), b"".join(first + during + after))
    results: dict = {}
    with Mitmdump(certs, tmp_path, record_dir=small_fs) as mitm, httpx_client(mitm, certs) as client:
        ready = {n: threading.Event() for n in names}
        threads = [threading.Thread(target=_reader, args=(client, f"{servers['h1'].base}/sse/{n}", results, n,
                                                          ready[n], len(sent[n][0])))
                   for n in names]
        for t in threads:
            t.start()
        for n in names:
            assert ready[n].wait(15)
        filler = fill_fs(small_fs)
        full.set()
        # traffic continues while nothing can be written: wait until both clients have the big events
        deadline = time.monotonic() + 15
        while any(len(results.get(n, b"")) < len(sent[n][1]) for n in names):
            paths = {n: recording_for(mitm, f"/sse/{n}", ended=False) for n in names}
            if all(len(log_lines(mitm, f"writing {p} failed")) for p in paths.values()):
                break
            assert time.monotonic() < deadline, mitm.log()[-3000:]
            time.sleep(0.05)
        filler.unlink()
        freed.set()
        for t in threads:
            t.join(20)
        paths = {n: recording_for(mitm, f"/sse/{n}") for n in names}
        # the next stream records fine
        upstream_app.add(f"{scenario_name}-next", Scenario([_small(0), _small(1)]))
        assert client.get(f"{servers['h1'].base}/sse/{scenario_name}-next").content == _small(0) + _small(1)
        nxt = read_recording(recording_for(mitm, f"/sse/{scenario_name}-next"))
        log = mitm.log()
    for n in names:
        assert results[n] == sent[n][2] and f"{n}-error" not in results   # traffic unchanged, complete
        path = paths[n]
        # the error is logged once for this stream, loudly, with the file and the reason
        failures = [row for row in log.splitlines() if f"writing {path} failed" in row]
        assert len(failures) == 1, failures
        assert "No space left on device" in failures[0] and "traffic continues" in failures[0]
        whole_lines(path)
        rec = read_recording(path)
        assert rec.ending == "recording_failed" and rec.end["stream_ended"] == "complete", rec.end
        assert rec.end["events"] == 14 and rec.end["bytes"] == len(sent[n][2])
        assert any("No space left on device" in e for e in rec.end["errors"])
        # what was written is exact; a write-error line says how much was lost, then recording resumed
        expected = reference_events(sent[n][2])
        recorded = _events(rec)
        assert recorded[:5] == expected[:5] and recorded[-3:] == expected[-3:]
        assert set(recorded) <= set(expected) and len(recorded) < 14
        [lost] = [r for r in rec.records if r["kind"] == "error" and r.get("what") == "write"]
        assert "line(s) were lost" in lost["message"]
        kinds = [r["kind"] for r in rec.records]
        assert kinds.index("error") < [i for i, k in enumerate(kinds) if k == "event"][-3]
    assert nxt.ending == "complete" and len(nxt.events) == 2 and not nxt.end["errors"]


def _tail(size):
    return b"data: " + b"T" * size if size else b""


def test_disk_full_before_the_stream_starts(certs, tmp_path, small_fs, servers, upstream_app, scenario_name):
    """Even the header line fails: the stream still passes, its recording is readable (header, then the end
    line from the reserve), and the directory stays one that `ls` and replay read."""
    events = [_small(i) for i in range(3)]
    upstream_app.add("first-" + scenario_name, Scenario([_small(0)]))
    upstream_app.add(scenario_name, Scenario(events))
    with Mitmdump(certs, tmp_path, record_dir=small_fs) as mitm, httpx_client(mitm, certs) as client:
        assert client.get(f"{servers['h1'].base}/sse/first-{scenario_name}").content == _small(0)  # the reserve
        recording_for(mitm, f"/sse/first-{scenario_name}")
        filler = fill_fs(small_fs)
        try:
            assert client.get(f"{servers['h1'].base}/sse/{scenario_name}").content == b"".join(events)
            path = recording_for(mitm, f"/sse/{scenario_name}")
        finally:
            filler.unlink()
    rec = read_recording(path)
    assert rec.ending == "recording_failed" and rec.end["stream_ended"] == "complete" and rec.end["events"] == 3
    assert all(read_recording(p).header for p in find_recordings(small_fs))


@pytest.mark.parametrize("tail_size", [0, 5000, 100_000], ids=["no-tail", "tail-kept", "tail-dropped"])
def test_disk_still_full_when_the_stream_ends(certs, tmp_path, small_fs, servers, upstream_app, scenario_name,
                                              tail_size):
    """Space never comes back during the stream. The failed writes are rolled back to the last whole line,
    and the end line is still written (from the space reserve when it does not fit in the file's last page),
    so readers see "recording_failed", not "proxy_died". An unterminated tail too big for a fair share of the
    reserve is left out of the end line; its size is kept. Traffic unchanged, logged once, next stream fine."""
    full = threading.Event()
    first = [_small(i) for i in range(3)]
    tail = _tail(tail_size)
    rest = [_big(i) for i in range(3, 8)] + ([tail] if tail else [])
    upstream_app.add(scenario_name, Scenario([*first, full, *rest]))
    with Mitmdump(certs, tmp_path, record_dir=small_fs) as mitm, httpx_client(mitm, certs) as client:
        with client.stream("GET", f"{servers['h1'].base}/sse/{scenario_name}") as r:
            it = r.iter_raw()
            got = bytearray()
            while len(got) < len(b"".join(first)):
                got += next(it)
            assert (small_fs / SpaceReserve.NAME).stat().st_size == SpaceReserve.SIZE
            filler = fill_fs(small_fs)
            full.set()
            for piece in it:
                got += piece
        assert bytes(got) == b"".join(first + rest)
        path = recording_for(mitm, f"/sse/{scenario_name}", ended=False)
        deadline = time.monotonic() + 10
        while not log_lines(mitm, f"recording_failed GET .*/sse/{scenario_name}:"):
            assert time.monotonic() < deadline, mitm.log()[-3000:]
            time.sleep(0.05)
        failures = log_lines(mitm, f"writing {path} failed")
        whole_lines(path)
        rec = read_recording(path)
        filler.unlink()
        upstream_app.add(scenario_name + "-next", Scenario([_small(0)]))
        assert client.get(f"{servers['h1'].base}/sse/{scenario_name}-next").content == _small(0)
        nxt = read_recording(recording_for(mitm, f"/sse/{scenario_name}-next"))
        reserve_after = (small_fs / SpaceReserve.NAME).stat().st_size
    assert len(failures) == 1
    assert _events(rec)[:3] == reference_events(b"".join(first))
    assert len(rec.events) < 8
    assert rec.ending == "recording_failed" and rec.end["stream_ended"] == "complete", rec.end
    assert rec.end["events"] == 8 and rec.end["bytes"] == len(got)
    assert any("No space left on device" in e for e in rec.end["errors"])
    if tail_size == 5000:
        assert rec.end["tail"] == tail.decode() and "tail_dropped" not in rec.end
    elif tail_size:
        assert rec.end["tail"] is None and rec.end["tail_dropped"] is True and rec.end["tail_size"] == len(tail)
    assert nxt.ending == "complete" and not nxt.end["errors"]
    assert reserve_after == SpaceReserve.SIZE   # taken back by the next stream, once there was room
    assert sorted(find_recordings(small_fs)) == [str(p) for p in mitm.recordings()]   # the reserve is no recording


def test_file_size_limit_mid_stream(certs, tmp_path):
    """RLIMIT_FSIZE: one huge event cannot be written (EFBIG), the smaller lines after it can."""
    limit = 256 * 1024
    small = [f"id: {i}\ndata: {'s' * 900}\n\n".encode() for i in range(150)]   # ~140 KiB of lines
    huge = b"id: huge\ndata: " + b"H" * 200_000 + b"\n\n"
    after = [f"id: {i}\ndata: after {i}\n\n".encode() for i in range(3)]
    body = small + [huge] + after
    # pauses so that the huge event and the ones after it arrive in different chunks (= different writes)
    server = RawServer(lambda req: [sse_response_head(), *small, 0.1, huge, 0.1,
                                    *[x for a in after for x in (a, 0.05)], "close"])

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    try:
        with Mitmdump(certs, tmp_path, preexec_fn=limit_file_size,
                      args=["--set", "sse_capture_raw_chunks=off"]) as mitm:
            with httpx.Client(proxy=mitm.url, timeout=20) as client:
                assert client.get(f"{server.base}/sse/fsize").content == b"".join(body)
                path = recording_for(mitm, "/sse/fsize")
                assert client.get(f"{server.base}/sse/fsize-next").content == b"".join(body)
                path2 = recording_for(mitm, "/sse/fsize-next")
            log = mitm.log()
    finally:
        server.stop()
    for p in (path, path2):
        assert os.path.getsize(p) <= limit
        failures = [row for row in log.splitlines() if f"writing {p} failed" in row]
        assert len(failures) == 1 and "File too large" in failures[0], failures
        whole_lines(p)
        rec = read_recording(p)
        assert rec.ending == "recording_failed" and rec.end["stream_ended"] == "complete"
        assert rec.end["events"] == 154
        ids = [e.get("id") for e in rec.events]
        assert ids == [str(i) for i in range(150)] + ["0", "1", "2"]   # only the huge one is missing
        [lost] = [r for r in rec.records if r["kind"] == "error" and r.get("what") == "write"]
        assert lost["message"].startswith("1 line(s) were lost")


def _stream_passes_unrecorded(mitm, server, name):
    with httpx.Client(proxy=mitm.url, timeout=20) as client:
        assert client.get(f"{server.base}/sse/{name}").content == b"data: x\n\nid: 1\ndata: y\n\n"


def test_directory_made_read_only_then_writable_again(certs, tmp_path):
    server = RawServer(lambda req: [sse_response_head(), b"data: x\n\n", b"id: 1\ndata: y\n\n", "close"])
    record_dir = tmp_path / "rec"
    try:
        with Mitmdump(certs, tmp_path, record_dir=record_dir) as mitm:
            _stream_passes_unrecorded(mitm, server, "before")
            recording_for(mitm, "/sse/before")
            subprocess.run(["mount", "--bind", str(record_dir), str(record_dir)], check=True)
            try:
                subprocess.run(["mount", "-o", "remount,bind,ro", str(record_dir)], check=True)
                _stream_passes_unrecorded(mitm, server, "readonly")   # traffic continues
                errors = log_lines(mitm, "NOT recording .*/sse/readonly")
                assert len(errors) == 1 and "Read-only file system" in errors[0], mitm.log()[-2000:]
                subprocess.run(["mount", "-o", "remount,bind,rw", str(record_dir)], check=True)
                _stream_passes_unrecorded(mitm, server, "after")
                rec = read_recording(recording_for(mitm, "/sse/after"))
            finally:
                umount(record_dir)
    finally:
        server.stop()
    assert rec.ending == "complete" and len(rec.events) == 2
    assert not [p for p in record_dir.rglob("*.jsonl") if "readonly" in p.name]


def test_directory_replaced_by_a_file_then_restored(certs, tmp_path):
    server = RawServer(lambda req: [sse_response_head(), b"data: x\n\n", b"id: 1\ndata: y\n\n", "close"])
    record_dir = tmp_path / "rec"
    try:
        with Mitmdump(certs, tmp_path, record_dir=record_dir) as mitm:
            _stream_passes_unrecorded(mitm, server, "before")
            recording_for(mitm, "/sse/before")
            moved = tmp_path / "rec.moved"
            record_dir.rename(moved)
            record_dir.write_text("not a directory")
            _stream_passes_unrecorded(mitm, server, "replaced")   # traffic continues
            errors = log_lines(mitm, "NOT recording .*/sse/replaced")
            assert len(errors) == 1, mitm.log()[-2000:]
            record_dir.unlink()
            moved.rename(record_dir)
            _stream_passes_unrecorded(mitm, server, "restored")
            rec = read_recording(recording_for(mitm, "/sse/restored"))
    finally:
        server.stop()
    assert rec.ending == "complete" and len(rec.events) == 2
    assert len(list(record_dir.rglob("*.jsonl"))) == 2
    shutil.rmtree(record_dir)


def test_a_day_folder_planted_as_a_symlink_is_refused_but_the_directory_may_be_one(certs, tmp_path):
    """Anyone who can write the recordings directory could plant the next day's folder as a symlink to a place of
    theirs; the recordings directory itself may be a symlink (-d ~/recs pointing to another disk)."""
    server = RawServer(lambda req: [sse_response_head(), b"data: x\n\n", b"id: 1\ndata: y\n\n", "close"])
    disk, elsewhere, record_dir = tmp_path / "other-disk", tmp_path / "elsewhere", tmp_path / "rec"
    disk.mkdir()
    elsewhere.mkdir()
    record_dir.symlink_to(disk)
    planted = [disk / time.strftime("%Y-%m-%d", time.gmtime(time.time() + d)) for d in (0, 86400)]  # today, tomorrow
    try:
        with Mitmdump(certs, tmp_path, record_dir=record_dir) as mitm:
            for day in planted:
                day.symlink_to(elsewhere)
            _stream_passes_unrecorded(mitm, server, "planted")   # traffic continues
            wait_until(lambda: log_lines(mitm, "NOT recording .*/sse/planted"), what="the error")
            errors = log_lines(mitm, "NOT recording .*/sse/planted")
            assert len(errors) == 1 and "is a symbolic link" in errors[0], mitm.log()[-2000:]
            for day in planted:
                day.unlink()
            _stream_passes_unrecorded(mitm, server, "after")
            rec = read_recording(recording_for(mitm, "/sse/after"))
    finally:
        server.stop()
    assert list(elsewhere.iterdir()) == []
    assert rec.ending == "complete" and len(rec.events) == 2
    [path] = disk.rglob("*.jsonl")
    assert path.parent.parent == disk and not path.parent.is_symlink()


# --- the end line on a full disk, StreamRecorder and SpaceReserve without a proxy ----------------------------

def _recorder(directory, name, reserve, file_class=RecordingFile, header_extra=None, **kwargs):
    header = {"kind": "header", "format": FORMAT, "version": FORMAT_VERSION, "stream_id": name,
              "started": "2026-01-01T00:00:00.000000Z",
              "request": {"method": "GET", "url": f"http://127.0.0.1/sse/{name}", "headers": []},
              "response": {"status": 200, "headers": []}, **(header_extra or {})}
    return StreamRecorder(file_class(str(directory), f"day/{name}.jsonl"), header, max_event_size=1 << 20,
                          reserve=reserve, **kwargs)


def _reserve_size(directory):
    return (directory / SpaceReserve.NAME).stat().st_size


@pytest.mark.parametrize("tail_size", [0, 5000, 100_000], ids=["no-tail", "tail-kept", "tail-dropped"])
def test_recorder_end_line_on_a_full_disk(small_fs, tail_size):
    reserve = SpaceReserve(str(small_fs))
    assert reserve.ensure() and _reserve_size(small_fs) == SpaceReserve.SIZE
    rec = _recorder(small_fs, "full", reserve)
    rec.feed(b"".join(_small(i) for i in range(3)))
    filler = fill_fs(small_fs)
    try:
        for i in range(3, 6):
            rec.feed(_big(i))   # a chunk line and an event line each, lost
        tail = _tail(tail_size)
        rec.feed(tail)          # a chunk line, lost
        end = rec.finish("complete")
        left = _reserve_size(small_fs)
    finally:
        filler.unlink()
    whole_lines(rec.file.path)
    r = read_recording(rec.file.path)
    assert r.end == end
    assert r.ending == "recording_failed" and r.end["stream_ended"] == "complete" and r.end["events"] == 6
    assert [e.get("id") for e in r.events] == ["0", "1", "2"]
    [lost] = [x for x in r.records if x["kind"] == "error"]
    assert lost["what"] == "write" and lost["message"].startswith(f"{6 + bool(tail)} line(s) were lost")
    if tail_size == 5000:   # more than a page: only the reserve made room for it
        assert r.end["tail"] == tail.decode() and left < SpaceReserve.SIZE
    elif tail_size:         # more than a quarter of the reserve: the end line goes without the tail text
        assert r.end["tail"] is None and r.end["tail_dropped"] is True and r.end["tail_size"] == len(tail)
        assert SpaceReserve.SIZE - left <= 3 * 4096   # a small slice for a small end line
    assert find_recordings(small_fs) == [rec.file.path]


def test_the_inspect_commands_see_no_stall_where_the_full_disk_lost_lines(small_fs):
    """An event every 0.1 s, of which those from 1.0 s to 2.9 s could not be written: the file goes from 0.9 s to
    3.0 s without an event, and stats, lint and timeline must not call that a stall of the stream."""
    now = [0.0]
    rec = _recorder(small_fs, "gap", SpaceReserve(str(small_fs)), clock=lambda: now[0])
    for i in range(40):
        now[0] = round(i / 10, 1)
        if i == 10:
            filler = fill_fs(small_fs)
        elif i == 30:
            filler.unlink()
        rec.feed(_big(i) if 10 <= i < 30 else _small(i))  # (a small one could fit in the file's last page)
    now[0] = 4.0
    rec.finish("complete")
    path = rec.file.path
    assert [int(e["id"]) for e in read_recording(path).events] == [*range(10), *range(30, 40)]
    recorded = 20

    stats = json.loads(run("stats", "--json", path).out)["recordings"][0]
    assert stats["longest_stall"]["seconds"] == pytest.approx(0.1)
    assert stats["gap_max"] == pytest.approx(0.1)
    assert (stats["events"], stats["events_passed"], stats["events_per_second"]) == (recorded, 40, 10)
    assert "of 40 that passed through the proxy (lines were not written)" in run("stats", path).out
    findings = json.loads(run("lint", "--json", "--max-stall", "0.5", path).out)
    assert [f["code"] for f in findings["recordings"][0]["findings"]] == ["recording-error"]
    assert read_lane(path, 0.5).stalls == []


def test_one_reserve_serves_several_end_lines_and_comes_back(small_fs):
    reserve = SpaceReserve(str(small_fs))
    assert reserve.ensure()
    recs = [_recorder(small_fs, f"s{i}", reserve) for i in range(4)] + [_recorder(small_fs, "ongoing", reserve)]
    for rec in recs:
        rec.feed(_small(0))
    filler = fill_fs(small_fs)
    try:
        for rec in recs:
            rec.feed(_tail(5000))   # lost: the disk is full
        ends = [rec.finish("client_disconnected") for rec in recs[:4]]
        assert SpaceReserve.SIZE // 4 <= _reserve_size(small_fs) < SpaceReserve.SIZE   # slices, not all of it
        assert not reserve.ensure()   # still no room to take it back
    finally:
        filler.unlink()
    for rec, end in zip(recs, ends):
        r = read_recording(rec.file.path)
        assert r.end == end and r.ending == "recording_failed" and r.end["stream_ended"] == "client_disconnected"
        assert r.end["tail"] == _tail(5000).decode()
    ongoing = recs[4]
    ongoing.feed(b"\n\n")   # writes work again: the reserve is taken back
    assert _reserve_size(small_fs) == SpaceReserve.SIZE and reserve.full
    assert ongoing.finish("complete")["reason"] == "recording_failed"
    assert [decode_data(e["data"]) for e in read_recording(ongoing.file.path).events] == ["small 0", "T" * 5000]


def test_a_header_the_full_disk_refused_goes_first_in_the_next_write_that_succeeds(small_fs):
    """Without its header line a file cannot be read at all (and one such file stops `sse-capture replay DIR`)."""
    reserve = SpaceReserve(str(small_fs))
    assert reserve.ensure()
    filler = fill_fs(small_fs)
    try:
        rec = _recorder(small_fs, "headless", reserve)   # the header line: lost
        assert rec.file.size == 0
        rec.feed(_big(0))                                 # a chunk line and an event line: lost
    finally:
        filler.unlink()
    rec.feed(_small(1))
    rec.finish("complete")
    r = read_recording(rec.file.path)
    assert r.header["stream_id"] == "headless" and r.ending == "recording_failed" and r.end["stream_ended"] == "complete"
    [lost] = [x for x in r.records if x["kind"] == "error"]
    assert lost["message"].startswith("2 line(s) were lost")   # the header is not among them: it was written
    assert [decode_data(e["data"]) for e in r.events] == ["small 1"]


def test_an_end_line_from_the_reserve_brings_the_header_it_still_needs(small_fs):
    reserve = SpaceReserve(str(small_fs))
    assert reserve.ensure()
    filler = fill_fs(small_fs)
    try:
        rec = _recorder(small_fs, "headless", reserve)
        rec.feed(_small(0))
        end = rec.finish("client_disconnected")           # still full: the reserve makes room
    finally:
        filler.unlink()
    r = read_recording(rec.file.path)
    assert r.header["stream_id"] == "headless" and r.end == end and r.end["stream_ended"] == "client_disconnected"


def test_a_header_too_big_for_its_share_of_the_reserve_leaves_the_reserve_to_the_others(small_fs):
    """A header carries the request body (up to sse_capture_max_body): one that the full disk refused may not
    take the space every stream's end line shares."""
    reserve = SpaceReserve(str(small_fs))
    assert reserve.ensure()
    filler = fill_fs(small_fs)
    try:
        big = _recorder(small_fs, "big-header", reserve, header_extra={"padding": "p" * 200_000})
        big.finish("complete")                 # nothing written: the header is more than its share
        small = _recorder(small_fs, "small", reserve)
        small.finish("complete")               # still has room: the header and end line of a small stream
    finally:
        filler.unlink()
    assert not os.path.exists(big.file.path)
    assert read_recording(small.file.path).end["stream_ended"] == "complete"


def test_a_recording_that_never_got_its_header_is_removed(tmp_path):
    class NothingFits(_SizeLimitedFile):
        limit = 0

    errors = []
    header = {"kind": "header", "format": FORMAT, "version": FORMAT_VERSION, "stream_id": "s", "started": "x",
              "request": {}, "response": {}}
    rec = StreamRecorder(NothingFits(str(tmp_path), "day/s.jsonl"), header, max_event_size=1 << 20,
                         on_error=errors.append)
    rec.feed(_small(0))
    assert rec.finish("complete")["reason"] == "recording_failed"
    assert not os.path.exists(rec.file.path) and find_recordings(tmp_path) == []
    assert errors[-1].endswith("nothing could be written, not even the header line; file removed")


class _SizeLimitedFile(RecordingFile):
    """Writes past ``limit`` fail with EFBIG, as under RLIMIT_FSIZE."""

    limit = 1 << 30

    def append(self, data: bytes) -> None:
        if self.size + len(data) > self.limit:
            raise OSError(errno.EFBIG, os.strerror(errno.EFBIG))
        super().append(data)


def test_file_too_large_for_the_end_line_does_not_touch_the_reserve(tmp_path):
    reserve = SpaceReserve(str(tmp_path))
    assert reserve.ensure()
    rec = _recorder(tmp_path, "efbig", reserve, _SizeLimitedFile)
    rec.feed(_small(0))
    rec.file.limit = rec.file.size + 2000   # room for a short end line, not for one with the tail
    tail = _tail(5000)
    rec.feed(tail)
    end = rec.finish("complete")
    r = read_recording(rec.file.path)
    assert r.end == end and r.ending == "recording_failed" and r.end["stream_ended"] == "complete"
    assert r.end["tail"] is None and r.end["tail_dropped"] is True and r.end["tail_size"] == len(tail)
    assert any("File too large" in e for e in r.end["errors"])
    assert _reserve_size(tmp_path) == SpaceReserve.SIZE and reserve.full   # space is not what was missing


def test_finish_never_raises_when_not_even_the_end_line_fits(tmp_path):
    rec = _recorder(tmp_path, "nothing", None, _SizeLimitedFile)
    rec.feed(_small(0))
    rec.file.limit = rec.file.size
    rec.feed(_small(1))
    assert rec.finish("complete")["reason"] == "recording_failed"
    whole_lines(rec.file.path)
    assert read_recording(rec.file.path).ending == "proxy_died"   # the one case left: no room at all


def test_a_deleted_reserve_is_made_again(tmp_path):
    """The README calls the reserve safe to delete; with it (or with the whole recordings directory) gone, the
    next stream a second later makes it again, so later end lines on a full disk still have their room."""
    now = [0.0]
    reserve = SpaceReserve(str(tmp_path), clock=lambda: now[0])
    assert reserve.ensure()
    path = tmp_path / SpaceReserve.NAME
    path.unlink()
    assert reserve.ensure() and not path.exists()   # looked at once a second at most
    now[0] = 1.5
    assert reserve.ensure() and path.stat().st_size == SpaceReserve.SIZE


def test_reserve_costs_no_system_call_while_whole_and_frees_in_slices(tmp_path, monkeypatch):
    reserve = SpaceReserve(str(tmp_path))
    assert reserve.ensure()
    path = tmp_path / SpaceReserve.NAME
    assert path.stat().st_size == SpaceReserve.SIZE and path.stat().st_blocks * 512 >= SpaceReserve.SIZE
    assert oct(path.stat().st_mode & 0o777) == oct(0o600)
    with monkeypatch.context() as m:
        m.setattr(os, "open", lambda *a, **k: pytest.fail("a system call for a whole reserve"))
        assert reserve.ensure()
    assert reserve.release(600) and not reserve.full
    block = path.stat().st_blksize
    assert path.stat().st_size == SpaceReserve.SIZE - 2 * block
    while reserve.release(600):
        pass
    assert path.stat().st_size == 0 and not reserve.release(1)
    assert reserve.ensure() and path.stat().st_size == SpaceReserve.SIZE
    path.unlink()
    path.symlink_to(tmp_path / "elsewhere")
    reserve.full = False
    assert not reserve.ensure() and not reserve.release(1) and not (tmp_path / "elsewhere").exists()


def test_many_streams_ending_on_a_full_disk_all_get_their_end_line(certs, tmp_path, small_fs, servers, upstream_app,
                                                                   scenario_name):
    n = 60
    go = threading.Event()
    for i in range(n):
        upstream_app.add(f"{scenario_name}-{i}", Scenario([f"id: {i}\ndata: {'p' * 100 * i}\n\n".encode(), go,
                                                           f"data: {'q' * 5000}\n\n".encode(), b"data: tail"]))
    got = {}

    def read(i: int) -> None:
        with httpx_client(mitm, certs) as client:
            got[i] = client.get(f"{servers['h1'].base}/sse/{scenario_name}-{i}").content

    with Mitmdump(certs, tmp_path, record_dir=small_fs) as mitm:
        readers = [threading.Thread(target=read, args=(i,)) for i in range(n)]
        for reader in readers:
            reader.start()
        wait_until(lambda: len(mitm.recordings()) == n, timeout=30)
        filler = fill_fs(small_fs)
        go.set()
        for reader in readers:
            reader.join(30)
        paths = mitm.wait_for_recordings(n, timeout=30)
        filler.unlink()
    assert all(got[i].endswith(b"data: tail") for i in range(n))  # traffic unchanged
    endings = [read_recording(path).ending for path in paths]
    # every one has its end line (none reads as "proxy died"); some fit into their file's last page
    assert set(endings) <= {"recording_failed", "complete"} and endings.count("recording_failed") >= n // 2, endings


def test_an_end_line_that_cannot_be_written_is_logged(tmp_path):
    class FullFromNowOn(_SizeLimitedFile):
        limit = 0

    errors = []
    rec = _recorder(tmp_path, "s", None, file_class=_SizeLimitedFile)
    rec.on_error = errors.append
    rec.feed(_small(0))
    rec.file.__class__ = FullFromNowOn  # the disk is full from here on, and there is no reserve
    rec.feed(_small(1))
    rec.finish("complete")
    assert b'"kind":"end"' not in open(rec.file.path, "rb").read()
    assert errors[-1].startswith("the end line could not be written either")


SLOW_DISK_SCRIPT = '''
import os, time
from pathlib import Path
from sse_capture_addon import writer

FLAG = Path(os.environ["SLOW_DISK_FLAG"])  # holds the seconds each write of a recording takes while it exists


class _SlowDisk:
    def __getattr__(self, name):
        return getattr(os, name)

    @staticmethod
    def write(fd, data):
        if FLAG.exists():
            time.sleep(float(FLAG.read_text()))
        return os.write(fd, data)


writer.os = _SlowDisk()
'''


def test_writes_on_a_slow_disk_are_warned_of_once_and_lose_nothing(certs, tmp_path):
    """The proxy forwards a chunk once it is written, so a disk that takes long to write holds up all its traffic:
    the user is told, loudly but not once per write, and the recording is whole."""
    script, flag = tmp_path / "slow_disk.py", tmp_path / "slow"
    script.write_text(SLOW_DISK_SCRIPT)
    events = [f"id: {i}\ndata: {i}\n\n".encode() for i in range(4)]
    server = RawServer(lambda req: [sse_response_head(), *[x for e in events for x in (e, 0.05)], "close"])
    try:
        with Mitmdump(certs, tmp_path, scripts=[ADDON, script], env={"SLOW_DISK_FLAG": str(flag)}) as mitm:
            with httpx.Client(proxy=mitm.url, timeout=20) as client:
                assert client.get(f"{server.base}/sse/quick").content == b"".join(events)
                recording_for(mitm, "/sse/quick")
                flag.write_text("0.15")
                assert client.get(f"{server.base}/sse/slow").content == b"".join(events)  # traffic continues
                path = recording_for(mitm, "/sse/slow")
                flag.unlink()
            warnings = log_lines(mitm, "sse-capture: writing .* took")
    finally:
        server.stop()
    # the header, four chunks and the end line were each slow: one warning
    [warning] = warnings
    assert f"writing {path} took 0.1" in warning and "all the proxy's traffic waited for it" in warning, warning
    assert "put sse_capture_dir on a faster local disk" in warning and "fsync" not in warning
    rec = read_recording(path)
    assert rec.ending == "complete" and [e.get("id") for e in rec.events] == ["0", "1", "2", "3"]
