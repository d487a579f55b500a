"""The graded assignment (assignments/option_subspace/): Otter Assign builds it, its tests tell
right from wrong, the reference solution scores full marks and a blank submission zero.

The fast tests run ``otter assign`` (without executing anything), check that the student version
carries no solution and only the public tests, and run every question's test file in-process
against the reference functions, a blank starter and plausible wrong answers. The ``model`` test
grades the solution and the blank student notebook end to end with Otter (``otter run``'s
in-process API), which executes them on the real model: 8 facts, one pruning (the result cache
serves the repeats).

Otter Grader is the optional extra ``grading`` (``pip install -e ".[grading]"``); the tests skip,
saying so, where it is not installed.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch

otter = pytest.importorskip("otter", reason='Otter Grader is not installed: pip install -e ".[grading]"')

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "assignments" / "option_subspace"
MASTER = HERE / "option_subspace.ipynb"
NAME = "option_subspace.ipynb"
POINTS = {"q1": 3, "q2": 3, "q3": 3}          # autograded; q4 (2 points) is read by a person


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    res = subprocess.run([sys.executable, "-m", "otter", "assign", "--no-run-tests", str(MASTER), str(out)],
                         capture_output=True, text=True, cwd=out)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    return out


def _test_file(path: Path):
    from otter.test_files import ExceptionTestFile

    return ExceptionTestFile.from_file(str(path))


def _reference():
    """kl_full and kl_options as the master notebook defines them (its solution cells)."""
    env = {"torch": torch}
    for cell in nbformat.read(MASTER, as_version=4).cells:
        if cell.cell_type == "code" and cell.source.startswith(("def kl_full", "def kl_options")):
            exec(compile(cell.source, "master", "exec"), env)
    return env["kl_full"], env["kl_options"]


def _score(test_file: Path, **env) -> tuple[float, float]:
    tf = _test_file(test_file)
    tf.run(env)
    return tf.score, tf.possible


# ----------------------------------------------------------------------------- plausible wrong answers

def _reversed_kl(z, z_pruned, T=1.0):        # KL(p' || p): pruned first
    lq = torch.log_softmax(z.double() / T, -1)
    lp = torch.log_softmax(z_pruned.double() / T, -1)
    return (lp.exp() * (lp - lq)).sum(-1)


def _naive_kl(z, z_pruned, T=1.0):           # softmax, then log: overflows / log(0) for large logits
    p = torch.exp(z.double() / T) / torch.exp(z.double() / T).sum(-1, keepdim=True)
    q = torch.exp(z_pruned.double() / T) / torch.exp(z_pruned.double() / T).sum(-1, keepdim=True)
    return (p * (p.log() - q.log())).sum(-1)


def _no_temperature(z, z_pruned, T=1.0):
    return _reversed_kl(z_pruned, z)


def _unnormalised_options(z, z_pruned, option_ids, T=1.0):   # restrict p, but do not renormalise
    idx = torch.as_tensor(option_ids, dtype=torch.long)
    lp = torch.log_softmax(z.double() / T, -1).gather(-1, idx)
    lq = torch.log_softmax(z_pruned.double() / T, -1).gather(-1, idx)
    return (lp.exp() * (lp - lq)).sum(-1)


def _first_item_options(z, z_pruned, option_ids, T=1.0):     # every item read at item 0's options
    idx = torch.as_tensor(option_ids, dtype=torch.long)[0]
    return _reference()[0](z[..., idx], z_pruned[..., idx], T)


def _blank(*args, **kwargs):
    return None                                  # the starter's body is `...`


# ----------------------------------------------------------------------------- tests

def test_master_notebook_is_paired_and_clean():
    py = (HERE / "option_subspace.py").read_text()
    nb = nbformat.read(MASTER, as_version=4)
    for cell in nb.cells:
        first = cell.source.splitlines()[0] if cell.source else ""
        assert first.lstrip("# ") in py, f"option_subspace.py and .ipynb differ (jupytext --sync): {first!r}"
        if cell.cell_type == "code":
            assert not cell.get("outputs") and cell.get("execution_count") is None, "store it without outputs"


def test_student_version_has_no_solutions(dist):
    student = nbformat.read(dist / "student" / NAME, as_version=4)
    text = "\n".join(c.source for c in student.cells)
    for leak in ("log_softmax(z.double()", "gather(-1, idx)", "float(np.median(kl_full",
                 "z_pruned = tasks.next_token_logits", "a good answer says", "BEGIN SOLUTION"):
        assert leak not in text, f"the student notebook shows {leak!r}"
    assert "median_kl_full = ..." in text and "z_pruned = ..." in text
    code = "\n".join(c.source for c in student.cells if c.cell_type == "code")
    assert code.count('grader.check("q') == 3 and "grader.check_all()" in code
    assert "_Type your answer here" in text, "question 4 has an answer cell"
    assert not any(c.get("outputs") for c in student.cells if c.cell_type == "code")


def test_every_question_has_public_and_hidden_tests(dist):
    for q, points in POINTS.items():
        public = _test_file(dist / "student" / "tests" / f"{q}.py")
        full = _test_file(dist / "autograder" / "tests" / f"{q}.py")
        assert public.test_cases and all(not tc.hidden for tc in public.test_cases), q
        assert any(tc.hidden for tc in full.test_cases) and any(not tc.hidden for tc in full.test_cases), q
        assert sum(tc.points for tc in full.test_cases) == points, q
    config = json.loads((dist / "autograder" / "otter_config.json").read_text())
    assert config["assignment_name"] == "option_subspace"
    assert list((dist / "autograder").glob("*.zip")), "the autograder zip for otter run / Gradescope"


def test_reference_functions_score_full_marks(dist):
    kl_full, kl_options = _reference()
    assert _score(dist / "autograder" / "tests" / "q1.py", kl_full=kl_full) == (3, 3)
    assert _score(dist / "autograder" / "tests" / "q2.py", kl_options=kl_options) == (3, 3)


def test_blank_starters_score_zero(dist):
    assert _score(dist / "autograder" / "tests" / "q1.py", kl_full=_blank)[0] == 0
    assert _score(dist / "autograder" / "tests" / "q2.py", kl_options=_blank)[0] == 0
    assert _score(dist / "autograder" / "tests" / "q3.py", median_kl_full=..., median_kl_options=...)[0] == 0


@pytest.mark.parametrize("wrong", [_reversed_kl, _naive_kl, _no_temperature])
def test_wrong_kl_loses_hidden_points(dist, wrong):
    score, possible = _score(dist / "autograder" / "tests" / "q1.py", kl_full=wrong)
    assert 0 < score < possible, f"{wrong.__name__} scored {score}/{possible}"
    assert _score(dist / "student" / "tests" / "q1.py", kl_full=wrong)[0] == 1, "it passes the public test"


@pytest.mark.parametrize("wrong", [_unnormalised_options, _first_item_options])
def test_wrong_option_kl_loses_hidden_points(dist, wrong):
    score, possible = _score(dist / "autograder" / "tests" / "q2.py", kl_options=wrong)
    assert 0 < score < possible, f"{wrong.__name__} scored {score}/{possible}"


@pytest.mark.model
def test_solution_scores_full_marks_and_blank_scores_zero(dist):
    """End to end, the way an instructor grades: Otter executes each notebook on the real model."""
    from otter.api import grade_submission

    autograder = next((dist / "autograder").glob("*.zip"))
    solution = grade_submission(str(dist / "autograder" / NAME), str(autograder), quiet=True)
    blank = grade_submission(str(dist / "student" / NAME), str(autograder), quiet=True)
    got = {q: solution.get_result(q).score for q in POINTS}
    assert got == POINTS, f"the reference solution scored {got}"
    assert solution.total == solution.possible == sum(POINTS.values())
    assert blank.total == 0 and blank.possible == sum(POINTS.values()), \
        {q: blank.get_result(q).score for q in POINTS}
