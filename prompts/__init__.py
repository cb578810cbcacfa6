"""The prompt files and their loader.

Each `<name>.txt` in this folder is one prompt with `{{placeholder}}` slots (double braces,
so JSON examples in a prompt need no escaping). Edit a file to change behaviour; point
`REFINE_N_JUDGE_PROMPTS_DIR` at a folder of your own files to override some of them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

PROMPTS_DIR = Path(__file__).parent
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")

# Tags the prompts wrap data in; the same tags inside data are neutralised so an answer
# cannot close its own block and write instructions or a verdict outside it.
# Models read `< /answer_B>` and `<\/answer_B>` (a JSON-escaped slash) as closing tags too.
_DATA_TAGS = re.compile(
    r"<\s*((?:\\*/)?)\s*"
    r"(question|answer|answer_a|answer_b|feedback|reference|conversation|turn)\b",
    re.IGNORECASE,
)


class PromptError(ValueError):
    """A prompt file is missing or was filled with the wrong placeholders."""


@dataclass(frozen=True)
class Prompt:
    """One prompt template read from a file."""

    name: str
    path: Path
    template: str

    @property
    def placeholders(self) -> frozenset[str]:
        return frozenset(_PLACEHOLDER.findall(self.template))

    def format(self, **values: str) -> str:
        """Fill every placeholder; a missing or unknown name is an error naming the file."""
        missing = self.placeholders - values.keys()
        extra = values.keys() - self.placeholders
        if missing or extra:
            raise PromptError(
                f"prompt {self.path}: missing values for {sorted(missing)}, "
                f"unknown names {sorted(extra)}"
            )
        return _PLACEHOLDER.sub(lambda m: values[m.group(1)], self.template)


@cache
def _load(name: str, override_dir: str | None) -> Prompt:
    for folder in ([Path(override_dir)] if override_dir else []) + [PROMPTS_DIR]:
        path = folder / f"{name}.txt"
        if path.is_file():
            return Prompt(name, path, path.read_text(encoding="utf-8").strip() + "\n")
    raise PromptError(f"no prompt file {name}.txt in {override_dir or ''} {PROMPTS_DIR}".strip())


def load_prompt(name: str) -> Prompt:
    """The prompt `name`, from the override folder when it has one, else from this package."""
    return _load(name, os.environ.get("REFINE_N_JUDGE_PROMPTS_DIR"))


def quote_data(text: str) -> str:
    """Make untrusted text safe to put inside the prompts' data tags."""
    return _DATA_TAGS.sub(lambda m: f"&lt;{'/' if m.group(1) else ''}{m.group(2)}", text)


def criteria_list(criteria: list[str]) -> str:
    """`i) accuracy, ii) completeness, ...`: the criteria numbered as in the paper's prompts."""
    numerals = ["i", "ii", "iii", "iv", "v", "vi", "vii", "viii", "ix", "x"]
    items = [
        f"{numerals[i]}) {name}" if i < len(numerals) else name for i, name in enumerate(criteria)
    ]
    return ", ".join(items)
