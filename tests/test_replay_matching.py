"""Which recording answers which request."""

import fcntl
import json
import re

import pytest
from replay_helpers import ev, write_recording

from sse_capture_addon.recording import RecordingError, read_recording
from sse_capture_addon.replay.matching import Mapping, Matcher, MatchOptions, RequestInfo, parse_mapping
from sse_capture_addon.replay.settings import load_recordings


def rec(tmp_path, name, url="https://api.test/v1/chat?model=a&stream=1", method="POST", **kwargs):
    return read_recording(write_recording(tmp_path / f"{name}.jsonl", [ev(0.1, name)], url=url, method=method,
                                          **kwargs))


def served(matcher, url="https://api.test/v1/chat?model=a&stream=1", method="POST", body=None):
    found = matcher.match(RequestInfo(method, url, body))
    return found and found.header["stream_id"]


def test_the_default_key_is_method_scheme_host_port_path_and_query(tmp_path):
    recordings = [rec(tmp_path, "a")]
    for url, method in [("https://api.test/v1/chat?model=a&stream=1", "GET"),
                        ("http://api.test/v1/chat?model=a&stream=1", "POST"),
                        ("https://other.test/v1/chat?model=a&stream=1", "POST"),
                        ("https://api.test:8443/v1/chat?model=a&stream=1", "POST"),
                        ("https://api.test/v2/chat?model=a&stream=1", "POST"),
                        ("https://api.test/v1/chat?model=b&stream=1", "POST")]:
        assert served(Matcher(recordings), url, method) is None, (method, url)
    # the default port and the order of query parameters do not matter
    assert served(Matcher(recordings), "https://API.test:443/v1/chat?stream=1&model=a") == "a"


def test_host_port_and_query_parameters_can_be_ignored(tmp_path):
    recordings = [rec(tmp_path, "a")]
    url = "https://localhost:3000/v1/chat?model=a&stream=1"
    assert served(Matcher(recordings, MatchOptions(ignore_host=True, ignore_port=True)), url) == "a"
    # recorded on an HTTPS server, replayed to a dev server over HTTP: another host is another scheme too
    url = "http://localhost:5173/v1/chat?model=a&stream=1"
    assert served(Matcher(recordings, MatchOptions(ignore_host=True, ignore_port=True)), url) == "a"
    assert served(Matcher(recordings, MatchOptions(ignore_port=True)), url) is None
    assert served(Matcher(recordings, MatchOptions(ignore_port=True)), "http://api.test/v1/chat?model=a&stream=1") \
        is None
    url = "https://api.test/v1/chat?model=a&stream=1&cachebust=123"
    assert served(Matcher(recordings, MatchOptions(ignore_params=("cachebust",))), url) == "a"
    assert served(Matcher(recordings, MatchOptions(ignore_params=("*",))), "https://api.test/v1/chat") == "a"


def test_a_query_parameter_the_recording_redacted_matches_any_value(tmp_path):
    path = write_recording(tmp_path / "t.jsonl", [ev(0.1, "t")], url="https://api.test/sse?token=[REDACTED]&room=7")
    path.write_bytes(path.read_bytes().replace(b'"raw_chunks"', b'"redacted_params":["token"],"raw_chunks"', 1))
    matcher = Matcher([read_recording(path)], MatchOptions(reuse=True))
    assert served(matcher, "https://api.test/sse?room=7&token=live-1", "GET") == "t"
    assert served(matcher, "https://api.test/sse?Token=live-2&room=7", "GET") == "t"
    assert served(matcher, "https://api.test/sse?room=7", "GET") == "t"
    assert served(matcher, "https://api.test/sse?room=8&token=live-1", "GET") is None


def test_a_redacted_parameter_after_a_semicolon_matches_any_value(tmp_path):
    path = write_recording(tmp_path / "t.jsonl", [ev(0.1, "t")], url="https://api.test/sse?room=7;token=[REDACTED]")
    path.write_bytes(path.read_bytes().replace(b'"raw_chunks"', b'"redacted_params":["token"],"raw_chunks"', 1))
    matcher = Matcher([read_recording(path)], MatchOptions(reuse=True))
    assert served(matcher, "https://api.test/sse?room=7;token=live-1", "GET") == "t"
    assert served(matcher, "https://api.test/sse?room=8;token=live-1", "GET") is None


def test_a_redacted_parameter_inside_another_ones_url_value_matches_any_value(tmp_path):
    url = "https://api.test/sse?next=https://app.test/cb?access_token=[REDACTED]&x=1"
    path = write_recording(tmp_path / "t.jsonl", [ev(0.1, "t")], url=url)
    path.write_bytes(path.read_bytes().replace(b'"raw_chunks"', b'"redacted_params":["access_token"],"raw_chunks"', 1))
    matcher = Matcher([read_recording(path)], MatchOptions(reuse=True))
    assert served(matcher, url.replace("[REDACTED]", "s3cret"), "GET") == "t"
    assert served(matcher, url.replace("app.test", "evil.test"), "GET") is None


def test_an_ipv6_upstream_as_mitmproxy_writes_its_url_matches(tmp_path):
    # mitmproxy's URL for an IPv6 host has no brackets; it used to stop the matcher being built at all
    url = "http://::1:8080/sse?x=1"
    recordings = [rec(tmp_path, "v6", url=url, method="GET"), rec(tmp_path, "v4", method="GET")]
    assert served(Matcher(recordings), url, "GET") == "v6"
    assert served(Matcher(recordings), "http://::1:8081/sse?x=1", "GET") is None


def test_recordings_of_one_endpoint_are_served_once_each_in_recorded_order(tmp_path):
    # file names sort the other way round: the header's start time decides
    recordings = [rec(tmp_path, "b", started="2026-01-01T00:00:02.000000Z"),
                  rec(tmp_path, "a", started="2026-01-01T00:00:01.000000Z")]
    matcher = Matcher(recordings)
    assert [served(matcher) for _ in range(3)] == ["a", "b", None]


def test_reuse_starts_over_when_all_were_served(tmp_path):
    recordings = [rec(tmp_path, "a", started="2026-01-01T00:00:01.000000Z"),
                  rec(tmp_path, "b", started="2026-01-01T00:00:02.000000Z")]
    matcher = Matcher(recordings, MatchOptions(reuse=True))
    assert [served(matcher) for _ in range(5)] == ["a", "b", "a", "b", "a"]


def test_matching_on_the_body(tmp_path):
    recordings = [rec(tmp_path, "hi", body='{"messages":[{"role":"user","content":"hi"}],"model":"a"}',
                      started="2026-01-01T00:00:01.000000Z"),
                  rec(tmp_path, "bye", body='{"messages":[{"role":"user","content":"bye"}]}',
                      started="2026-01-01T00:00:02.000000Z")]
    matcher = Matcher(recordings, MatchOptions(match_body=True))
    assert served(matcher, body=b'{"model": "a", "messages": [{"content": "hi", "role": "user"}]}') == "hi"
    assert served(matcher, body=b'{"messages":[{"role":"user","content":"bye"}]}') == "bye"
    assert served(matcher, body=b'{"messages":[]}') is None
    # without the option, the body does not count
    assert served(Matcher(recordings), body=b"anything") == "hi"


def test_a_truncated_recorded_body_matches_by_prefix(tmp_path):
    recordings = [rec(tmp_path, "long", body="x" * 10)]
    recordings[0].header["request"]["body_truncated"] = True
    matcher = Matcher(recordings, MatchOptions(match_body=True))
    assert served(matcher, body=b"y" * 20) is None
    assert served(matcher, body=b"x" * 20) == "long"


def with_redacted_keys(path, keys):
    path.write_bytes(path.read_bytes().replace(b'"raw_chunks"', b'"redacted_keys":%b,"raw_chunks"'
                                               % json.dumps(keys).encode(), 1))
    return read_recording(path)


def test_a_json_key_the_recording_redacted_matches_any_live_value(tmp_path):
    # recorded with sse_capture_redact_keys=password: the body holds "[REDACTED]", the live request the password
    path = write_recording(tmp_path / "login.jsonl", [ev(0.1, "ok")], url="https://api.test/login", method="POST",
                           body='{"user":"bob","auth":{"Password":"[REDACTED]"},"n":1}')
    matcher = Matcher([with_redacted_keys(path, ["password"])], MatchOptions(match_body=True, reuse=True))
    url = "https://api.test/login"
    assert served(matcher, url, body=b'{"n": 1, "auth": {"Password": "hunter2"}, "user": "bob"}') == "login"
    assert served(matcher, url, body=b'{"n":1,"auth":{"Password":{"any":"value"}},"user":"bob"}') == "login"
    assert served(matcher, url, body=b'{"n":1,"auth":{"Password":"hunter2"},"user":"eve"}') is None
    assert served(matcher, url, body=b'{"n":1,"auth":{},"user":"bob"}') is None
    assert served(matcher, url, body=b"password=hunter2") is None


def test_a_redacted_key_counts_as_redacted_only_when_the_header_lists_it(tmp_path):
    recordings = [rec(tmp_path, "literal", url="https://api.test/login", body='{"password":"[REDACTED]"}')]
    matcher = Matcher(recordings, MatchOptions(match_body=True, reuse=True))
    assert served(matcher, "https://api.test/login", body=b'{"password":"hunter2"}') is None
    assert served(matcher, "https://api.test/login", body=b'{"password":"[REDACTED]"}') == "literal"


def test_a_cut_redacted_body_matches_by_prefix_of_the_redacted_live_body(tmp_path):
    path = write_recording(tmp_path / "long.jsonl", [ev(0.1, "ok")], url="https://api.test/login", method="POST",
                           body='{"password":"[REDACTED]","text":"aaaa')
    recording = with_redacted_keys(path, ["password"])
    recording.header["request"]["body_truncated"] = True
    matcher = Matcher([recording], MatchOptions(match_body=True, reuse=True))
    assert served(matcher, "https://api.test/login", body=b'{"password":"s3cret","text":"aaaaaaaa"}') == "long"
    assert served(matcher, "https://api.test/login", body=b'{"password":"s3cret","text":"bbbbbbbb"}') is None


def test_a_recording_reached_by_several_paths_is_loaded_once(tmp_path):
    directory = tmp_path / "recs"
    for name in ("b", "a"):
        write_recording(directory / f"{name}.jsonl", [ev(0.1, name)])
    (tmp_path / "link").symlink_to(directory)
    loaded = load_recordings([directory / "b.jsonl", directory, f"{directory}/", tmp_path / "link"])
    assert [r.header["stream_id"] for r in loaded] == ["b", "a"]



def test_replay_holds_no_recordings_records_until_it_serves_one(tmp_path):
    """sse-capture serve/replay read every recording of a directory whole at start-up and kept it: 1.7 GB of memory
    (and a minute) before serving a directory of 2,000 recordings (288 MB). They are still checked line by line at
    start-up (a bad line is refused then), and a recording's lines are read again when it is first served."""
    import tracemalloc

    from sse_capture_addon.replay.schedule import build_plan
    from sse_capture_addon.replay.settings import Plans, ReplaySettings

    directory = tmp_path / "recs"

    def peak(n: int) -> int:
        write_recording(directory / f"r{n}.jsonl", [ev(i * 0.01, {"type": "delta", "text": f"tok{i}"}, "delta")
                                                    for i in range(n)], url=f"https://api.test/v1/chat/{n}")
        tracemalloc.start()
        [loaded] = load_recordings([directory])
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top, loaded

    small_peak, _ = peak(1_000)
    (directory / "r1000.jsonl").unlink()
    big_peak, big = peak(40_000)
    assert big_peak < small_peak + 1_000_000, (small_peak, big_peak)
    plan = Plans(ReplaySettings())[big]
    assert plan.events == 40_000 and plan.writes == build_plan(read_recording(big.path)).writes
    (directory / "bad.jsonl").write_bytes(open(big.path, "rb").read().replace(b'"tok39998"', b'"tok'))
    with pytest.raises(RecordingError, match=":40000: invalid JSON"):  # still refused at start-up
        load_recordings([directory])

def test_a_long_recordings_plan_is_built_off_the_event_loop_once(tmp_path, monkeypatch):
    """Building the plan of a recording of hours takes seconds: it is done in a worker thread, once for all the
    requests waiting for it, while the event loop goes on serving the other streams; a request that gives up
    meanwhile gives its booking back."""
    import asyncio
    import threading
    import time

    from sse_capture_addon.replay import settings as replay_settings
    from sse_capture_addon.replay.settings import Plans, ReplaySettings

    rec = read_recording(write_recording(tmp_path / "r.jsonl", [ev(0.1, "a"), ev(0.2, "b")]))
    built_in = []
    real = replay_settings.build_plan

    def slow_build(*args, **kwargs):
        built_in.append(threading.current_thread() is threading.main_thread())
        time.sleep(0.3)
        return real(*args, **kwargs)

    monkeypatch.setattr(replay_settings, "build_plan", slow_build)
    monkeypatch.setattr(Plans, "INLINE_RECORDS", 1)  # (this one has 2 records: "long")

    class Booking:
        recording, given_back = rec, 0

        def give_back(self):
            self.given_back += 1

    async def run():
        loop = asyncio.get_running_loop()
        plans, ticks, t0 = Plans(ReplaySettings()), [], loop.time()

        async def tick():
            while True:
                ticks.append(loop.time())
                await asyncio.sleep(0.01)

        ticker = asyncio.create_task(tick())
        a, b, quitter = Booking(), Booking(), Booking()
        gone = asyncio.create_task(plans.booked(quitter))
        await asyncio.sleep(0.05)
        gone.cancel()
        plan_a, plan_b = await asyncio.gather(plans.booked(a), plans.booked(b))
        ticker.cancel()
        again = await plans.booked(Booking())  # built: no thread, no wait
        return plan_a, plan_b, again, (a, b, quitter), ticks, t0

    plan_a, plan_b, again, (a, b, quitter), ticks, t0 = asyncio.run(run())
    assert plan_a is plan_b is again and plan_a.events == 2
    assert built_in == [False]  # once, in a worker thread
    gaps = [y - x for x, y in zip([t0] + ticks, ticks)]
    assert ticks[-1] - t0 >= 0.25 and max(gaps) < 0.15, gaps  # the event loop was never held for the 0.3 s
    assert (a.given_back, b.given_back, quitter.given_back) == (0, 0, 1)


@pytest.fixture
def proxy_writing(tmp_path):
    """recs/ with a finished recording and two a capture proxy is writing (it holds their locks): one whose
    stream has not ended, one just created, without its header line yet."""
    directory = tmp_path / "recs"
    write_recording(directory / "done.jsonl", [ev(0.1, "done")])
    live = write_recording(directory / "live.jsonl", [ev(0.1, "so far")], end=None)
    new = directory / "new.jsonl"
    new.write_bytes(b'{"kind":"header","format":"sse-capture"')
    held = [open(live, "rb"), open(new, "rb")]
    for f in held:
        fcntl.flock(f, fcntl.LOCK_EX)
    yield directory
    for f in held:
        f.close()


def test_a_directory_being_written_into_is_replayed_without_the_files_in_progress(proxy_writing):
    warnings = []
    loaded = load_recordings([proxy_writing], warn=warnings.append)
    assert [r.header["stream_id"] for r in loaded] == ["done"]
    assert warnings == [f"{proxy_writing}/live.jsonl: still being written by a proxy; left out",
                        f"{proxy_writing}/new.jsonl: still being written by a proxy, no header line yet; left out"]


def test_a_file_in_progress_named_itself_is_replayed_as_far_as_it_goes(proxy_writing):
    warnings = []
    done, live = load_recordings([proxy_writing, proxy_writing / "live.jsonl"], warn=warnings.append)
    assert live.ending == "in_progress" and len(live.events) == 1
    assert warnings == [
        f"{proxy_writing}/live.jsonl: still being written by a proxy; left out",
        f"{proxy_writing}/new.jsonl: still being written by a proxy, no header line yet; left out",
        f"{proxy_writing}/live.jsonl: still being written by a proxy: replayed as far as it goes now, then held open"]
    with pytest.raises(RecordingError) as e:
        load_recordings([proxy_writing / "new.jsonl"])
    assert str(e.value) == f"{proxy_writing}/new.jsonl: still being written by a proxy, no header line yet"


def test_why_a_request_to_a_recorded_endpoint_is_unmatched(tmp_path):
    def why(matcher, url="https://api.test/v1/chat?model=a&stream=1", method="POST", body=None):
        request = RequestInfo(method, url, body)
        assert matcher.match(request) is None
        return matcher.why_unmatched(request)

    path = write_recording(tmp_path / "a.jsonl", [ev(0.1, "a")], url="https://api.test/v1/chat?model=a&_=1&token=[REDACTED]",
                           method="POST")
    path.write_bytes(path.read_bytes().replace(b'"raw_chunks"', b'"redacted_params":["token"],"raw_chunks"', 1))
    matcher = Matcher([read_recording(path)])
    assert why(matcher, "https://api.test/v1/chat?_=2&model=a&token=live") == \
        "recorded with other query parameters (_): try --ignore-param _"  # (token: redacted, matches any value)
    assert why(matcher, "https://api.test/v1/chat?model=b&x=1&_=1") == \
        "recorded with other query parameters (model, x): try --ignore-param model --ignore-param x"
    assert why(matcher, "https://localhost:8443/v1/chat?model=a&_=1") == \
        "recorded for another host (api.test) and for another port (443): try --ignore-host --ignore-port"
    assert why(matcher, "http://api.test/v1/chat?model=a&_=1") == \
        "recorded over https and for another port (443): try --ignore-host --ignore-port"
    assert why(matcher, "http://api.test:443/v1/chat?model=a&_=1") == "recorded over https: try --ignore-host"
    assert why(matcher, "https://api.test/v1/other?model=a&_=1") is None  # another path, another method:
    assert why(matcher, "https://api.test/v1/chat?model=a&_=1", method="GET") is None  # not the recordings' business
    assert served(matcher, "https://api.test/v1/chat?model=a&_=1") == "a"
    assert why(matcher, "https://api.test/v1/chat?model=a&_=1") == \
        "all 1 recording(s) for it were served: try --reuse"

    matcher = Matcher([rec(tmp_path, "b", body='{"q": "hi"}')], MatchOptions(match_body=True))
    assert why(matcher, body=b'{"q": "bye"}') == "recorded with other request bodies (--match-body)"


def test_a_mapping_serves_its_recording_for_every_matching_url(tmp_path):
    mapped = rec(tmp_path, "mapped", url="https://elsewhere.test/x")
    matcher = Matcher([rec(tmp_path, "a")], mappings=[Mapping(re.compile(r"/v1/chat\b"), mapped)])
    assert [served(matcher) for _ in range(3)] == ["mapped"] * 3
    assert served(matcher, "https://api.test/v1/other") is None


def test_parse_mapping():
    assert parse_mapping("|/api/chat|rec.jsonl") == ("/api/chat", "rec.jsonl")
    assert parse_mapping("#a|b#c.jsonl") == ("a|b", "c.jsonl")
    for bad, message in [("|/api/chat|", "must look like"), ("|a|b|c", "must look like"), ("|[|x.jsonl", "invalid regex")]:
        with pytest.raises(ValueError, match=message):
            parse_mapping(bad)


def test_a_booking_holds_its_sequence_until_answered_or_given_back(tmp_path):
    """The abort of a first fetch may reach the proxy after its retry: the retry waits while an earlier booking
    of its sequence is unsettled, and then gets the recording given back, not the next one."""
    turns = [rec(tmp_path, name, started=f"2026-01-01T00:00:0{i}.000000Z") for i, name in enumerate("abc")]
    matcher = Matcher(turns)
    request = RequestInfo("POST", "https://api.test/v1/chat?model=a&stream=1")
    aborted = matcher.book(request)
    settled = []
    aborted.on_settle.append(lambda: settled.append("aborted"))
    assert aborted.recording is turns[0] and matcher.unsettled(request) == [aborted]
    assert matcher.unsettled(RequestInfo("POST", "https://api.test/other")) == []  # another sequence
    assert aborted.give_back() and not aborted.give_back() and settled == ["aborted"]
    assert matcher.unsettled(request) == []
    retry = matcher.book(request)
    assert retry.recording is turns[0]  # given back: served again
    retry.answer()
    assert not retry.give_back() and matcher.unsettled(request) == []  # its response began: served
    assert served(matcher) == "b" and served(matcher) == "c" and served(matcher) is None


def test_only_bookings_of_recordings_a_request_can_match_hold_it(tmp_path):
    turns = [rec(tmp_path, name, body=json.dumps({"q": q}), started=f"2026-01-01T00:00:0{i}.000000Z")
             for i, (name, q) in enumerate([("a", 1), ("b", 2)])]
    matcher = Matcher(turns, MatchOptions(match_body=True))
    url = "https://api.test/v1/chat?model=a&stream=1"
    first = matcher.book(RequestInfo("POST", url, b'{"q":1}'))
    assert matcher.unsettled(RequestInfo("POST", url, b'{"q":2}')) == []
    assert matcher.unsettled(RequestInfo("POST", url, b'{"q":1}')) == [first]
