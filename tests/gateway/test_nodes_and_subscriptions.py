"""The pure parts of the broker link: which node and version next, and what a SUBACK meant."""

from __future__ import annotations

import logging

import pytest

from gateway.nodes import MQTT5, MQTT311, Nodes
from gateway.subscriptions import Subscriptions

A, B, C = ("a", 1883), ("b", 1883), ("c", 1884)


def test_nodes_are_tried_in_turn_and_backoff_starts_after_a_whole_round():
    nodes = Nodes([A, B, C], "auto", (1.0, 60.0))
    assert nodes.next() == (A, MQTT5)
    nodes.failed()
    assert nodes.next()[0] == B
    assert nodes.pause() <= 0.2
    nodes.failed()
    assert nodes.next()[0] == C
    assert nodes.pause() <= 0.2
    nodes.failed()
    assert nodes.next()[0] == A
    assert 0.5 <= nodes.pause() <= 2.0
    nodes.connected(A, MQTT5)
    assert nodes.failures == 0


def test_a_node_that_took_3_1_1_is_not_asked_for_5_again_nor_are_its_peers():
    """A cluster node that accepted 3.1.1 speaks it next time too, and so (most likely) does its cluster."""
    nodes = Nodes([A, B, C], "auto", (1.0, 60.0))
    assert nodes.fall_back(A, MQTT5, "refused")
    nodes.connected(A, MQTT311)
    nodes.unanswered(A)  # later, a CONNECT there went unanswered (the node was busy electing a leader)
    assert (nodes.protocol_for(A), nodes.protocol_for(B), nodes.protocol_for(C)) == (MQTT311,) * 3


def test_the_wait_for_a_connack_is_short_on_a_cluster_and_grows_after_two_silent_rounds():
    assert Nodes([A], "auto", (1.0, 60.0)).connack_timeout() == 30.0  # the only broker: wait for it
    nodes = Nodes([A, B, C], "auto", (1.0, 60.0))
    waits = []
    for _ in range(18):
        waits.append(nodes.connack_timeout())
        nodes.failed()
    assert waits == [1.5] * 6 + [3.0] * 3 + [6.0] * 3 + [12.0] * 3 + [24.0] * 3
    assert nodes.connack_timeout() == 30.0
    nodes.connected(B, MQTT5)
    assert nodes.connack_timeout() == 1.5


def test_a_single_node_backs_off_from_the_first_failure():
    nodes = Nodes([A], "5", (1.0, 60.0))
    nodes.failed()
    assert nodes.next() == (A, MQTT5)
    assert 1.0 <= nodes.pause() <= 2.0


def test_auto_falls_back_per_node_and_forgets_when_neither_version_answered(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG, logger="gateway.mqtt")
    nodes = Nodes([A, B], "auto", (1.0, 60.0))
    assert nodes.fall_back(A, MQTT5, "refused")
    assert nodes.protocol_for(A) == MQTT311
    assert nodes.protocol_for(B) == MQTT5
    assert not nodes.fall_back(A, MQTT311, "refused")  # nothing below 3.1.1
    nodes.unanswered(A)
    assert nodes.protocol_for(A) == MQTT5
    assert nodes.fall_back(A, MQTT5, "refused")
    logged = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert logged == [(logging.INFO, "MQTT broker a:1883 refused; trying MQTT 3.1.1"),
                      (logging.DEBUG, "MQTT broker a:1883 refused; trying MQTT 3.1.1")]  # once a node


def test_a_fixed_version_never_falls_back():
    nodes = Nodes([A], "5", (1.0, 60.0))
    assert not nodes.fall_back(A, MQTT5, "refused")
    assert Nodes([A], "3.1.1", (1.0, 60.0)).next() == (A, MQTT311)


class _Client:
    def __init__(self) -> None:
        self.sent: list[tuple[str, int]] = []

    def subscribe(self, topic: str, qos: int) -> tuple[int, int]:
        self.sent.append((topic, qos))
        return 0, len(self.sent)


def test_a_refused_subscription_is_retried_at_qos_0_after_its_backoff():
    subs = Subscriptions()
    client = _Client()
    assert subs.add("t/#")
    assert not subs.add("t/#")
    subs.send(client, "t/#")
    assert subs.states() == {"t/#": "pending"}
    answer = subs.answered(1, granted=False)
    assert answer is not None
    assert (answer.granted, answer.failures) == (False, 1)
    assert subs.failed() == ["t/#"]
    assert subs.due(now=0) == []  # not before its time
    assert subs.due(now=answer.retry_in + 1e9) == ["t/#"]
    subs.send(client, "t/#")
    assert client.sent == [("t/#", 1), ("t/#", 0)]
    granted = subs.answered(2, granted=True)
    assert granted is not None
    assert (granted.qos, granted.failures) == (0, 1)
    assert subs.states() == {"t/#": "granted"}


def test_a_new_session_subscribes_everything_again_at_qos_1():
    subs = Subscriptions()
    client = _Client()
    subs.add("a")
    subs.send(client, "a")
    subs.answered(1, granted=False)
    assert subs.new_session() == ["a"]
    assert subs.states() == {"a": "pending"}
    subs.send(client, "a")
    assert client.sent[-1] == ("a", 1)
    assert subs.answered(1, granted=True) is None  # a SUBACK of the old session means nothing


def test_a_suback_for_a_removed_filter_is_ignored():
    subs = Subscriptions()
    client = _Client()
    subs.add("a")
    subs.send(client, "a")
    subs.remove("a")
    assert subs.answered(1, granted=True) is None
    assert subs.states() == {}


def test_readiness_names_a_refused_subscription():
    from gateway.status import readiness

    status = {"broker": {"connected": True, "failed_subscriptions": ["homeassistant/status"]},
              "sources": {"sun": {"status": "online"}}}
    assert readiness(status) == (False, ["the broker refused the subscription to homeassistant/status; retrying"])
    status["broker"]["failed_subscriptions"] = []
    assert readiness(status) == (True, [])
