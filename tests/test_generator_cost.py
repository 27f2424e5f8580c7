"""bench/generator_cost.py's table: each load worker against wrk and its own library,
the raw HTTP libraries side by side, from the rounds' medians."""

from __future__ import annotations

from bench.generator_cost import Measured, rows_of


def measured(cpu_us: list[float], rate: list[float]) -> Measured:
    found = Measured()
    for cpu, per_s in zip(cpu_us, rate, strict=True):
        found.add(cpu / 1e6, 1, per_s)  # one message: the CPU is the µs per message
    return found


def test_each_load_worker_is_set_against_wrk_and_its_own_library() -> None:
    found = {
        "wrk": measured([20, 30, 25], [5000, 4000, 4500]),
        "aiohttp": measured([150, 160, 170], [2000, 1900, 1800]),
        "pyreqwest": measured([100, 110, 90], [3000, 3100, 2900]),
        "hopbench/aiohttp": measured([200, 220, 240], [1800, 1700, 1900]),
    }
    rows, side = rows_of("http", found)
    assert rows == [
        "| http | hopbench/aiohttp | wrk | 25 | 220 | **8.80** (aim <= 2) | 4,500 | 1,800 "
        "| **0.40** |",
        "| http | hopbench/aiohttp | aiohttp | 160 | 220 | **1.38** | 1,900 | 1,800 | **0.95** |",
    ]
    assert side[0] == "| wrk | 25 | **1.00** | 4,500 |"
    assert "| pyreqwest | 100 | **4.00** | 3,000 |" in side


def test_a_publishing_mode_has_its_library_and_no_side_table() -> None:
    found = {
        "aiokafka": measured([300], [1000]),
        "hopbench/aiokafka": measured([330], [990]),
    }
    rows, side = rows_of("kafka", found)
    assert rows == [
        "| kafka | hopbench/aiokafka | aiokafka | 300 | 330 | **1.10** | 1,000 | 990 | **0.99** |"
    ]
    assert side == []
