"""Dataset curation: run Refine-n-Judge over a whole dataset, resumably, and export
chains, SFT rows, DPO pairs, failures and a run report (`refine-n-judge curate`).

`curate(options)` runs the command; it is imported on first use, so that importing the
errors (as the CLI does for every subcommand) does not load the graph.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from refine_n_judge.curate.errors import (
    CurateError,
    InputRowError,
    OutputCorruptError,
    SettingsError,
    SettingsMismatchError,
)

if TYPE_CHECKING:
    from refine_n_judge.curate.command import curate
    from refine_n_judge.curate.options import CurateOptions

__all__ = [
    "CurateError",
    "CurateOptions",
    "InputRowError",
    "OutputCorruptError",
    "SettingsError",
    "SettingsMismatchError",
    "curate",
]


def __getattr__(name: str) -> Any:
    if name == "curate":
        from refine_n_judge.curate.command import curate

        return curate
    if name == "CurateOptions":
        from refine_n_judge.curate.options import CurateOptions

        return CurateOptions
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
