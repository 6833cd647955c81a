"""The stability script reads which plain tests failed under a seed from pytest's JUnit XML, and
summarises claims and measured limits across seeds."""

from __future__ import annotations

from pathlib import Path

import pytest

from das_assert.stability import _failed_tests

pytest_plugins = ["pytester"]


def test_failed_and_erroring_tests_are_read_from_junit_xml(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    pytester.makepyfile(
        test_region="""
        import pytest

        @pytest.fixture
        def broken():
            raise RuntimeError("setup fails")

        def test_passes():
            pass

        def test_fails():
            assert False

        def test_errors(broken):
            pass

        @pytest.mark.parametrize("side", ["left", "right"])
        def test_each(side):
            assert side == "left"

        class TestClaims:
            def test_in_a_class(self):
                assert False
        """
    )
    pytester.mkpydir("sub")
    pytester.path.joinpath("sub", "test_deeper.py").write_text("def test_deep():\n    assert 0\n")
    junit = tmp_path / "report.xml"
    pytester.runpytest(f"--junitxml={junit}", "-p", "no:cacheprovider")
    assert sorted(_failed_tests(junit, root=pytester.path)) == [
        "sub/test_deeper.py::test_deep",
        "test_region.py::TestClaims::test_in_a_class",  # the node id das records carry
        "test_region.py::test_each[right]",
        "test_region.py::test_errors",
        "test_region.py::test_fails",
    ]
    assert _failed_tests(tmp_path / "missing.xml") == []


def _claim(
    iia: float,
    verdict: str = "aligned",
    decided_by: tuple[str, ...] = ("threshold", "lead over noop", "lead over random_rotation"),
    leads: tuple[float, float] = (0.2, 0.3),
) -> dict:
    return {
        "test_id": "hypotheses/test_lb.py::test_claim",
        "claim": "left_boundary",
        "verdict": verdict,
        "verdict_decided_by": list(decided_by),
        "iia": iia,
        "threshold": 0.73,
        "margin": 0.05,
        "n_test": 800,
        "iia_ci": [iia - 0.03, iia + 0.03],
        "site": {"canonical": "block_output[layer=0, pos=last]"},
        "baselines": {"noop": 0.5, "majority": 0.55, "random_rotation": 0.52},
        "task_accuracy": 0.95,
        "iia_on_changed_labels": {"correct": 200, "n": 300},
        "baseline_leads": {
            name: {"lead": lead, "baseline": iia - lead}
            for name, lead in zip(("noop", "random_rotation"), leads, strict=True)
        },
    }


def _compare_claims(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], claims: list[dict]
) -> tuple[int, str]:
    """``stability.main`` over one seed per claim, every test passing; its exit code and table."""
    import json

    from das_assert import stability

    def run(path: str, seed: int, report: Path, junit: Path, extra: list[str]) -> int:
        report.write_text(json.dumps({"results": [claims[seed]]}))
        junit.write_text("<testsuites/>")
        return 0

    monkeypatch.setattr(stability, "_run_seed", run)
    status = stability.main(["--seeds", str(len(claims))])
    return status, capsys.readouterr().out


def test_a_flip_decided_by_a_lost_lead_is_not_excused_by_an_iia_near_the_threshold(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    lost = _claim(0.77, "not_aligned", ("lead over random_rotation",), leads=(0.2, -0.01))
    status, out = _compare_claims(monkeypatch, capsys, [_claim(0.77), lost])
    assert status == 1
    assert "closest 0.060 (lead over random_rotation)  FLIPS (far from the bar" in out
    # each seed's IIA as every IIA is shown: n, interval, site, seed and the controls
    header = "hypotheses/test_lb.py::test_claim::left_boundary at block_output[layer=0, pos=last]"
    assert f"{header}\n" in out
    assert (
        "    seed 1: IIA 0.770 [0.740, 0.800] n=800, no-op 0.500, majority 0.550, random "
        "rotation 0.520, task accuracy 0.950: not_aligned"
    ) in out


def test_a_flip_decided_by_a_lead_near_the_margin_is_tolerated_far_from_the_threshold(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    unsure = _claim(0.9, "inconclusive", ("lead over noop",), leads=(0.069, 0.3))
    status, out = _compare_claims(monkeypatch, capsys, [_claim(0.88), unsure])
    assert status == 0
    assert "closest 0.019 (lead over noop)  FLIPS (within 0.05 of the bar" in out


def test_a_flip_across_the_threshold_near_it_is_tolerated_and_far_from_it_is_not(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    below = _claim(0.69, "not_aligned", ("threshold",))
    status, out = _compare_claims(monkeypatch, capsys, [_claim(0.77), below])
    assert (status, "closest 0.040 (threshold)  FLIPS (within" in out) == (0, True)
    far_below = _claim(0.6, "not_aligned", ("threshold",))
    status, out = _compare_claims(monkeypatch, capsys, [_claim(0.85), far_below])
    assert (status, "closest 0.120 (threshold)  FLIPS (far" in out) == (1, True)


def test_another_seeds_verdict_near_the_threshold_does_not_excuse_a_lost_lead(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # An inconclusive seed at IIA 0.76 put "threshold" among the deciding axes, which then
    # excused a third seed's loss to the random rotation, a lead 0.10 from its margin.
    unsure = _claim(0.76, "inconclusive", ("threshold",))
    lost = _claim(0.77, "not_aligned", ("lead over random_rotation",), leads=(0.2, -0.05))
    status, out = _compare_claims(monkeypatch, capsys, [_claim(0.85), unsure, lost])
    assert status == 1
    assert "closest 0.100 (lead over random_rotation)  FLIPS (far" in out


def test_a_flip_to_a_collapse_is_never_tolerated(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    collapsed = _claim(0.74, "not_aligned", ("collapse",), leads=(0.0, 0.0))
    status, out = _compare_claims(monkeypatch, capsys, [_claim(0.75), collapsed])
    assert status == 1
    assert "FLIPS (collapse under some seed: near no bar, so not tolerated!)" in out


def test_a_flip_to_broken_answers_is_never_tolerated_and_says_why(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # It printed "closest inf (no bar)  FLIPS (far from the bar of no bar!)".
    broken = _claim(0.5, "inconclusive", ("answers kept",), leads=(0.0, 0.0))
    status, out = _compare_claims(monkeypatch, capsys, [_claim(0.75), broken])
    assert status == 1
    assert "FLIPS (answers kept under some seed: near no bar, so not tolerated!)" in out
    assert "inf" not in out


def test_a_flip_to_too_few_changing_labels_is_as_far_as_its_bound_from_the_margin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # 8 of 60 labels change: the lead that changing all of them would show is +0.133 with a
    # lower bound of +0.045, which decides "increase n", 0.005 from the margin; read as the
    # share's 0.083 from it, the flip was "far from the bar" and failed the run.
    few = {
        **_claim(0.8, "inconclusive", ("labels that change",)),
        "n_test": 60,
        "iia_on_changed_labels": {"correct": 6, "n": 8},
    }
    status, out = _compare_claims(monkeypatch, capsys, [_claim(0.8), few])
    assert status == 0
    assert "closest 0.005 (labels that change)  FLIPS (within 0.05 of the bar" in out


def test_a_claim_that_fails_before_its_verdict_under_one_seed_is_unstable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from das_assert import stability

    def run(path: str, seed: int, report: Path, junit: Path, extra: list[str]) -> int:
        errored = seed == 1  # under seed 1 the claim's fixture raises: no record, an error
        results = [] if errored else [_claim(0.83)]
        report.write_text(json.dumps({"results": results}))
        failure = "<error message='boom'/>" if errored else ""
        junit.write_text(
            "<testsuites><testsuite><testcase classname='hypotheses.test_lb' name='test_claim'>"
            f"{failure}</testcase></testsuite></testsuites>"
        )
        return 1 if errored else 0

    monkeypatch.setattr(stability, "_run_seed", run)
    assert stability.main(["--seeds", "3"]) == 1
    assert "failed before a verdict under seeds [1]  UNSTABLE" in capsys.readouterr().out


def test_zero_seeds_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    from das_assert import stability

    with pytest.raises(SystemExit) as exit_:
        stability.main(["--seeds", "0"])
    assert exit_.value.code == 2
    assert "--seeds: '0' must be a positive integer" in capsys.readouterr().err


def test_seeds_past_the_last_seed_are_refused_before_any_run(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from das_assert import stability

    with pytest.raises(SystemExit) as exit_:
        stability.main(["--first-seed", "4294967295", "--seeds", "2"])
    assert exit_.value.code == 2
    assert "--first-seed 4294967295 + --seeds 2 passes 4294967295" in capsys.readouterr().err


def test_a_measured_limit_is_listed_with_the_seeds_it_broke_under_and_its_ranges(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from das_assert import stability

    def run(path: str, seed: int, report: Path, junit: Path, extra: list[str]) -> int:
        iia = 0.6 + 0.01 * seed
        limit = {
            "test_id": "hypotheses/test_lb.py::test_limit",
            "where": "bracket [7.45, 9.95]",
            "status": "breaks" if seed < 2 else "inconclusive",
            "iia": iia,
            "iia_ci": [iia - 0.05, iia + 0.04],
            "n": 200,
            "noop": 0.5,
            "majority": 0.51,
            "random_rotation": 0.49,
            "task_accuracy": 0.9,
            "site": "block_output[layer=1, pos=last]",
        }
        report.write_text(json.dumps({"results": [_claim(0.83)], "limits": [limit]}))
        failure = "<failure message='not shown'/>" if seed == 2 else ""
        junit.write_text(
            "<testsuites><testsuite><testcase classname='hypotheses.test_lb' name='test_limit'>"
            f"{failure}</testcase></testsuite></testsuites>"
        )
        return 1 if failure else 0

    monkeypatch.setattr(stability, "_run_seed", run)
    assert stability.main(["--seeds", "3"]) == 1  # it did not break under seed 2
    out = capsys.readouterr().out
    assert "hypotheses/test_lb.py::test_limit [bracket [7.45, 9.95]]\n" in out
    assert (
        "breaks under 2 of 3 seeds  IIA 0.600..0.620  upper bound 0.640..0.660  no-op "
        "0.500..0.500  task 0.900..0.900  NOT SHOWN under {2: 'inconclusive'}"
    ) in out
    assert (
        "    seed 2 at block_output[layer=1, pos=last]: IIA 0.620 [0.570, 0.660] n=200, no-op "
        "0.500, majority 0.510, random rotation 0.490, task accuracy 0.900: inconclusive"
    ) in out
    failing = "hypotheses/test_lb.py::test_limit\n  failed under seeds [2]  FAILS UNDER SOME SEEDS"
    assert failing in out


def test_a_seed_whose_pytest_ran_no_test_stops_the_comparison(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # every seed stopped at setup (exit 4), and the script printed nothing and exited 0
    import json

    from das_assert import stability

    def run(path: str, seed: int, report: Path, junit: Path, extra: list[str]) -> int:
        stopped = {"exit_code": "USAGE_ERROR", "setup_error": "das_assert setup: no entry 'x'"}
        report.write_text(json.dumps({"results": [], "run": stopped}))
        return 4

    monkeypatch.setattr(stability, "_run_seed", run)
    assert stability.main(["--seeds", "2", "--", "--das-model-entry", "x"]) == 2
    assert (
        "seed 0: pytest exited 4 (USAGE_ERROR), so no seed is compared: das_assert setup: no "
        "entry 'x'. Run it alone: pytest hypotheses/ --das-seed=0 --das-model-entry x"
    ) in capsys.readouterr().err


def test_seeds_that_judged_no_claim_are_not_called_stable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from das_assert import stability

    def run(path: str, seed: int, report: Path, junit: Path, extra: list[str]) -> int:
        report.write_text(json.dumps({"results": []}))  # -- --collect-only: exit 0, nothing run
        junit.write_text("<testsuites><testsuite></testsuite></testsuites>")
        return 0

    monkeypatch.setattr(stability, "_run_seed", run)
    assert stability.main(["--seeds", "2"]) == 2
    err = capsys.readouterr().err
    assert "no claim, measured limit or fuzz variant was judged under seeds 0-1" in err


def _fuzz_example(status: str, *, after_failure: bool = False) -> dict:
    test = "hypotheses/test_rb.py::test_right_boundary_survives_prompt_variants"
    return {"test_id": test, "status": status, "after_failure": after_failure}


def test_a_fuzz_test_alone_is_compared_across_seeds(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # `-- -k survives` on a file with no measured limit exited 2, "nothing to compare", and a
    # fuzz test that passed under every seed was never named.
    import json

    from das_assert import stability

    drawn = {
        0: ["holds", "holds", "rejected: task accuracy 0.7", "inconclusive"],
        1: ["holds", "broken", "rejected: x cannot be built", "holds"],
        2: ["holds", "holds", "holds", "inconclusive"],
    }

    def run(path: str, seed: int, report: Path, junit: Path, extra: list[str]) -> int:
        examples = [_fuzz_example(status) for status in drawn[seed]]
        examples.append(_fuzz_example("broken", after_failure=True))  # shrinking: not counted
        report.write_text(json.dumps({"results": [], "robustness": {"examples": examples}}))
        failure = "<failure message='breaks'/>" if "broken" in drawn[seed] else ""
        junit.write_text(
            "<testsuites><testsuite><testcase classname='hypotheses.test_rb' "
            f"name='test_right_boundary_survives_prompt_variants'>{failure}</testcase>"
            "</testsuite></testsuites>"
        )
        return 1 if failure else 0

    monkeypatch.setattr(stability, "_run_seed", run)
    assert stability.main(["--seeds", "3", "--path", "hypotheses/test_rb.py"]) == 1
    assert capsys.readouterr().out == (
        "hypotheses/test_rb.py::test_right_boundary_survives_prompt_variants\n"
        "  fuzz variants per seed: holds 2-3, inconclusive 0-1, broken 0-1, rejected 0-1  "
        "failed under seeds [1]  FAILS UNDER SOME SEEDS\n"
    )


def test_a_variant_drawn_again_for_the_same_alignment_counts_once_per_seed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Hypothesis often draws a variant again; each draw was counted, as "inconclusive 3" for
    # one variant, where the robustness table counts variants.
    import json

    from das_assert import stability

    def drawn(variant: str, status: str, alignment: str = "a0") -> dict:
        where = {"claim": "right_boundary", "site": "s", "seed": 0, "pairs_asked": 400}
        return _fuzz_example(status) | where | {"variant": variant, "alignment": alignment}

    examples = [drawn("V", "inconclusive")] * 3 + [drawn("W", "holds"), drawn("W", "holds", "a1")]

    def run(path: str, seed: int, report: Path, junit: Path, extra: list[str]) -> int:
        report.write_text(json.dumps({"results": [], "robustness": {"examples": examples}}))
        junit.write_text("<testsuites><testsuite></testsuite></testsuites>")
        return 0

    monkeypatch.setattr(stability, "_run_seed", run)
    assert stability.main(["--seeds", "2", "--path", "hypotheses/test_rb.py"]) == 0
    assert "fuzz variants per seed: holds 2, inconclusive 1, broken 0, rejected 0" in (
        capsys.readouterr().out
    )


def test_breaks_that_fresh_pairs_did_not_confirm_are_counted_across_seeds(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from das_assert import stability

    unconfirmed = {0: 0, 1: 2, 2: 1}

    def run(path: str, seed: int, report: Path, junit: Path, extra: list[str]) -> int:
        examples = [_fuzz_example("holds")]
        examples += [
            _fuzz_example("inconclusive") | {"confirmation": {"status": "holds", "n": 400}}
        ] * unconfirmed[seed]
        report.write_text(json.dumps({"results": [], "robustness": {"examples": examples}}))
        junit.write_text("<testsuites><testsuite></testsuite></testsuites>")
        return 0

    monkeypatch.setattr(stability, "_run_seed", run)
    assert stability.main(["--seeds", "3", "--path", "hypotheses/test_rb.py"]) == 0
    assert capsys.readouterr().out == (
        "hypotheses/test_rb.py::test_right_boundary_survives_prompt_variants\n"
        "  fuzz variants per seed: holds 1, inconclusive 0-2, broken 0, rejected 0 (of the "
        "inconclusive, breaks fresh pairs did not confirm: 0-2)  passed under all 3 seeds\n"
    )


def test_a_seed_that_failed_to_collect_names_the_file_and_its_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # pytest's output was discarded, yet the message said "see its output"
    from das_assert import stability

    monkeypatch.chdir(tmp_path)  # its seed's pytest writes where it runs (.benchmarks/)
    (tmp_path / "test_broken.py").write_text("def (\n")
    assert stability.main(["--seeds", "1", "--path", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "test_broken.py (collect): SyntaxError: invalid syntax" in err, err
    assert "see its output" not in err


def test_a_seed_that_selected_no_test_says_what_pytest_said(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from das_assert import stability

    def run(path: str, seed: int, report: Path, junit: Path, extra: list[str]) -> int:
        report.write_text(json.dumps({"results": [], "run": {"setup_error": None}}))
        report.with_suffix(".log").write_text("\n==== 28 deselected in 1.31s ====\n\n")
        return 5

    monkeypatch.setattr(stability, "_run_seed", run)
    assert stability.main(["--seeds", "1", "--", "-k", "nothing"]) == 2
    assert "pytest said '28 deselected in 1.31s'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--das-seed=7"], "--das-seed"),
        (["--das-seed", "7"], "--das-seed"),
        (["--das-json=other.json"], "--das-json"),
        (["-x", "--junitxml=mine.xml"], "--junitxml"),
        (["--junit-xml", "mine.xml"], "--junit-xml"),
        (["-p", "no:das_assert"], "-p no:das_assert"),
        (["-pno:das_assert"], "-p no:das_assert"),
    ],
)
def test_a_pytest_argument_that_overrides_what_each_seed_sets_is_refused(
    extra: list[str],
    named: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a later --das-seed won: every "seed" ran as seed 7, and the claim was called stable; a
    # later --junitxml hid the tests that failed, and the run exited 0
    from das_assert import stability

    def run(*args: object) -> int:
        raise AssertionError("a seed ran")

    monkeypatch.setattr(stability, "_run_seed", run)
    with pytest.raises(SystemExit) as exit_:
        stability.main(["--seeds", "3", "--", *extra])
    assert exit_.value.code == 2
    assert f"{named} after --: this tool sets it for each seed" in capsys.readouterr().err


def test_other_pytest_arguments_are_passed_to_every_seed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # only their not being refused was tested: a command that dropped them ran every test
    # under `-- -k left` and every test of this file still passed
    import subprocess

    from das_assert import stability

    assert stability._options_it_sets(["-k", "left", "--das-cache=off", "-p", "xdist"]) is None
    assert stability._options_it_sets(["--das-json-extra"]) is None  # another option's name
    commands: list[list[str]] = []

    def run(command: list[str], **options: object) -> subprocess.CompletedProcess[str]:
        commands.append(command)
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(stability.subprocess, "run", run)
    extra = ["-k", "left", "--das-cache=off"]
    for seed in (0, 3):
        stability._run_seed("hypotheses/", seed, tmp_path / "r.json", tmp_path / "j.xml", extra)
    assert [command[-3:] for command in commands] == [extra, extra]
    assert [c for command in commands for c in command if c.startswith("--das-seed=")] == [
        "--das-seed=0",
        "--das-seed=3",
    ]


def test_a_seed_without_its_junit_xml_stops_the_comparison(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # its failed tests were read as none: a test that failed under a seed vanished, exit 0
    import json

    from das_assert import stability

    def run(path: str, seed: int, report: Path, junit: Path, extra: list[str]) -> int:
        report.write_text(json.dumps({"results": [_claim(0.83)]}))
        return 1

    monkeypatch.setattr(stability, "_run_seed", run)
    assert stability.main(["--seeds", "2"]) == 2
    err = capsys.readouterr().err
    assert "seed 0: pytest exited 1 but wrote no JUnit XML " in err
    assert "so its failures cannot be read and no seed is compared" in err


def test_an_abbreviated_option_is_not_taken_for_another(capsys: pytest.CaptureFixture[str]) -> None:
    # --seed 7 was read as --seeds 7: seven runs at seeds 0-6
    from das_assert import stability

    with pytest.raises(SystemExit) as exit_:
        stability.main(["--seed", "7"])
    assert exit_.value.code == 2
    assert "unrecognized arguments: --seed\n" in capsys.readouterr().err
