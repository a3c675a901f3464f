"""Comparisons: two values of two targets judged together (the domain marker comes from the entry)."""

import pytest

from opscheck.core.checking import expect, fmt, holds


@pytest.mark.runbook(
    'Two values that must agree do not (runbook: "Latest indexed block: 12345 / Current chain block: '
    '99999 / Indexer appears stuck"). For an indexer behind the chain head: read its logs for RPC rate '
    "limits (`pnpm logs | grep 'rate limit'`) and errors, and check the RPC provider itself "
    "(`eth_blockNumber`); a lag that grows run after run is a stuck indexer, not a slow one."
)
def test_comparison_holds(comparison, comparisons):
    left, left_shown = comparisons.value(comparison.left)
    right, right_shown = comparisons.value(comparison.right)
    unit = f" {comparison.unit}" if comparison.unit else ""
    if comparison.difference is not None:
        limit = comparison.difference
        expect(
            holds(left - right, limit.op, limit.value),
            f'comparison "{comparison.name}": {left_shown} - {right_shown} = {fmt(left - right)}{unit}; '
            f"expected {limit.op} {fmt(limit.value)}{unit}",
        )
    else:
        expect(
            holds(left, comparison.op, right),
            f'comparison "{comparison.name}": {left_shown}{unit} {comparison.op} {right_shown}{unit} does not hold',
        )
