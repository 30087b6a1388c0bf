import base64

import orjson
import pytest

from stream._fetch import UndecodableBatch
from stream.events import (
    MAX_MESSAGE_BYTES,
    MAX_PAYLOAD_CHARS,
    DeadLetter,
    Event,
    FixedRange,
    RecentRange,
    Rejected,
    RejectReason,
    decode_fields,
    decode_message,
    decode_singles,
    encode_events,
)

WINDOW = FixedRange(1_511_539_200, 1_512_316_800)
GOOD = {"user_id": 1, "item_id": 2, "category_id": 3, "behavior": "pv", "ts": 1_511_544_070}


def reasons(results: list[Event | Rejected]) -> list[str]:
    return ["ok" if isinstance(result, Event) else result.reason.value for result in results]


def test_single_and_batched_messages_decode_to_the_same_events() -> None:
    events = [Event.model_validate({**GOOD, "user_id": user}) for user in (1, 2, 3)]
    assert decode_message(encode_events(events[:1]), WINDOW) == events[:1]
    assert decode_message(encode_events(events), WINDOW) == events
    assert encode_events(events[:1]).startswith(b"{")


def test_optional_emitter_fields_are_kept_and_unknown_ones_ignored() -> None:
    payload = orjson.dumps({**GOOD, "channel": "app", "event_id": "e-1", "extra": [1]})
    [event] = decode_message(payload, WINDOW)
    assert isinstance(event, Event)
    assert (event.channel, event.event_id) == ("app", "e-1")


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"garbage", RejectReason.MALFORMED),
        (b'{"user_id": 1', RejectReason.MALFORMED),
        (orjson.dumps({k: v for k, v in GOOD.items() if k != "item_id"}), RejectReason.INVALID),
        (orjson.dumps({**GOOD, "user_id": "1"}), RejectReason.INVALID),
        (orjson.dumps({**GOOD, "user_id": -1}), RejectReason.INVALID),
        (orjson.dumps({**GOOD, "behavior": "like"}), RejectReason.UNKNOWN_BEHAVIOR),
        (orjson.dumps({**GOOD, "ts": 1_505_117_799}), RejectReason.OUT_OF_WINDOW),
        (b"42", RejectReason.INVALID),
    ],
)
def test_bad_input_is_rejected_with_its_reason_and_kept_verbatim(
    payload: bytes, reason: RejectReason
) -> None:
    [result] = decode_message(payload, WINDOW)
    assert isinstance(result, Rejected)
    assert result.reason == reason
    assert result.payload


def test_one_bad_event_in_a_batch_does_not_lose_the_good_ones() -> None:
    batch = orjson.dumps([GOOD, {**GOOD, "behavior": "like"}, {**GOOD, "user_id": 9}])
    assert reasons(decode_message(batch, WINDOW)) == ["ok", "unknown_behavior", "ok"]


def test_the_fast_path_agrees_with_the_model_and_declines_anything_it_cannot_vouch_for() -> None:
    from stream.events import as_event, decode_fields, valid_events

    batch = [{**GOOD, "user_id": user, "channel": "app"} for user in range(3)]
    fields = decode_fields(orjson.dumps(batch), WINDOW)
    assert fields is not None
    assert [as_event(item) for item in fields] == decode_message(orjson.dumps(batch), WINDOW)
    cases = [
        ([*batch, {**GOOD, "behavior": "like"}], 3),
        ([*batch, {**GOOD, "ts": 5}], 3),
        ([{**GOOD, "user_id": "1"}], 0),
    ]
    for bad, valid in cases:
        assert decode_fields(orjson.dumps(bad), WINDOW) is None
        assert len(valid_events(orjson.dumps(bad), WINDOW)) == valid
    single = decode_fields(orjson.dumps(GOOD), WINDOW)  # one event per message takes the fast path too
    assert single is not None and [as_event(item) for item in single] == [Event.model_validate(GOOD)]
    for bad_event in ({**GOOD, "behavior": "like"}, {**GOOD, "ts": 5}, {**GOOD, "user_id": "1"}):
        assert decode_fields(orjson.dumps(bad_event), WINDOW) is None
        assert valid_events(orjson.dumps(bad_event), WINDOW) == []
    assert decode_fields(b" " + orjson.dumps(GOOD), WINDOW) is None  # unusual JSON: the model path decides


@pytest.mark.parametrize(
    "event",
    [
        {**GOOD, "user_id": 2**63 - 1},
        {**GOOD, "user_id": 2**63},
        {**GOOD, "user_id": -1},
        {**GOOD, "user_id": True},
        {**GOOD, "user_id": 1.0},
        {**GOOD, "item_id": None},
        {**GOOD, "channel": 5},
        {**GOOD, "channel": None},
        {**GOOD, "behavior": "PV"},
        {**GOOD, "ts": WINDOW.end},
        {**GOOD, "ts": 2**64 - 1},
        {**GOOD, "nested": {"user_id": "x"}},
        {key: value for key, value in GOOD.items() if key != "category_id"},
    ],
)
def test_the_fast_path_takes_an_event_only_as_the_model_reads_it(event: dict[str, object]) -> None:
    from stream.events import as_event, decode_fields

    for payload in (orjson.dumps(event), orjson.dumps([GOOD, event])):
        fields = decode_fields(payload, WINDOW)
        if fields is not None:
            assert [as_event(item) for item in fields] == decode_message(payload, WINDOW)


def test_the_read_only_view_of_an_event_names_every_field_of_the_model() -> None:
    from stream.events import EventFields

    properties = {name for name, value in vars(EventFields).items() if isinstance(value, property)}
    assert properties == set(Event.model_fields)


def test_a_recent_range_follows_the_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    recent = RecentRange(back=3_600, ahead=300)
    now = 1_900_000_000
    monkeypatch.setattr("time.time", lambda: now)
    at_now = {**GOOD, "ts": now}
    assert decode_message(orjson.dumps(at_now), recent) == [Event.model_validate(at_now)]
    for outside in (now - 3_700, now + 400):
        [result] = decode_message(orjson.dumps({**GOOD, "ts": outside}), recent)
        assert isinstance(result, Rejected) and result.reason is RejectReason.OUT_OF_WINDOW
    assert decode_fields(orjson.dumps({**GOOD, "ts": now + 400}), recent) is None
    now += 3_600  # an hour later, the same range takes that hour's events (on the fast path too)
    assert decode_fields(orjson.dumps({**GOOD, "ts": now + 200}), recent) is not None
    assert decode_fields(orjson.dumps(at_now), recent) is not None
    assert decode_fields(orjson.dumps({**GOOD, "ts": now - 3_700}), recent) is None


def test_a_fixed_range_must_end_after_it_starts() -> None:
    with pytest.raises(ValueError, match="must end after it starts"):
        FixedRange(10, 10)


def test_input_that_is_no_json_text_is_rejected_with_its_own_reason() -> None:
    batch = UndecodableBatch.of(b"\x00\x01raw", 7, 9, "UnsupportedCodecError: Unknown compression codec 0x05")
    oversized = b"[" + b",".join([orjson.dumps(GOOD)] * 20_000) + b"]"
    assert len(oversized) > MAX_MESSAGE_BYTES
    cases = {
        None: RejectReason.NULL_VALUE,
        b'{"user_id": 1, "behavior": "\xff"}': RejectReason.NOT_UTF8,
        oversized: RejectReason.OVERSIZED,
        batch: RejectReason.UNDECODABLE_BATCH,
    }
    for value, reason in cases.items():
        [rejected] = decode_message(value, WINDOW)
        assert isinstance(rejected, Rejected) and rejected.reason == reason, value
        # the fast paths decline them all, without raising
        assert decode_fields(value, WINDOW) is None
        assert decode_singles([orjson.dumps(GOOD), value], WINDOW) is None
    [letter] = decode_message(batch, WINDOW)
    assert isinstance(letter, Rejected)
    assert "offsets 7-9" in letter.detail and "0x05" in letter.detail
    assert base64.b64decode(letter.payload.removeprefix("base64:")) == b"\x00\x01raw"


def test_a_dead_letter_keeps_the_head_of_a_huge_input_and_says_so() -> None:
    huge = Rejected(RejectReason.MALFORMED, "not JSON", "x" * (MAX_PAYLOAD_CHARS + 5))
    letter = DeadLetter.of(huge, "stream", "events/0/1/0")
    assert letter.payload == "x" * MAX_PAYLOAD_CHARS
    assert f"the first {MAX_PAYLOAD_CHARS} of {MAX_PAYLOAD_CHARS + 5} characters" in letter.detail


def test_a_dead_letter_topic_record_without_a_value_is_kept_as_a_letter() -> None:
    letter = DeadLetter.decode(None, "events.dlq/0/3")
    assert (letter.origin, letter.reason) == ("events.dlq/0/3", "null_value")


def test_a_timestamp_in_milliseconds_is_out_of_window_with_a_hint() -> None:
    [rejected] = decode_message(orjson.dumps({**GOOD, "ts": 1_511_544_070_863}), WINDOW)
    assert isinstance(rejected, Rejected) and rejected.reason == RejectReason.OUT_OF_WINDOW
    assert "looks like milliseconds" in rejected.detail
    [far] = decode_message(orjson.dumps({**GOOD, "ts": 1_000}), WINDOW)
    assert isinstance(far, Rejected) and "milliseconds" not in far.detail
