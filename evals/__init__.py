"""LangSmith evaluation runs of Refine-n-Judge: the paper's analyses and its baselines.

`python -m evals --help` lists the experiments; `evals.runner.run_experiment` runs one from
Python with your own model objects (see `evals.setup.EvalSetup`); every evaluator in
`evals.evaluators` is a plain function usable on its own.
"""
