"""The status page's 24-hour history: downsampling, the day's bound, what is kept, and its memory."""

from __future__ import annotations

import tracemalloc

from gateway.history import DAY, ENTITY_BYTES, FETCH_SLOT, SOURCE_BYTES, VALUE_SLOT, History

T = 1_780_000_000.0 - 1_780_000_000.0 % DAY  # midnight UTC


def test_values_are_downsampled_to_the_last_in_each_slot():
    h = History()
    h.value("soest/brightsky/temperature", b"20.5", T + 10)
    h.value("soest/brightsky/temperature", b"21", T + 600)  # same 15-minute slot: replaces
    h.value("soest/brightsky/temperature", b"22.25", T + VALUE_SLOT + 1)
    assert h.document(T + 2 * VALUE_SLOT)["entities"] == {
        "soest/brightsky/temperature": [[T, 21.0], [T + VALUE_SLOT, 22.25]]}


def test_only_the_last_day_is_kept():
    h = History()
    for k in range(200):  # more than two days of 15-minute values
        h.value("t", str(k).encode(), T + k * VALUE_SLOT)
    now = T + 199 * VALUE_SLOT
    points = h.document(now)["entities"]["t"]
    assert len(points) == DAY // VALUE_SLOT
    assert points[0] == [T + (199 - 95) * VALUE_SLOT, 104.0]
    assert points[-1] == [now, 199.0]
    # A day later, nothing of it is shown any more.
    assert h.document(now + DAY)["entities"]["t"] == []


def test_text_and_binary_states_have_no_history_and_the_entity_count_is_capped():
    h = History(max_entities=2)
    for topic, payload in [("a", b"ON"), ("b", b"2026-06-21T21:53:12+02:00"), ("c", b"rain"), ("d", b"nan"),
                           ("e", b"1"), ("f", b"2"), ("g", b"3")]:
        h.value(topic, payload, T)
    assert set(h.document(T)["entities"]) == {"e", "f"}


def test_fetch_strip_keeps_the_worst_outcome_per_slot_and_the_data_age():
    h = History()
    h.fetch("brightsky", "ok", 120.0, T + 5)
    h.fetch("brightsky", "error", None, T + 60)
    h.fetch("brightsky", "not_modified", 400.0, T + 100)  # still the error's slot: the error stays
    h.fetch("brightsky", "not_modified", 700.0, T + FETCH_SLOT)
    h.fetch("brightsky", "nonsense", 1.0, T + 2 * FETCH_SLOT)
    assert h.document(T + 2 * FETCH_SLOT)["sources"] == {
        "brightsky": [[T, 400.0, "error"], [T + FETCH_SLOT, 700.0, "not_modified"]]}


def test_memory_is_what_the_module_states():
    tracemalloc.start()
    try:
        h = History(max_entities=1000)
        before = tracemalloc.get_traced_memory()[0]
        for i in range(1000):
            topic = f"soest/s/e{i}"
            for k in range(DAY // VALUE_SLOT):
                h.value(topic, b"1.5", T + k * VALUE_SLOT)
        per_entity = (tracemalloc.get_traced_memory()[0] - before) / 1000
        before = tracemalloc.get_traced_memory()[0]
        for i in range(100):
            for k in range(DAY // FETCH_SLOT):
                h.fetch(f"s{i}", "ok", 10.0, T + k * FETCH_SLOT)
        per_source = (tracemalloc.get_traced_memory()[0] - before) / 100
    finally:
        tracemalloc.stop()
    assert per_entity <= ENTITY_BYTES
    assert per_source <= SOURCE_BYTES
    assert per_entity > ENTITY_BYTES / 2  # the stated figure is not a wild overestimate either
