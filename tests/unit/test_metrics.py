"""Wilson intervals, verdicts, normalized IIA and the pairs needed for a given precision."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from das_assert.errors import InvalidArgument
from das_assert.metrics import (
    Z95,
    Gap,
    beside,
    normalized_iia,
    paired_gap,
    perfect_gap,
    required_n,
    unpaired_difference,
    verdict,
    wilson_interval,
)


def lead(low: float, high: float, baseline: float = 0.5) -> Gap:
    """A lead over a baseline with the given interval (the estimate at its middle)."""
    return Gap(baseline=baseline, estimate=(low + high) / 2, low=low, high=high)


BEATEN = {"noop": lead(0.3, 0.4), "random_rotation": lead(0.25, 0.35, baseline=0.55)}


# -- the Wilson interval ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("successes", "n", "low", "high"),
    [
        # Reference values of the 95 % Wilson score interval (z = 1.95996).
        (90, 100, 0.8256, 0.9448),
        (50, 100, 0.4038, 0.5962),
        (0, 10, 0.0, 0.2775),
        (10, 10, 0.7225, 1.0),
        (400, 500, 0.7627, 0.8327),
    ],
)
def test_wilson_interval_matches_reference_values(
    successes: int, n: int, low: float, high: float
) -> None:
    got_low, got_high = wilson_interval(successes, n)
    assert got_low == pytest.approx(low, abs=1e-4)
    assert got_high == pytest.approx(high, abs=1e-4)


def test_wilson_interval_of_90_of_100_by_the_hand_formula() -> None:
    # p = 0.9, z^2 = 3.84146; centre = (0.9 + z^2/200) / (1 + z^2/100) = 0.919207 / 1.038415
    # = 0.885203; half = z * sqrt(0.9 * 0.1 / 100 + z^2 / 40000) / 1.038415
    # = 1.95996 * 0.0315600 / 1.038415 = 0.059568.
    z2 = Z95 * Z95
    centre = (0.9 + z2 / 200) / (1 + z2 / 100)
    half = Z95 * math.sqrt(0.9 * 0.1 / 100 + z2 / 40000) / (1 + z2 / 100)
    assert centre == pytest.approx(0.885203, abs=1e-6)
    assert half == pytest.approx(0.059568, abs=1e-6)
    low, high = wilson_interval(90, 100)
    assert low == pytest.approx(centre - half, abs=1e-12)
    assert high == pytest.approx(centre + half, abs=1e-12)
    assert round(low, 3) == 0.826


@given(n=st.integers(1, 5000), data=st.data())
@settings(max_examples=200, deadline=None)
def test_wilson_bounds_are_the_roots_of_the_score_equation(n: int, data: st.DataObject) -> None:
    # The Wilson bounds are the p with |p_hat - p| = z * sqrt(p (1 - p) / n), that is the roots of
    # n (p_hat - p)^2 - z^2 p (1 - p) = 0; a bound clipped to 0 or 1 is a root there as well.
    successes = data.draw(st.integers(0, n))
    p_hat = successes / n
    low, high = wilson_interval(successes, n)
    # (For 0 successes the lower bound is centre - half, which rounds to about 1e-17, not 0.)
    assert 0.0 <= low <= p_hat + 1e-12
    assert p_hat - 1e-12 <= high <= 1.0
    for bound in (low, high):
        residual = n * (p_hat - bound) ** 2 - Z95 * Z95 * bound * (1 - bound)
        assert abs(residual) < 1e-6 * max(1.0, n * p_hat)


def test_a_wider_z_gives_a_wider_interval() -> None:
    low95, high95 = wilson_interval(30, 50)
    low99, high99 = wilson_interval(30, 50, z=2.5758)
    assert low99 < low95 < high95 < high99


def test_more_pairs_give_a_narrower_interval() -> None:
    small = wilson_interval(45, 50)
    large = wilson_interval(450, 500)
    assert large[1] - large[0] < small[1] - small[0]


@pytest.mark.parametrize("n", [0, -3])
def test_an_interval_from_no_pairs_is_an_error(n: int) -> None:
    with pytest.raises(InvalidArgument, match=f"from n={n} pairs"):
        wilson_interval(0, n)


@pytest.mark.parametrize("successes", [-1, 11])
def test_successes_outside_zero_to_n_are_an_error(successes: int) -> None:
    with pytest.raises(InvalidArgument, match=f"successes={successes} must lie in"):
        wilson_interval(successes, 10)


# -- verdicts -----------------------------------------------------------------------------------


def test_a_lower_bound_above_the_threshold_that_beats_the_baselines_is_aligned() -> None:
    result = verdict(iia_ci=(0.85, 0.95), iia=0.9, threshold=0.8, gaps=BEATEN)
    assert result.outcome == "aligned"
    assert "lower bound 0.850 >= threshold 0.800" in result.reason


def test_a_lower_bound_exactly_at_the_threshold_is_aligned() -> None:
    result = verdict(iia_ci=(0.8, 0.9), iia=0.85, threshold=0.8, gaps=BEATEN)
    assert result.outcome == "aligned"


def test_an_upper_bound_below_the_threshold_is_not_aligned() -> None:
    result = verdict(iia_ci=(0.6, 0.7), iia=0.65, threshold=0.8, gaps=BEATEN)
    assert result.outcome == "not_aligned"
    assert "upper bound 0.700 < threshold 0.800" in result.reason


def test_an_interval_that_straddles_the_threshold_is_inconclusive() -> None:
    result = verdict(iia_ci=(0.75, 0.85), iia=0.8, threshold=0.8, gaps=BEATEN)
    assert result.outcome == "inconclusive"
    assert "[0.750, 0.850] contains the threshold 0.800; increase n" in result.reason


def test_an_upper_bound_exactly_at_the_threshold_is_inconclusive() -> None:
    result = verdict(iia_ci=(0.7, 0.8), iia=0.75, threshold=0.8, gaps=BEATEN)
    assert result.outcome == "inconclusive"


def test_an_alignment_clearly_no_better_than_a_baseline_is_not_aligned() -> None:
    gaps = {"noop": lead(0.3, 0.4), "random_rotation": lead(-0.01, 0.04, baseline=0.88)}
    result = verdict(iia_ci=(0.85, 0.95), iia=0.9, threshold=0.8, gaps=gaps)
    assert result.outcome == "not_aligned"
    assert "does not beat random_rotation (0.880, lead +0.015 [-0.010, +0.040]) by 0.05" in (
        result.reason
    )
    assert "noop" not in result.reason


def test_a_lead_whose_interval_contains_the_margin_is_inconclusive_and_named() -> None:
    # The point estimate (0.07) beats the margin; the interval does not say it does.
    gaps = {"noop": lead(0.3, 0.4), "random_rotation": lead(0.03, 0.11, baseline=0.83)}
    result = verdict(iia_ci=(0.85, 0.95), iia=0.9, threshold=0.8, gaps=gaps)
    assert result.outcome == "inconclusive"
    assert "the lead over random_rotation, +0.070 [+0.030, +0.110], contains the margin" in (
        result.reason
    )
    assert "threshold" not in result.reason  # the IIA interval itself cleared its bar


def test_the_margin_decides_whether_a_baseline_is_beaten() -> None:
    gaps = {"noop": lead(0.3, 0.4), "random_rotation": lead(0.08, 0.12, baseline=0.8)}
    kwargs = {"iia_ci": (0.85, 0.95), "iia": 0.9, "threshold": 0.8, "gaps": gaps}
    assert verdict(**kwargs, margin=0.15).outcome == "not_aligned"
    assert verdict(**kwargs, margin=0.10).outcome == "inconclusive"
    assert verdict(**kwargs, margin=0.05).outcome == "aligned"


def test_a_lead_short_of_the_margin_only_at_its_estimate_is_inconclusive() -> None:
    # The lead's estimate (0.04) is below the margin but its upper bound (0.06) is not: the pairs
    # cannot rule out a lead of 0.05, so "does not beat random rotation" is not shown (guards
    # against judging a baseline lost by the estimate instead of the interval's upper bound).
    gaps = {"noop": lead(0.3, 0.4), "random_rotation": lead(0.02, 0.06, baseline=0.86)}
    result = verdict(iia_ci=(0.85, 0.95), iia=0.9, threshold=0.8, gaps=gaps, margin=0.05)
    assert result.outcome == "inconclusive"
    assert result.decided_by == ("lead over random_rotation",)


@pytest.mark.parametrize("margin", [-0.5, 1.0, 3])
def test_a_margin_outside_zero_to_one_is_an_error(margin: float) -> None:
    with pytest.raises(InvalidArgument, match=f"margin={margin} must lie in"):
        verdict(iia_ci=(0.8, 0.9), iia=0.85, threshold=0.7, gaps=BEATEN, margin=margin)


def test_pairs_whose_labels_barely_change_are_inconclusive_not_a_verdict() -> None:
    # 5 of 400 labels change (a narrow bracket near zero): an alignment that changes just those
    # answers leads the no-op by 0.0125; "does not beat the no-op" says nothing.
    gaps = {"noop": lead(-0.01, 0.02, baseline=0.98)}
    result = verdict(iia_ci=(0.96, 0.99), iia=0.98, threshold=0.75, gaps=gaps, changed=(5, 400))
    assert result.outcome == "inconclusive"
    assert result.untestable
    assert result.reason.startswith("only 5 of 400 pairs have a label the intervention must")
    assert "would lead the no-op by 0.013, not more than the margin 0.05" in result.reason
    assert "not more of these" in result.reason
    # ... unless the interval alone already rules the claim out: then the intervention broke
    # answers it should have left alone, whatever the no-op did.
    ruled_out = verdict(iia_ci=(0.53, 0.63), iia=0.58, threshold=0.75, gaps=gaps, changed=(5, 400))
    assert ruled_out.outcome == "not_aligned"
    assert not ruled_out.untestable
    # Half the labels changing leaves room for any margin below one half.
    room = verdict(iia_ci=(0.85, 0.95), iia=0.9, threshold=0.8, gaps=BEATEN, changed=(200, 400))
    assert room.outcome == "aligned"


def test_a_lead_won_where_no_label_changes_does_not_make_pairs_testable() -> None:
    # 18 of 400 labels change, but the plain run is also wrong on 52 others, and an intervention
    # right on every pair leads it by 0.175 [0.140, 0.215]: a lead the variable cannot explain.
    # The reason must not say that no intervention could beat the no-op, which this one did.
    noop = paired_gap(only_iia=70, only_baseline=0, both=330, n=400)
    assert noop.low > 0.05
    result = verdict(
        iia_ci=wilson_interval(400, 400),
        iia=1.0,
        threshold=0.75,
        gaps={"noop": noop},
        changed=(18, 400),
    )
    assert result.untestable
    assert "an alignment that changed just those answers would lead the no-op by 0.045" in (
        result.reason
    )


@pytest.mark.parametrize(("changed", "margin"), [((40, 800), 0.05), ((0, 800), 0.0)])
def test_labels_that_change_exactly_as_often_as_the_margin_make_pairs_untestable(
    changed: tuple[int, int], margin: float
) -> None:
    # An alignment changing just those answers leads the no-op by exactly the margin; the lower
    # bound of that lead stays below it at any n, so more pairs of the kind cannot help.
    gaps = {"noop": paired_gap(only_iia=changed[0], only_baseline=0, both=760, n=800)}
    result = verdict(
        iia_ci=(0.96, 0.99), iia=0.98, threshold=0.75, gaps=gaps, margin=margin, changed=changed
    )
    assert (result.outcome, result.untestable) == ("inconclusive", True)
    assert result.decided_by == ("labels that change",)
    assert f"not more than the margin {margin}" in result.reason


def test_a_verdict_names_what_decided_it() -> None:
    def decided(**kwargs: object) -> tuple[str, tuple[str, ...]]:
        arguments = {"iia_ci": (0.8, 0.9), "iia": 0.85, "threshold": 0.7, "gaps": BEATEN}
        result = verdict(**{**arguments, **kwargs})  # type: ignore[arg-type]
        return result.outcome, result.decided_by

    names = tuple(f"lead over {name}" for name in BEATEN)
    assert decided() == ("aligned", ("threshold", *names))
    assert decided(iia_ci=(0.6, 0.68)) == ("not_aligned", ("threshold",))
    assert decided(iia_ci=(0.65, 0.75)) == ("inconclusive", ("threshold",))
    assert decided(collapsed=True) == ("not_aligned", ("collapse",))
    lost = {**BEATEN, "noop": lead(-0.01, 0.02, baseline=0.85)}
    assert decided(gaps=lost) == ("not_aligned", ("lead over noop",))
    unsure = {**BEATEN, "noop": lead(0.02, 0.12, baseline=0.78)}
    assert decided(gaps=unsure) == ("inconclusive", ("lead over noop",))
    assert decided(iia_ci=(0.65, 0.75), gaps=unsure) == (
        "inconclusive",
        ("threshold", "lead over noop"),
    )


def test_too_few_pairs_are_inconclusive_for_want_of_pairs_not_untestable() -> None:
    # One of two labels changes: changing it would lead by 0.5, but two pairs cannot show a lead
    # of 0.05. More pairs of the same kind would, so the verdict asks for them.
    result = verdict(
        iia_ci=wilson_interval(2, 2),
        iia=1.0,
        threshold=0.7,
        gaps={"noop": paired_gap(only_iia=1, only_baseline=0, both=1, n=2)},
        changed=(1, 2),
    )
    assert result.outcome == "inconclusive"
    assert not result.untestable
    assert result.reason.startswith("only 1 of 2 pairs have a label the intervention must")
    assert result.reason.endswith("increase n")
    assert "not more of these" not in result.reason


def test_a_collapsed_boundary_is_not_aligned_whatever_the_interval() -> None:
    result = verdict(iia_ci=(0.95, 0.99), iia=0.97, threshold=0.8, gaps=BEATEN, collapsed=True)
    assert result.outcome == "not_aligned"
    assert "collapsed" in result.reason


def test_without_baselines_the_interval_alone_decides() -> None:
    assert verdict(iia_ci=(0.85, 0.95), iia=0.9, threshold=0.8, gaps={}).outcome == "aligned"


@pytest.mark.parametrize("threshold", [-0.1, 1.5, 80, 1.0, 1])
def test_a_threshold_outside_zero_to_one_is_an_error(threshold: float) -> None:
    with pytest.raises(InvalidArgument, match=re.escape(f"threshold={threshold!r}: a threshold")):
        verdict(iia_ci=(0.8, 0.9), iia=0.85, threshold=threshold, gaps={})


def test_a_threshold_of_one_is_refused_because_no_interval_reaches_it() -> None:
    assert wilson_interval(10_000, 10_000)[0] < 1  # every pair right, and still below 1
    with pytest.raises(InvalidArgument, match="could never be met"):
        verdict(iia_ci=(0.99, 1.0), iia=1.0, threshold=1.0, gaps={})


def test_a_threshold_of_zero_is_allowed() -> None:
    assert verdict(iia_ci=(0.8, 0.9), iia=0.85, threshold=0.0, gaps={}).outcome == "aligned"


# -- normalized IIA and required n --------------------------------------------------------------


def test_normalized_iia_rescales_between_majority_and_task_accuracy() -> None:
    assert normalized_iia(0.9, 0.5, 1.0) == pytest.approx(0.8)  # (0.9 - 0.5) / (1.0 - 0.5)
    assert normalized_iia(0.5, 0.5, 0.9) == pytest.approx(0.0)
    assert normalized_iia(0.9, 0.5, 0.9) == pytest.approx(1.0)
    assert normalized_iia(0.4, 0.5, 0.9) == pytest.approx(-0.25)  # below the majority


def test_normalized_iia_is_undefined_when_the_task_is_not_above_the_majority() -> None:
    assert normalized_iia(0.9, 0.5, 0.5) is None
    assert normalized_iia(0.9, 0.6, 0.5) is None


def test_required_n_matches_the_normal_approximation() -> None:
    # ceil(1.95996^2 * 0.25 / 0.05^2) = ceil(384.15) = 385
    assert required_n(0.05) == 385
    # ceil(3.84146 * 0.25 / 0.0004) = ceil(2400.9) = 2401
    assert required_n(0.02) == 2401
    # ceil(3.84146 * 0.09 / 0.0025) = ceil(138.3) = 139
    assert required_n(0.05, p=0.9) == 139


@pytest.mark.parametrize("p", [0, 1, 1.5, -0.2])
def test_required_n_of_a_proportion_outside_0_to_1_is_refused(p: float) -> None:
    with pytest.raises(InvalidArgument, match=rf"p={p} must be in \(0, 1\)"):
        required_n(0.05, p=p)


def test_required_n_pairs_reach_the_requested_half_width() -> None:
    n = required_n(0.03)
    low, high = wilson_interval(n // 2, n)
    assert (high - low) / 2 <= 0.03 + 1e-9


@pytest.mark.parametrize("half_width", [0.0, 0.5, -0.1, 1.0])
def test_required_n_rejects_a_half_width_outside_zero_to_a_half(half_width: float) -> None:
    with pytest.raises(InvalidArgument, match=re.escape("must be in (0, 0.5)")):
        required_n(half_width)


def test_an_interval_that_straddles_the_threshold_below_a_baseline_is_not_aligned() -> None:
    # More pairs cannot make a site that clearly does no more than the no-op aligned.
    gaps = {"noop": lead(-0.14, -0.06, baseline=0.74), "random_rotation": lead(0.1, 0.2)}
    result = verdict(iia_ci=(0.542, 0.727), iia=0.64, threshold=0.6, gaps=gaps)
    assert result.outcome == "not_aligned"
    assert "does not beat noop (0.740, lead -0.100 [-0.140, -0.060]) by 0.05" in result.reason


def test_an_upper_bound_below_the_threshold_is_named_before_a_lost_baseline() -> None:
    gaps = {"noop": lead(-0.3, -0.2, baseline=0.9), "random_rotation": lead(0.1, 0.2)}
    result = verdict(iia_ci=(0.6, 0.7), iia=0.65, threshold=0.8, gaps=gaps)
    assert result.reason.startswith("95% CI upper bound 0.700 < threshold 0.800")


def test_a_lead_whose_lower_bound_meets_the_margin_exactly_beats_the_baseline() -> None:
    gaps = {"noop": lead(0.05, 0.15), "random_rotation": lead(0.1 - 0.05, 0.2)}
    result = verdict(iia_ci=(0.70, 0.76), iia=0.73, threshold=0.7, gaps=gaps)
    assert result.outcome == "aligned"


# -- IIA's lead over a baseline on the same pairs ---------------------------------------------


def test_the_lead_of_identical_predictions_is_zero_with_a_narrow_interval() -> None:
    gap = paired_gap(only_iia=0, only_baseline=0, both=550, n=800)
    assert gap.estimate == 0
    assert gap.low <= 0 <= gap.high
    assert gap.high < 0.01  # the same answers on every pair: nothing to be unsure of


@given(st.integers(0, 300), st.integers(0, 300), st.integers(0, 300), st.integers(0, 300))
def test_swapping_the_two_runs_negates_the_lead(b: int, c: int, a: int, d: int) -> None:
    n = a + b + c + d
    if n == 0:
        return
    forward = paired_gap(only_iia=b, only_baseline=c, both=a, n=n)
    backward = paired_gap(only_iia=c, only_baseline=b, both=a, n=n)
    assert backward.low == pytest.approx(-forward.high)
    assert backward.high == pytest.approx(-forward.low)
    assert forward.low <= forward.estimate <= forward.high
    assert forward.estimate == pytest.approx((b - c) / n)
    assert forward.baseline == pytest.approx((a + c) / n)


@pytest.mark.parametrize(
    ("cells", "n"),
    [((0.6, 0.15, 0.05), 100), ((0.45, 0.4, 0.02), 400), ((0.3, 0.3, 0.3), 60)],
)
def test_the_lead_interval_covers_the_true_difference_95_percent_of_the_time(
    cells: tuple[float, float, float], n: int
) -> None:
    # Paired draws (both right, IIA alone, baseline alone, neither) with a known difference.
    import random

    rng = random.Random(7)
    weights = [*cells, 1 - sum(cells)]
    truth, trials, covered = cells[1] - cells[2], 1500, 0
    for _ in range(trials):
        draws = rng.choices(range(4), weights, k=n)
        a, b, c = (draws.count(k) for k in range(3))
        gap = paired_gap(only_iia=b, only_baseline=c, both=a, n=n)
        covered += gap.low <= truth <= gap.high
    assert 0.93 <= covered / trials <= 0.98  # Newcombe's interval: close to its nominal 95 %


def test_paired_counts_that_do_not_fit_n_are_an_error() -> None:
    with pytest.raises(InvalidArgument, match="do not fit n=10 pairs"):
        paired_gap(only_iia=6, only_baseline=6, both=0, n=10)


def test_a_perfect_intervention_can_only_show_what_the_changed_labels_allow() -> None:
    assert perfect_gap(5, 400).high < 0.05  # 5 of 400 labels to change: never past a margin
    assert perfect_gap(200, 400).low > 0.45
    assert perfect_gap(0, 400).estimate == 0


def test_the_lead_interval_matches_a_published_reference() -> None:
    # Newcombe's square-and-add interval for paired proportions, the correlation corrected
    # (ad - bc = 4624 > n / 2): the complete responses of Cavo et al. (2012), 59 both, 6 before
    # only, 16 after only, 80 neither, as Fagerland, Lydersen and Laake (2017, ch. 8) give it:
    # -0.0621 (95% CI -0.1186 to -0.0046).
    gap = paired_gap(only_iia=6, only_baseline=16, both=59, n=161)
    assert gap.estimate == pytest.approx(-0.0621, abs=1e-4)
    assert gap.low == pytest.approx(-0.1186, abs=1e-4)
    assert gap.high == pytest.approx(-0.0046, abs=1e-4)


@pytest.mark.parametrize(
    ("counts", "low", "high"),
    [  # Newcombe (1998), Table II, method 10: differences of independent proportions
        ((56, 70, 48, 80), 0.0524, 0.3339),
        ((9, 10, 3, 10), 0.1705, 0.8090),
        ((6, 7, 2, 7), 0.0582, 0.8062),
    ],
)
def test_a_difference_on_independent_pairs_matches_newcombes_table(
    counts: tuple[int, int, int, int], low: float, high: float
) -> None:
    assert unpaired_difference(*counts) == pytest.approx((low, high), abs=1e-4)


@pytest.mark.parametrize("counts", [(0, 0, 3, 10), (3, 10, 0, 0)])
def test_a_difference_over_no_pairs_is_refused_by_name(counts: tuple[int, int, int, int]) -> None:
    with pytest.raises(InvalidArgument, match="n="):
        unpaired_difference(*counts)


def test_an_uncorrelated_lead_is_the_wilson_intervals_squared_and_added() -> None:
    # ad - bc = 1 * 12 - 1 * 7 = 5 <= n / 2: Newcombe sets the correlation to 0, and the bounds
    # are d -/+ the root of the sum of the squared Wilson distances (Wilson checked above).
    n, first, second = 21, 2, 8
    p1, p2 = first / n, second / n
    (l1, u1), (l2, u2) = wilson_interval(first, n), wilson_interval(second, n)
    gap = paired_gap(only_iia=1, only_baseline=7, both=1, n=n)
    assert gap.low == pytest.approx(p1 - p2 - math.hypot(p1 - l1, u2 - p2), abs=1e-12)
    assert gap.high == pytest.approx(p1 - p2 + math.hypot(u1 - p1, p2 - l2), abs=1e-12)


@pytest.mark.parametrize(
    ("successes", "n", "low", "high"),
    [  # z^2 / (n + z^2) closed forms at the ends: 0 of n and n of n
        (0, 1, 0.0, 3.841459 / 4.841459),
        (1, 1, 1 / 4.841459, 1.0),
        (0, 800, 0.0, 3.841459 / 803.841459),
        (800, 800, 800 / 803.841459, 1.0),
    ],
)
def test_wilson_interval_at_zero_and_all_pairs_right(
    successes: int, n: int, low: float, high: float
) -> None:
    got = wilson_interval(successes, n)
    assert got == (pytest.approx(low, abs=1e-6), pytest.approx(high, abs=1e-6))


def test_a_bound_that_rounds_onto_the_threshold_is_shown_with_the_digits_that_tell() -> None:
    # 0.72996 < 0.73: "upper bound 0.730 < threshold 0.730" read as false.
    below = verdict(iia_ci=(0.6, 0.72996), iia=0.66, threshold=0.73, gaps=BEATEN)
    assert below.outcome == "not_aligned"
    assert "upper bound 0.72996 < threshold 0.730" in below.reason
    straddles = verdict(iia_ci=(0.72996, 0.8), iia=0.76, threshold=0.73, gaps=BEATEN)
    assert straddles.outcome == "inconclusive"
    assert "95% CI [0.72996, 0.800] contains the threshold 0.730" in straddles.reason
    gaps = {"noop": lead(0.3, 0.4), "random_rotation": lead(0.04996, 0.12)}
    unsure = verdict(iia_ci=(0.8, 0.9), iia=0.85, threshold=0.73, gaps=gaps)
    assert "random_rotation, +0.085 [+0.04996, +0.120], contains the margin" in unsure.reason
    # Bounds clear of the bar keep three decimals; one within the margin's tolerance meets it.
    assert beside(0.7296, 0.73) == "0.7296"
    assert beside(0.7304, 0.73) == "0.730"
    assert beside(0.73, 0.73) == "0.730"
    assert beside(0.0499999999995, 0.05 - 1e-9, signed=True) == "+0.050"


def test_a_threshold_is_shown_with_every_digit_the_verdict_used() -> None:
    # das.yaml's 0.7255 was shown as 0.726: "upper bound 0.7254 < threshold 0.726" hid that
    # a bound of 0.7258 met it, and the tables' column rounded it the same way.
    from das_assert.summary import threshold_text

    assert [threshold_text(t) for t in (0.7, 0.725, 0.7255)] == ["0.70", "0.725", "0.7255"]
    below = verdict(iia_ci=(0.6, 0.7254), iia=0.66, threshold=0.7255, gaps=BEATEN)
    assert "upper bound 0.725 < threshold 0.7255" in below.reason
    above = verdict(iia_ci=(0.7258, 0.8), iia=0.76, threshold=0.7255, gaps=BEATEN)
    assert "lower bound 0.726 >= threshold 0.7255" in above.reason
    plain = verdict(iia_ci=(0.6, 0.7), iia=0.66, threshold=0.73, gaps=BEATEN)
    assert "upper bound 0.700 < threshold 0.730" in plain.reason  # three decimals, as before


@pytest.mark.parametrize(
    ("df", "table"),  # Student's t at 0.975 from the standard table
    [(1, 12.7062), (2, 4.3027), (3, 3.1824), (4, 2.7764), (6, 2.4469), (10, 2.2281), (30, 2.0423)],
)
def test_students_t_quantile_matches_the_table(df: int, table: float) -> None:
    from das_assert.metrics import student_t_975

    assert student_t_975(df) == pytest.approx(table, abs=1e-4)
    assert student_t_975(1000) == pytest.approx(1.962339, abs=1e-6)  # past the exact range


def test_a_clustered_interval_of_one_cluster_is_wilsons() -> None:
    from das_assert.metrics import clustered_interval

    assert clustered_interval([(37, 48)]) == wilson_interval(37, 48)


@given(
    st.lists(
        st.integers(1, 200).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))),
        min_size=1,
        max_size=12,
    )
)
def test_a_clustered_interval_holds_the_pooled_iia_and_is_never_narrower_than_wilsons(
    clusters: list[tuple[int, int]],
) -> None:
    from das_assert.metrics import clustered_interval

    correct, n = sum(c for c, _ in clusters), sum(m for _, m in clusters)
    low, high = clustered_interval(clusters)
    wilson_low, wilson_high = wilson_interval(correct, n)
    assert 0.0 <= low <= wilson_low <= correct / n <= wilson_high <= high <= 1.0


def test_a_clustered_interval_widens_with_the_spread_of_its_clusters() -> None:
    from das_assert.metrics import clustered_interval

    # four variants of 100 pairs, pooled IIA 0.75 each time: the same pairs if independent
    alike = clustered_interval([(74, 100), (76, 100), (75, 100), (75, 100)])
    apart = clustered_interval([(95, 100), (55, 100), (85, 100), (65, 100)])
    assert alike == wilson_interval(300, 400)
    assert apart[1] - apart[0] > 2 * (alike[1] - alike[0])
    # by hand: spread = (20^2 + 20^2 + 10^2 + 10^2) * 4/3, half = t(3) * sqrt(spread) / 400
    half = 3.1824 * math.sqrt(1000 * 4 / 3) / 400  # t(3) = 3.18245 (tables)
    assert apart == pytest.approx((0.75 - half, 1.0), abs=1e-4)  # clipped at 1


def test_a_task_accuracy_just_under_its_gate_is_not_shown_as_meeting_it() -> None:
    # 3,199 of 4,000 is 0.79975: three decimals printed "task accuracy 0.800 ...; gate 0.8" on
    # the message that says the model fails that gate.
    from das_assert.errors import PreconditionFailed
    from das_assert.evaluate import _check_gate

    with pytest.raises(PreconditionFailed, match=r"task accuracy 0\.7997 \(3199 of 4000 base"):
        _check_gate(wrong=801, seen=4000, n=4000, gate=0.8)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # z=-1.96 gave low > high, z=0 a zero-width interval, 0.9 successes an interval, "90" a
        # TypeError from a comparison
        ((90, 100, -1.96), r"z=-1\.96 must be a positive finite number"),
        ((90, 100, 0), r"z=0 must be a positive finite number"),
        ((90, 100, math.inf), r"z=inf must be a positive finite number"),
        ((90, 100, "1.96"), r"z='1\.96' must be a positive finite number"),
        ((0.9, 100), r"successes=0\.9 must be a whole number of pairs"),
        (("90", 100), r"successes='90' must be a whole number of pairs"),
        ((90, 100.0), r"n=100\.0 must be a whole number of pairs"),
        ((True, 100), r"successes=True must be a whole number of pairs"),
    ],
)
def test_wilson_interval_refuses_a_bad_z_or_count(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        wilson_interval(*args)


def test_wilson_interval_takes_numpy_counts_and_another_z() -> None:
    assert wilson_interval(np.int64(90), np.int64(100)) == wilson_interval(90, 100)
    low, high = wilson_interval(90, 100, z=2.576)  # 99 %
    assert low < wilson_interval(90, 100)[0] < high


def test_a_reported_interval_keeps_each_bound_on_the_side_of_a_threshold_its_verdict_read() -> None:
    # 914 of 1000 pairs against a threshold of 0.895: the verdict read the lower bound
    # 0.89499997 (inconclusive), while the JSON and a limit's message showed 0.895; rounded up,
    # 12 of 169 against 0.12 showed an upper bound of 0.12 of a claim not aligned (0.119999)
    from das_assert.metrics import rounded_interval

    low, high = wilson_interval(914, 1000)
    assert low < 0.895 < high
    assert rounded_interval(low, high)[0] < 0.895
    low, high = wilson_interval(12, 169)
    assert high < 0.12
    assert rounded_interval(low, high)[1] < 0.12
    assert rounded_interval(0.8, 1.0) == [0.8, 1.0]  # a bound on the grid stays where it is
    assert rounded_interval(0.0, 0.1234565) == [0.0, 0.123456]
