"""Retry delays stay within their bounds for any policy and attempt number, and follow
their strategy."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from weir_proto.spec import Backoff
from weir_scheduler.backoff import retry_delay

policies = st.builds(
    Backoff,
    strategy=st.sampled_from(["constant", "linear", "polynomial", "exponential"]),
    base=st.floats(0, 1e6),
    factor=st.none() | st.floats(0.001, 1e3),
    power=st.none() | st.floats(0.001, 10),
    min=st.floats(0, 100),
    max=st.floats(100, 1e7),
    jitter=st.sampled_from([None, "relative", "absolute"]),
)


@given(policies, st.integers(1, 10_000), st.text(max_size=20))
def test_delay_is_always_within_min_and_max(policy: Backoff, failures: int, seed: str) -> None:
    delay = retry_delay(policy, failures, seed)
    assert policy.min <= delay <= policy.max


@given(policies, st.integers(1, 100))
def test_same_seed_same_delay(policy: Backoff, failures: int) -> None:
    assert retry_delay(policy, failures, "f/t/1") == retry_delay(policy, failures, "f/t/1")


def test_strategies_without_jitter() -> None:
    def delays(**kwargs: object) -> list[float]:
        policy = Backoff(jitter=None, max=1e9, **kwargs)  # type: ignore[arg-type]
        return [retry_delay(policy, n, "s") for n in (1, 2, 3, 4)]

    assert delays(strategy="constant", base=2) == [2, 2, 2, 2]
    assert delays(strategy="linear", base=2, factor=3) == [2, 5, 8, 11]
    assert delays(strategy="polynomial", base=1, power=2) == [1, 4, 9, 16]
    assert delays(strategy="exponential", base=1, factor=3) == [1, 3, 9, 27]


def test_relative_jitter_moves_at_most_a_quarter() -> None:
    policy = Backoff(strategy="constant", base=100, jitter="relative", max=1000)
    values = {retry_delay(policy, 1, f"seed-{i}") for i in range(200)}
    assert min(values) >= 75 and max(values) <= 125 and len(values) > 100
