"""Event-indexed faults, on plans."""

import json

import pytest
from replay_helpers import chat_recording, chunk, ev, parse_events, write_recording

from sse_capture_addon.recording import read_recording
from sse_capture_addon.replay.faults import FaultError, Faults, parse_swap
from sse_capture_addon.replay.schedule import COMPLETE, HOLD, RESET, RECHUNK_GAP, Timing, build_plan
from sse_capture_addon.sse import SSEParser


@pytest.fixture
def chat(tmp_path):
    """5 delta events (ids 1..5) at 0.05 s intervals, then done."""
    return read_recording(chat_recording(tmp_path / "chat.jsonl", n=5, gap=0.05))


def sent(plan) -> bytes:
    return b"".join(w.data for w in plan.writes)


def deltas(plan) -> list[str]:
    return [data for _, data, _ in parse_events(sent(plan))]


def test_cut_after_resets_right_after_that_event(chat):
    plan = build_plan(chat, faults=Faults(cut_after=2))
    assert len(deltas(plan)) == 2
    assert (plan.ending, plan.end_at) == (RESET, 0.1)


def test_cut_after_zero_resets_right_after_the_head(chat):
    plan = build_plan(chat, faults=Faults(cut_after=0))
    assert plan.writes == [] and (plan.ending, plan.end_at) == (RESET, 0.0)


def test_stall_after_keeps_the_stream_open_with_nothing_more(chat):
    plan = build_plan(chat, faults=Faults(stall_after=3))
    assert len(deltas(plan)) == 3 and plan.ending == HOLD


def test_drop_leaves_out_events_of_a_type_and_keeps_later_ids(chat):
    plan = build_plan(chat, faults=Faults(drop_types={"delta"}))
    assert parse_events(sent(plan)) == [("done", "[DONE]", "5")]
    assert plan.ending == COMPLETE


def test_drop_by_number_leaves_out_that_event_as_show_numbers_it(tmp_path, chat):
    """An OpenAI stream's final data: [DONE] is an unnamed event like every chunk before it: dropping it by type
    would drop them all. "#N" drops the event show lists as #N (numbered before any fault, so after a swap too)."""
    rec = read_recording(write_recording(tmp_path / "openai.jsonl", [ev(0.1, '{"a":1}'), ev(0.2, '{"a":2}'),
                                                                      ev(0.3, "[DONE]")]))
    plan = build_plan(rec, faults=Faults(drop_types={"#3"}))
    assert [data for _, data, _ in parse_events(sent(plan))] == ['{"a":1}', '{"a":2}'] and plan.ending == COMPLETE
    plan = build_plan(rec, faults=Faults(drop_types={"#1", "#3"}, swap=(1, 2)))
    assert [data for _, data, _ in parse_events(sent(plan))] == ['{"a":2}']
    plan = build_plan(chat, faults=Faults(drop_types={"#2", "done"}))  # by number and by type at once
    assert [json.loads(data)["i"] for _, data, _ in parse_events(sent(plan))] == [0, 2, 3, 4]
    warnings = build_plan(rec, faults=Faults(drop_types={"#9"})).warnings
    assert warnings == ["drop #9 not applied: the recording has 3 events"]
    for bad in ("#0", "#x", "#", "#-1", "#01"):
        with pytest.raises(FaultError, match="drop takes an event type, or # and an event number >= 1") as e:
            Faults(drop_types={bad})
        assert e.value.field == "drop"


def test_drop_still_sends_the_retry_a_dropped_event_carried(tmp_path):
    """A retry sets how long the client waits before it reconnects, for the rest of the stream: dropping the
    event that carried it must not change that (a browser would fall back to its default, ~3 s)."""
    rec = read_recording(write_recording(tmp_path / "r.jsonl", [
        ev(0.1, "hi", "hello", id="1", retry=200), ev(0.2, "next", id="2"), ev(0.3, "bye", "hello", id="3")]))
    plan = build_plan(rec, faults=Faults(drop_types={"hello"}))
    parser = SSEParser()
    items = parser.feed(sent(plan))
    assert parser.close() is None
    assert [(type(i).__name__, getattr(i, "data", None)) for i in items] == [("NoDispatch", None), ("Event", "next")]
    assert parser.reconnection_time == 200
    assert parse_events(sent(plan)) == [("message", "next", "2")]
    assert [w.events for w in plan.writes] == [0, 1]  # the retry alone is no event
    assert plan.events == 1


def test_stop_mid_event_sends_half_an_event_then_ends_the_body(chat):
    plan = build_plan(chat, faults=Faults(stop_mid_event=3))
    assert len(deltas(plan)) == 2
    parser = SSEParser()
    parser.feed(sent(plan))
    half = parser.close()
    assert half and 'id: 3\ndata: {"i":2,"text":"tok2"}\n\n'.startswith(half.removeprefix("event: delta\n"))
    assert (plan.ending, plan.end_at) == (COMPLETE, 0.15)


def test_swap_exchanges_two_events_and_keeps_the_time_slots(chat):
    plan = build_plan(chat, faults=Faults(swap=(2, 4)))
    order = [json.loads(data)["i"] for data in deltas(plan)[:5]]
    assert order == [0, 3, 2, 1, 4]
    assert [w.at for w in plan.writes] == [0.05, 0.1, 0.15, 0.2, 0.25, 0.3]


@pytest.mark.parametrize("faults, order, ending", [
    (Faults(swap=(2, 4), cut_after=4), [0, 3, 2, 1], RESET),          # the first 4 events the client gets
    (Faults(swap=(2, 4), cut_after=2), [0, 3], RESET),
    (Faults(swap=(2, 4), stall_after=3), [0, 3, 2], HOLD),
    (Faults(swap=(2, 4), stop_mid_event=2), [0], COMPLETE),           # and half of the second: event 4
])
def test_with_a_swap_an_ending_fault_counts_the_events_as_they_are_sent(chat, faults, order, ending):
    plan = build_plan(chat, faults=faults)
    assert [json.loads(data)["i"] for data in deltas(plan)] == order and plan.ending == ending
    if faults.stop_mid_event:
        parser = SSEParser()
        parser.feed(sent(plan))
        assert parser.close().startswith("event: delta\nid: 4\n")  # event 4, in the second place


@pytest.mark.parametrize("size", [1, 7])
def test_rechunk_splits_every_write_into_small_spaced_chunks(chat, size):
    whole = build_plan(chat, timing=Timing(speed=2))
    plan = build_plan(chat, timing=Timing(speed=2), faults=Faults(rechunk=size))
    assert sent(plan) == sent(whole)
    assert all(len(w.data) <= size for w in plan.writes) and len(plan.writes) > len(whole.writes)
    first = [w for w in plan.writes if w.at < 0.05]
    assert [w.at for w in first[:3]] == pytest.approx([0.025, 0.025 + RECHUNK_GAP, 0.025 + 2 * RECHUNK_GAP])
    assert plan.events == whole.events == 6


def test_rechunked_pieces_stay_apart_when_events_come_faster_than_their_bytes(tmp_path):
    """25-byte events 20 ms apart need 50 ms each at 2 ms a byte: the pieces keep their spacing (the stream
    takes longer) instead of the next event's pieces falling due at once, and the player keeps it too."""
    rec = read_recording(write_recording(tmp_path / "r.jsonl", [ev(0.02 * (i + 1), "x" * 17) for i in range(10)]))
    whole = build_plan(rec)
    plan = build_plan(rec, faults=Faults(rechunk=1))
    assert sent(plan) == sent(whole) and len(plan.writes) == len(sent(whole))
    times = [w.at for w in plan.writes]
    assert times[0] == 0.02
    assert min(b - a for a, b in zip(times, times[1:])) == pytest.approx(RECHUNK_GAP)
    assert plan.spacing == RECHUNK_GAP and whole.spacing == 0
    assert plan.end_at >= times[-1] and plan.events == 10


def test_faults_beyond_the_recording_do_nothing_but_warn(chat):
    plan = build_plan(chat, faults=Faults(cut_after=99, swap=(1, 50)))
    assert plan.ending == COMPLETE and len(deltas(plan)) == 6
    assert plan.warnings == ["swap 1,50 not applied: the recording has 6 events",
                             "cut_after=99 not applied: the recording has 6 events"]


def test_byte_exact_takes_only_rechunking(tmp_path):
    rec = read_recording(write_recording(tmp_path / "r.jsonl", [chunk(0.1, 1, b"data: a\n\n"), ev(0.1, "a")],
                                         raw_chunks=True))
    assert [w.data for w in build_plan(rec, faults=Faults(rechunk=4), byte_exact=True).writes] == \
        [b"data", b": a\n", b"\n"]
    with pytest.raises(ValueError, match="only re-chunking applies"):
        build_plan(rec, faults=Faults(drop_types={"done"}), byte_exact=True)


@pytest.mark.parametrize("kwargs, message", [
    ({"cut_after": -1}, "cut_after must be an event number >= 0"),
    ({"stop_mid_event": 0}, "stop_mid_event must be an event number >= 1"),
    ({"rechunk": 0}, "rechunk must be a chunk size >= 1 byte"),
    ({"swap": (2, 2)}, "swap needs two different event numbers"),
    ({"cut_after": 1, "stall_after": 2}, "cut_after and stall_after each end the stream; choose one"),
])
def test_bad_faults_are_refused(kwargs, message):
    with pytest.raises(FaultError, match=message) as e:
        Faults(**kwargs)
    assert e.value.field == next(iter(kwargs))  # for the option's name in the message


def test_parse_swap():
    assert parse_swap(" 3, 5") == (3, 5)
    with pytest.raises(ValueError, match="two event numbers like 3,5"):
        parse_swap("3")
