"""Dataset curation: run Refine-n-Judge over a whole dataset, resumably, and export
chains, SFT rows, DPO pairs, failures and a run report (`refine-n-judge curate`).

`curate(options)` runs the command (`command`): the checks, then one of the two engines
(`local_engine`, `ray_engine`) through the run lifecycle they share (`lifecycle`).
"""

from refine_n_judge.curate.command import curate
from refine_n_judge.curate.errors import (
    CurateError,
    InputRowError,
    OutputCorruptError,
    SettingsError,
    SettingsMismatchError,
)
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
