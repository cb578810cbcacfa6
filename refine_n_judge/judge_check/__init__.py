"""`refine-n-judge judge-check`: measure the judge against people's labels before a run.

Each labelled pair goes through the graph's own judge node in both directions (the better
answer as the refinement of the worse, and the other way round), with the same flags as
`curate`; the report gives better/worse accepted, precision, agreement with people,
reliability, length bias, cost, and the calibrated margin for a target precision.
"""

from refine_n_judge.judge_check.command import judge_check
from refine_n_judge.judge_check.options import JudgeCheckOptions

__all__ = ["JudgeCheckOptions", "judge_check"]
