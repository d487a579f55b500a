"""Every exercise check passes its reference solution and fails the plausible wrong answers its
module lists (``WRONG = {name: [wrong_function, ...]}`` in helpers/solutions/nbXX.py); a starter
prints "not attempted" and returns None."""
import importlib

import pytest

from helpers import checks

EXERCISES = checks.load_all()


def _solution(ex):
    mod, _, fn = ex.solution.rpartition(".")
    return getattr(importlib.import_module(mod), fn), importlib.import_module(mod)


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_check_passes_the_solution_and_fails_wrong_answers(name, capsys):
    ex = EXERCISES[name]
    solution, module = _solution(ex)
    assert ex.check(solution) is True, capsys.readouterr().out
    wrong = getattr(module, "WRONG", {}).get(name, [])
    assert wrong, f"{ex.solution}: list at least one plausible wrong answer in WRONG[{name!r}]"
    for w in wrong:
        assert ex.check(w) is False, f"{name} accepted the wrong answer {w.__name__}"


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_starter_is_not_attempted(name, capsys):
    def starter(*args, **kwargs):
        raise NotImplementedError

    def dots(*args, **kwargs):
        ...

    assert EXERCISES[name].check(starter) is None
    assert EXERCISES[name].check(dots) is None
    assert "not attempted" in capsys.readouterr().out


def test_exercises_are_documented():
    for ex in EXERCISES.values():
        assert 1 <= ex.difficulty <= 3 and 1 <= ex.importance <= 3 and ex.minutes > 0, ex
        assert ex.title and ex.notebook.isdigit(), ex
