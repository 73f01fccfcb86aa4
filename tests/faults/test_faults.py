"""The fault scenarios of docs/reliability.md, run as `make faults` runs them: real server
and collector processes, SIGKILL, a disk that fills. Each must end with nothing stored twice
and every acknowledged span stored, or dropped on purpose and counted."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.scenarios import ALL, SPANS_PER_BATCH, run


@pytest.mark.parametrize("name", ALL)
def test_fault(name: str, tmp_path: Path) -> None:
    result = run(name, keep=tmp_path)
    assert not result.problems, result.problems
    assert result.duplicates == 0, result
    assert result.acknowledged > 0 and result.stored > 0, result
    assert result.lost <= result.counted_drops, result
    if name == "spool_disk_full":
        # The disk really filled: some spans were dropped (and counted), not all.
        assert 0 < result.counted_drops < result.acknowledged, result
        assert result.stored + result.counted_drops == result.acknowledged, result
    elif name != "webhooks":
        assert result.lost == 0 and result.stored == result.acknowledged == result.sent, result
        assert result.sent % SPANS_PER_BATCH == 0
