"""`refine-n-judge curate`: check everything, then hand the run to an engine.

Order matters: every check that can refuse the run (inputs, settings, models, prices, the
cache path, the output directory and its lock, the endpoint, a settings mismatch with the
directory's run.json, the input against the directory's inputs.json) happens before any
model call and before anything in the directory changes. The directory's lock is held to
the end, whichever engine runs (`local_engine`, or `ray_engine` for `--engine ray`; what
they share is `lifecycle`).
"""

from __future__ import annotations

from refine_n_judge.curate.cache import check_cache_path
from refine_n_judge.curate.checks import check_models, check_resume_settings, resolve_inputs
from refine_n_judge.curate.endpoint_check import check_endpoint
from refine_n_judge.curate.folder_lock import FolderLock
from refine_n_judge.curate.input_record import apply_input, check_input
from refine_n_judge.curate.lifecycle import CheckedRun
from refine_n_judge.curate.local_engine import curate_locally
from refine_n_judge.curate.options import CurateOptions
from refine_n_judge.curate.outputs import OutputDir
from refine_n_judge.curate.pricing import PriceTable
from refine_n_judge.curate.progress import Reporter
from refine_n_judge.curate.ray_engine import curate_on_ray


def curate(options: CurateOptions, reporter: Reporter | None = None) -> int:
    """Run the `curate` command with validated options; the process exit code.

    Raises:
        SettingsError: the run cannot start (nothing was called or changed).
    """
    files = resolve_inputs(options.inputs, options.input_format)
    check_models(options.context)
    prices = PriceTable.load(options.prices)
    if options.cache is not None:
        check_cache_path(options.cache)
    outputs = OutputDir(options.out)
    outputs.create()
    with FolderLock(outputs.path):
        context = check_endpoint(options.context, uses_default_model=options.uses_default_model)
        options = options.model_copy(update={"context": context})
        settings = options.recorded_settings()
        previous, changed = check_resume_settings(outputs, settings.compared, force=options.force)
        inputs = check_input(
            outputs, files, fields=options.fields, max_chars=options.max_chars, force=options.force
        )
        replaced = apply_input(outputs, inputs)
        if inputs.differs:
            changed = [*changed, f"input: {inputs.describe()} ({replaced} result(s) to redo)"]
        run = CheckedRun(files, outputs, prices, settings, previous, changed)
        if options.engine == "ray":
            return curate_on_ray(options, run, reporter)
        return curate_locally(options, run, reporter)
