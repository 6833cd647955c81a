"""Verdict stability: run the hypothesis files under several seeds and compare the verdicts.

    python -m das_assert.stability --seeds 10 [-- extra pytest args]

Each seed reruns ``pytest hypotheses/`` with ``--das-seed=S`` (new data, initialisation and
training) and its JSON report. The table lists, per claim, the verdict under every seed and the
IIA range; a claim whose verdict differs between seeds is flagged, with its distance from the
threshold. Exit code 1 if a claim at least ``--margin`` away from its threshold flipped.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--margin", type=float, default=0.05)
    parser.add_argument("--path", default="hypotheses/")
    parser.add_argument("pytest_args", nargs="*")
    args = parser.parse_args(argv)
    verdicts: dict[str, dict[int, tuple[str, float, float]]] = defaultdict(dict)
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            report = Path(tmp) / f"seed{seed}.json"
            command = [
                sys.executable,
                "-m",
                "pytest",
                args.path,
                "-q",
                "-p",
                "no:cacheprovider",
                f"--das-seed={seed}",
                f"--das-json={report}",
                *args.pytest_args,
            ]
            subprocess.run(command, check=False, stdout=subprocess.DEVNULL)
            if not report.is_file():
                print(f"seed {seed}: no report written", file=sys.stderr)
                return 2
            for record in json.loads(report.read_text())["results"]:
                key = f"{record['test_id']}::{record['claim']}"
                verdicts[key][seed] = (record["verdict"], record["iia"], record["threshold"])
    unstable_far = 0
    for key, by_seed in sorted(verdicts.items()):
        outcomes = {v[0] for v in by_seed.values()}
        iias = [v[1] for v in by_seed.values()]
        threshold = next(iter(by_seed.values()))[2]
        distance = min(abs(i - threshold) for i in iias)
        flag = ""
        if len(outcomes) > 1:
            flag = "FLIPS" + (" (far from threshold!)" if distance >= args.margin else "")
            unstable_far += distance >= args.margin
        print(
            f"{key}\n  verdicts {sorted(outcomes)}  IIA {min(iias):.3f}..{max(iias):.3f}  "
            f"threshold {threshold}  closest {distance:.3f}  {flag}"
        )
    return 1 if unstable_far else 0


if __name__ == "__main__":
    raise SystemExit(main())
