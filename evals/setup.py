"""What an evaluation run is made of: the pipeline settings, the models, the options, and
the pipelines themselves (Refine-n-Judge and the baselines) as async callables."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import BaseChatModel
from pydantic import BaseModel, Field

from evals.judging import EvalJudge
from graph.baselines import build_best_of_n, build_refine_only, build_zero_shot
from graph.builder import build_graph
from nodes.context import Context
from nodes.models import ModelProvider, NamedModel, build_chat_model, model_display_name
from nodes.state import ChainState

Pipeline = Callable[[dict[str, Any]], Awaitable[ChainState]]
"""inputs (`id`, `question`, `answer`) -> the pipeline's final state."""


class ExperimentOptions(BaseModel):
    """Experiment knobs (recorded in every summary)."""

    budget: int = Field(default=3, ge=1, le=20, description="Iterations for judge-ablation.")
    repeats: int = Field(default=10, ge=1, le=50, description="Re-judgments per pair (5.4).")
    n: int = Field(default=10, ge=2, le=50, description="Samples for best-of-N (5.1).")
    seed: int = Field(default=0, description="Seed of the random positions in consistency.")
    matrix: bool = Field(
        default=False, description="judge-ablation: also judge every pair in each chain (fig 5)."
    )


@dataclass
class EvalSetup:
    """Pipeline settings and models for one evaluation run.

    Models given as objects (Python, tests) win over the context's model names (CLI). The
    evaluation judge is `eval_judge` (object) or `eval_judge_name`; with neither, it is the
    pipeline's first judge (the refiner when no judge is set), which is what the
    consistency experiment (re-judging) wants and a biased choice for the others.
    """

    context: Context = field(default_factory=Context)
    refiner: BaseChatModel | None = None
    judges: Sequence[BaseChatModel] | None = None
    alternate_refiner: BaseChatModel | None = None
    eval_judge: BaseChatModel | None = None
    eval_judge_name: str | None = None
    concurrency: int = 1
    options: ExperimentOptions = field(default_factory=ExperimentOptions)

    @property
    def independent_eval_judge(self) -> bool:
        """True when the evaluation judge was chosen apart from the pipeline's judge."""
        return self.eval_judge is not None or self.eval_judge_name is not None

    def eval_judge_model(self) -> NamedModel:
        """The evaluation judge as a named model (built on first use)."""
        ctx = self.context
        if self.eval_judge is not None:
            return NamedModel(model_display_name(self.eval_judge), self.eval_judge)
        if self.eval_judge_name is not None:
            return build_chat_model(
                self.eval_judge_name,
                base_url=ctx.base_url,
                temperature=ctx.judge_temperature,
                max_tokens=ctx.max_tokens,
                timeout=ctx.request_timeout,
            )
        models = ModelProvider(refiner=self.refiner, judges=self.judges)
        return models.get_judges(ctx)[0]

    def make_eval_judge(self) -> EvalJudge:
        """A fresh evaluation judge for one run (its model is resolved lazily)."""
        return EvalJudge(self.eval_judge_model, self.context, max_concurrent=self.concurrency)

    def eval_judge_label(self) -> str:
        """How summaries name the evaluation judge, without building it."""
        if self.eval_judge is not None:
            return model_display_name(self.eval_judge)
        if self.eval_judge_name is not None:
            return self.eval_judge_name
        return "pipeline judge"

    # ------------------------------------------------------------------ pipelines

    def refine_n_judge(self, *, max_iterations: int | None = None) -> Pipeline:
        """Refine-n-Judge from the item's initial answer."""
        graph = build_graph(
            refiner=self.refiner, judges=self.judges, alternate_refiner=self.alternate_refiner
        )
        ctx = self.context
        if max_iterations is not None:
            ctx = ctx.model_copy(update={"max_iterations": max_iterations})
        return _pipeline(graph, ctx, keep_answer=True)

    def refine_only(self, *, iterations: int) -> Pipeline:
        """Self-Refine from the item's initial answer, `iterations` refinements, no judge."""
        graph = build_refine_only(refiner=self.refiner, iterations=iterations)
        return _pipeline(graph, self.context, keep_answer=True)

    def zero_shot(self) -> Pipeline:
        """One fresh answer from the question alone."""
        return _pipeline(build_zero_shot(refiner=self.refiner), self.context, keep_answer=False)

    def best_of_n(self) -> Pipeline:
        """N fresh answers, the judge's pick."""
        graph = build_best_of_n(refiner=self.refiner, judges=self.judges, n=self.options.n)
        return _pipeline(graph, self.context, keep_answer=False)

    def settings(self) -> dict[str, Any]:
        """Plain settings for summaries and LangSmith experiment metadata."""
        models = {
            "refiner": model_display_name(self.refiner) if self.refiner else self.context.refiner,
            "judges": [model_display_name(j) for j in self.judges]
            if self.judges
            else self.context.judges,
            "eval_judge": self.eval_judge_label(),
        }
        return {
            "context": self.context.model_dump(mode="json", exclude_defaults=True),
            "models": models,
            "options": self.options.model_dump(),
            "concurrency": self.concurrency,
        }


def _pipeline(graph: Any, ctx: Context, *, keep_answer: bool) -> Pipeline:
    async def run(inputs: dict[str, Any]) -> ChainState:
        payload = {"id": inputs.get("id"), "question": inputs["question"]}
        if keep_answer and inputs.get("answer"):
            payload["answer"] = inputs["answer"]
        return ChainState.model_validate(await graph.ainvoke(payload, context=ctx))

    return run
