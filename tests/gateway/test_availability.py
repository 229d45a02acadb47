"""The guard of our own status topic as pure state: what it answers, and how often (gateway.availability)."""

from __future__ import annotations

from gateway.availability import StatusGuard

STATUS = "soest/gateway/status"


def test_an_offline_on_our_will_topic_is_answered_once():
    guard = StatusGuard(hold=1.0)
    assert not guard.due(0.0)
    guard.heard(STATUS, b"offline", STATUS, STATUS)
    assert guard.due(0.0)
    assert not guard.due(0.1)
    assert guard.answers == 1


def test_other_messages_and_other_topics_are_not_disputes():
    guard = StatusGuard()
    for topic, payload in ((STATUS, b"online"), (STATUS, b""), (STATUS, b"OFFLINE"), ("soest/x/status", b"offline")):
        guard.heard(topic, payload, STATUS, STATUS)
    assert not guard.due(100.0)


def test_without_a_will_or_while_the_will_changes_nothing_is_answered():
    guard = StatusGuard()
    guard.heard(STATUS, b"offline", None, None)  # a standby
    guard.heard(STATUS, b"offline", STATUS, None)  # stepping down: this connection's Will is about to go
    guard.heard(STATUS, b"offline", None, STATUS)  # taking over: the connection with the Will is not made yet
    assert not guard.due(100.0)


def test_a_flood_gets_one_answer_per_hold_and_the_last_one_is_answered_too():
    guard = StatusGuard(hold=1.0)
    answered = []
    for tick in range(40):  # 4 s of offline every 0.1 s, the connection loop asking every 0.1 s
        now = tick / 10
        guard.heard(STATUS, b"offline", STATUS, STATUS)
        if guard.due(now):
            answered.append(now)
    assert answered == [0.0, 1.0, 2.0, 3.0]
    assert guard.due(4.0)  # the offline heard at 3.9 s gets its answer once the hold is over


def test_a_new_connection_forgets_what_the_old_one_heard():
    guard = StatusGuard()
    guard.heard(STATUS, b"offline", STATUS, STATUS)
    guard.reset()  # the new connection says online anyway
    assert not guard.due(100.0)


def test_after_close_nothing_is_sent():
    guard = StatusGuard()
    sent: list[str] = []
    assert guard.send(lambda: sent.append("online"))
    guard.close()  # the link is stopping: its own offline is the last word
    assert not guard.send(lambda: sent.append("online"))
    assert sent == ["online"]
