"""The fuzz campaigns of bench/ (issue 23), fast: a few hundred cases of each
(ONNX mutation, binary mutation below the checksums, files through every
loader) and every input that ever crashed or failed uncleanly
(tests/data/fuzz_regressions/<campaign>/), each in worker processes. Every
case must be accepted or rejected with a named error: no crash, no hang, no
other exception. The runner itself is tested on a target that crashes and
hangs on purpose."""
from pathlib import Path

import pytest

from tests.helpers.fuzzing import Campaign

REGRESSIONS = Path(__file__).parent / "data" / "fuzz_regressions"
FAST_CASES = {"onnx": 300, "binary": 300, "files": 300}
SEED = 23


@pytest.mark.parametrize("campaign", sorted(FAST_CASES))
def test_fast_campaign_and_regressions(campaign, tmp_path):
    kept = sorted(str(p) for p in (REGRESSIONS / campaign).glob("*")) if (REGRESSIONS / campaign).is_dir() else []
    jobs = [("generate", SEED, i) for i in range(FAST_CASES[campaign])] + [("file", p) for p in kept]
    report = Campaign(f"tests.helpers.fuzz_{campaign}", tmp_path, workers=2, timeout=60).run(jobs)
    summary = "\n".join(report.lines())
    assert report.cases == len(jobs), summary
    assert report.clean, summary
    assert report.accepted and report.rejected, summary  # the mutations reach past the first check, not past all


def test_runner_counts_crashes_and_hangs_and_keeps_their_inputs(tmp_path):
    cases = tmp_path / "cases"
    cases.mkdir()
    for kind in ("accepted", "rejected", "unclean", "crash", "hang", "accepted"):
        (cases / f"{kind}-{len(list(cases.iterdir()))}.txt").write_text(kind)
    out = tmp_path / "out"
    report = Campaign("tests.helpers.fuzz_canary", out, workers=2, timeout=2).run_files(sorted(cases.iterdir()))
    assert (report.cases, report.accepted, dict(report.rejected), dict(report.unclean)) == \
        (6, 2, {"TesseraError": 1}, {"KeyError": 1})
    assert len(report.crashes) == len(report.hangs) == 1
    assert [p.name for p in (out / "crashes").glob("*.txt") if "fault" not in p.name] == ["crash-3.txt"]
    assert "Fatal Python error" in (out / "crashes" / "crash-3.txt.fault.txt").read_text()
    assert [p.name for p in (out / "hangs").iterdir()] == ["hang-4.txt"]
    assert [p.name for p in (out / "unclean" / "KeyError").iterdir()] == ["unclean-2.txt"]
