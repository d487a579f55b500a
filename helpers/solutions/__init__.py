"""Reference solutions of the exercises, one module per notebook (``helpers.solutions.nb04``, ...).

Kept outside the notebooks on purpose: try the exercise first, then compare. The tests run every
check against these (they must pass) and against plausible wrong answers (they must fail).
"""
