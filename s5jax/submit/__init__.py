"""`s5jax submit`: the DCASE 2026 Task 4 submission package, laid out and checked as the official
writer (the baseline's `generate_waveform.sh`) does.

    D/A_F_task4_K/
      eval_out/<soundscape>_<slot>_<label>.wav   one mono 32 kHz 16-bit PCM stem per non-silent slot
      eval_results.json           {nparams, probabilities: [{soundscape, estimate: [{filename, label,
                                   probability}]}], config}
      dev_set_test_results.json   {"CAPI-SDRi": {"mean"}, "label_metrics": {accuracy_mix, accuracy_src},
                                   nparams, details: [{soundscape, ref_labels, est_labels, probabilities,
                                   metrics: [{metric, value}]}], config}
    D/A_F_task4_K.zip             that folder at the zip's root

Built on `s5jax.infer.run_infer`: the dev-test set is inferred and scored in a work folder
`D/.s5jax-submit/A_F_task4_K/dev` (float stems, so the scores are those of the unquantised stems, as
the official evaluator computes them), the evaluation set in `.../eval`; both resume like `s5jax infer`.
The package is then assembled in `.../stage`, checked, and renamed into place; the zip is written in
the work folder, checked, and renamed into place last. A killed run picks up where it stopped.

`check_package(path)` runs the official writer's checks (and a few more that its readers rely on) on
a package folder or zip made by any tool; each failure is one line naming the file.

    writer.py  names of the layout, dev_set_test_results.json, 16-bit stems, the zip
    check.py   check_package (wav headers through s5jax.audio.wav_chunks)
    run.py     run_submit: infer both sets, stage, check, publish
"""
from .check import PackageSummary, check_package, check_soundscape_names, stem_soundscape
from .run import run_submit
from .writer import (CAPI, DEV_JSON, EVAL_JSON, EVAL_OUT, LABEL_METRICS, WORK, PackageError, dev_results,
                     package_name, write_stems_pcm16, write_zip)

__all__ = ["CAPI", "DEV_JSON", "EVAL_JSON", "EVAL_OUT", "LABEL_METRICS", "WORK", "PackageError", "PackageSummary",
           "check_package", "check_soundscape_names", "dev_results", "package_name", "run_submit",
           "stem_soundscape", "write_stems_pcm16", "write_zip"]
