"""The outbox: latest retained payload per topic, clears kept, epochs mark what went out."""

from __future__ import annotations

from gateway.outbox import Outbox, TopicClass


def test_labels_are_the_metric_label_values():
    # gateway_publishes_total{kind=...} must not change with the rename.
    assert [c.label for c in TopicClass] == ["availability", "info", "discovery", "state", "attributes",
                                            "diagnostic"]


def test_only_the_latest_payload_is_kept_and_due_in_class_order():
    box = Outbox()
    box.keep("s/a", b"1", TopicClass.STATE, 60, 0)
    box.keep("s/a", b"2", TopicClass.STATE, 90, 0)
    box.keep("g/info", b"i", TopicClass.INFO, None, 0)
    clears, due = box.due([TopicClass.STATE, TopicClass.INFO], 1)
    assert clears == []
    assert due == [(TopicClass.INFO, [("g/info", b"i", None)]), (TopicClass.STATE, [("s/a", b"2", 90)])]


def test_a_clear_is_kept_and_due_with_discovery_until_a_payload_replaces_it():
    box = Outbox()
    box.keep("ha/x/config", b"{}", TopicClass.DISCOVERY, None, 0)
    box.keep("ha/x/config", b"", TopicClass.DISCOVERY, None, 0)
    assert box.due([TopicClass.STATE], 1) == ([], [(TopicClass.STATE, [])])
    assert box.due([TopicClass.DISCOVERY], 1) == (["ha/x/config"], [(TopicClass.DISCOVERY, [])])
    assert box.due([TopicClass.DISCOVERY], 2)[0] == ["ha/x/config"]  # re-sent on every connect
    box.keep("ha/x/config", b"{}", TopicClass.DISCOVERY, None, 0)
    assert box.due([TopicClass.DISCOVERY], 3) == ([], [(TopicClass.DISCOVERY, [("ha/x/config", b"{}", None)])])


def test_unsent_only_skips_what_went_out_on_this_connection():
    box = Outbox()
    box.keep_many([("s/a", b"1"), ("s/b", b"2")], TopicClass.STATE, None, 1)
    box.keep("s/c", b"3", TopicClass.STATE, None, 0)  # kept while disconnected
    assert box.due([TopicClass.STATE], 1, unsent_only=True)[1] == [(TopicClass.STATE, [("s/c", b"3", None)])]
    assert box.due([TopicClass.STATE], 1, unsent_only=True)[1] == [(TopicClass.STATE, [])]  # now marked sent
    assert len(box.due([TopicClass.STATE], 2, unsent_only=True)[1][0][1]) == 3  # a new connection


def test_forgotten_topics_are_not_due():
    box = Outbox()
    box.keep_many([("s/a", b"1"), ("s/b", b"2")], TopicClass.STATE, None, 0)
    box.forget(["s/a", "s/unknown"], TopicClass.STATE)
    box.forget(["s/b"], TopicClass.ATTRIBUTES)  # another class: untouched
    assert box.due(list(TopicClass), 1) == ([], [(c, [("s/b", b"2", None)] if c is TopicClass.STATE else [])
                                                 for c in TopicClass])
