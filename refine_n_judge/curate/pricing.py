"""Token prices for the cost line of run.json.

Prices come from a `--prices` JSON file when given, else from the OpenAI price table that
ships with langchain-community (`langchain_community.callbacks.openai_info`). A model with
no known price has no cost (null), never a guessed one.

The prices file maps a model name (as recorded in the chains, e.g. `openai:gpt-4o-mini`
or `my-vllm-model`) to US dollars per million tokens::

    {"my-vllm-model": {"input": 0.10, "output": 0.40}}
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # the package announces its sunset
    from langchain_community.callbacks import openai_info

from refine_n_judge.curate.errors import SettingsError


class Price(BaseModel):
    """US dollars per million input and output tokens."""

    model_config = ConfigDict(extra="forbid")

    input: float = Field(ge=0)
    output: float = Field(ge=0)


class PriceTable(BaseModel):
    """Prices by model name, plus where each came from."""

    prices: dict[str, Price] = Field(default_factory=dict)
    source: str = "langchain_community.callbacks.openai_info"

    @classmethod
    def load(cls, path: Path | None) -> PriceTable:
        """The table of a `--prices` file (or an empty one)."""
        if path is None:
            return cls()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            prices = {str(name): Price.model_validate(value) for name, value in data.items()}
        except OSError as exc:
            raise SettingsError(f"cannot read --prices {path}: {exc}") from exc
        except (json.JSONDecodeError, AttributeError, ValidationError) as exc:
            raise SettingsError(
                f"--prices {path} must be a JSON object like "
                '{"model": {"input": 0.15, "output": 0.6}} (USD per million tokens): '
                f"{str(exc).splitlines()[0]}"
            ) from exc
        return cls(prices=prices, source=f"{path} (then openai_info)")

    def price_of(self, model: str) -> Price | None:
        """The model's price, from the file, else from OpenAI's table, else None."""
        if model in self.prices:
            return self.prices[model]
        return openai_price(model)

    def cost(self, model: str, input_tokens: int, output_tokens: int) -> float | None:
        """Dollars for these tokens, or None when the model's price is unknown."""
        price = self.price_of(model)
        if price is None:
            return None
        return (input_tokens * price.input + output_tokens * price.output) / 1_000_000


def openai_price(model: str) -> Price | None:
    """OpenAI's list price of `model` (`openai:` prefix allowed), or None if not listed."""
    name = model.removeprefix("openai:")
    try:
        per_1k_in = openai_info.get_openai_token_cost_for_model(name, 1000)
        per_1k_out = openai_info.get_openai_token_cost_for_model(
            name, 1000, token_type=openai_info.TokenType.COMPLETION
        )
    except ValueError:
        return None
    return Price(input=per_1k_in * 1000, output=per_1k_out * 1000)
