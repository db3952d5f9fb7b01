"""The one-agent path in stages (tests/bench/stages.py): the hook notes every stage in a
real gateway and sidecar, and the notes are read into segments round by round."""

from __future__ import annotations

import asyncio

from tests.bench import scale_cases, stages
from tests.bench.gateway import BenchGateway
from tests.bench.registry import Context

STAGE_NAMES = [s[0].rstrip("!") for s in stages.STAGES]


def _round(t0: int, step: int, skip: str = "") -> list[tuple[int, str]]:
    """Notes of one round: each stage ``step`` ns after the one before."""
    return [(t0 + step * (i + 1), name) for i, name in enumerate(STAGE_NAMES) if name != skip]


def test_segments_are_read_round_by_round() -> None:
    rounds = [(1_000_000, 1_000_000 + 100_000), (2_000_000, 2_000_000 + 100_000),
              (3_000_000, 3_000_000 + 100_000)]
    notes = sorted(_round(1_000_000, 1_000) + _round(2_000_000, 3_000)
                   + _round(3_000_000, 1_000, skip="sc_facts")  # left out: not all noted
                   + [(1_500_000, "gw_bytes"),  # a second chunk in the round: not the first
                      (2_000_500, "sc_bytes")])  # read before the publish: not the frame
    figures = stages.segments(rounds, notes)
    assert figures["path_rounds"] == 2
    assert figures["path_aiohttp_p50_us"] == 2.0  # one stage apart: 1 us and 3 us
    assert figures["path_post_to_gateway_p50_us"] == 2.0
    assert figures["path_frame_to_sidecar_p50_us"] == 2.0 * 3  # gw_publish -> sc_bytes: 3 stages
    # the sc_write note is stage 13 of the round: the paste 100 us after the POST
    assert figures["path_pty_to_cli_p50_us"] == (100 - 13 * 1 + 100 - 13 * 3) / 2
    assert "over 2 rounds" in stages.summary(figures)
    assert "aiohttp 2 us" in stages.summary(figures)


def test_no_round_with_every_stage_gives_no_segments() -> None:
    assert stages.segments([(10, 20)], [(15, "gw_bytes")]) == {"path_rounds": 0}


def test_the_staged_pass_notes_every_stage_of_a_real_message() -> None:
    async def run() -> dict[str, float]:
        async with BenchGateway() as gw:
            return await scale_cases._staged(Context(gateway=gw, started=gw.sample()), 3)

    figures = asyncio.run(run())
    assert figures["path_rounds"] == 3
    # one after the other, POST to paste: each segment of csp's path took some time
    for name, *_ in stages.SEGMENTS:
        assert figures[f"path_{name}_p50_us"] > 0, name
