"""pytest-benchmark: ours / peer per module at 1 and 2 threads (peers.py, pairing.py).

    pytest tests/benchmarks --benchmark-only -k peer --benchmark-columns=median,iqr,rounds

Each benchmark round is one alternating pair: a training step of ours and one of the
peer formulation, on the same module and input, the order swapped every round. The
timed figure is the pair; the ratio ours / peer of every pair goes into extra_info
(`ratio_median`, `ratio_min`, `ratio_max`, wall and process-CPU clocks), and a line per
module is printed at the end of the session (run with -s to see it during the run).
ATTNBENCH_PEER_PAIRS sets the rounds (default 15). Timing is never asserted; the
outputs of both sides are checked to agree before timing.
"""

from __future__ import annotations

import os
import statistics

import pytest
import torch
from pairing import SHAPE, Pairs, build, max_difference, time_pair
from peers import PEERS

PAIRS = int(os.environ.get("ATTNBENCH_PEER_PAIRS", "15"))
RESULTS: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    print("\nours / peer, median [min, max] over alternating pairs (wall clock):")
    print("\n".join(RESULTS))


@pytest.fixture
def threads(request):
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


@pytest.mark.parametrize("threads", [1, 2], indirect=True, ids=lambda t: f"{t}thr")
@pytest.mark.parametrize("name", list(PEERS))
def test_ours_over_peer(benchmark, name: str, threads: int) -> None:
    setup = build(name, SHAPE)
    diff = max_difference(setup)
    assert diff < 1e-3, f"{name}: ours and the peer disagree by {diff}"
    pairs = Pairs([], [], [], [])
    rounds = iter(range(10**9))

    def one_pair() -> None:
        time_pair((setup.ours, setup.peer), next(rounds), pairs)

    benchmark.group = f"ours+peer pair {tuple(SHAPE)} {threads} thread(s)"
    benchmark.pedantic(one_pair, rounds=PAIRS, iterations=1, warmup_rounds=2)
    # Warm-up rounds are recorded by one_pair too; drop them.
    for series in (pairs.ours_wall, pairs.peer_wall, pairs.ours_cpu, pairs.peer_cpu):
        del series[: len(series) - PAIRS]
    wall, cpu = pairs.summary("wall"), pairs.summary("cpu")
    benchmark.extra_info.update(
        module=name,
        threads=threads,
        shape=list(SHAPE),
        dtype="float32",
        device="cpu",
        torch=torch.__version__,
        pairs=PAIRS,
        ratio_median=wall[0],
        ratio_min=wall[1],
        ratio_max=wall[2],
        cpu_ratio_median=cpu[0],
        cpu_ratio_min=cpu[1],
        cpu_ratio_max=cpu[2],
        ours_ms=1e3 * statistics.median(pairs.ours_wall),
        peer_ms=1e3 * statistics.median(pairs.peer_wall),
        max_abs_diff=diff,
    )
    RESULTS.append(
        f"{name:9s} {threads} thr: {wall[0]:.3f} [{wall[1]:.2f}, {wall[2]:.2f}]"
        f"  (cpu {cpu[0]:.3f} [{cpu[1]:.2f}, {cpu[2]:.2f}])"
    )
