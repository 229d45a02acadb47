"""The default config's topic tree stays byte for byte the same unless a change means it to."""

from __future__ import annotations

import json

from tests.golden.tree import GOLDEN, tree


def test_default_tree_is_unchanged():
    golden = json.loads(GOLDEN.read_text())
    messages, _ = tree(golden["moments"])
    assert set(messages) == set(golden["messages"]), "topics added or removed"
    changed = {t: (golden["messages"][t], messages[t]) for t in messages if messages[t] != golden["messages"][t]}
    assert not changed, f"{len(changed)} payloads changed, e.g. {next(iter(changed.items()))}"
