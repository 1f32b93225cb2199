"""``python -m mllm_ood run``: execute the notebooks in order with papermill (called by run_all.sh).

For each ``notebooks/NN_name.ipynb`` (sorted), parameters are read from ``params/<profile>/NN_name.yaml``;
``--smoke`` replaces the values named in the file's ``smoke:`` mapping (the smoke run's sizes) and adds
``SMOKE: true``, ``-p KEY VALUE`` overrides one value (in smoke runs too). Before anything runs:

* every key (YAML, its ``smoke:`` mapping, or ``-p``) must be a parameter the notebook declares (a
  misspelling is refused);
* every notebook's cells up to its validation cell (imports, parameters, the injected values,
  ``check_parameters``) run in this process, so a bad value in the last notebook stops the run before the
  first one computes anything. Under ``--smoke`` both sets are checked: the full-size values (what the
  same command without ``--smoke`` would run) and the smoke values.

Then the run takes a lock on its folder ``runs/<profile>[-smoke]/`` (and on ``figures/``): a second run
into the same folder is refused with "another run is writing here". Notebooks execute in order, up to
``--jobs`` at once (default: one per core, each kernel computing on one thread; the paper profile one at
a time, since each of its notebooks loads a hub MLLM onto the one GPU), except
``00_embedded_model``, which runs first, and alone when it may train the model the others load (with
``--retrain``, or when its MODEL_DIR holds no checkpoint; loading the committed one it runs beside them), and
``04_emi_bound``, ``02_hypotheses`` and ``03_in_context_learning``, the longest, which start next, longest
first, so that the short ones fill the cores at the end, and
``05_claims_ledger``, which starts last, once every other notebook has finished and published; after a
failure nothing new starts, and Ctrl-C or SIGTERM stops every running notebook. Each notebook executes into
``<run>/running/<name>/`` (executed copy, log, figures); only when it succeeds are its figures moved into
``figures/`` and its executed copy, HTML and log into the run folder, so a failed or interrupted notebook
leaves the previous good outputs in place; its own outputs go to ``<run>/failed/<name>/``. The run
ends with a summary table, also written to ``<run>/summary.txt``.

Profiles: ``embedded`` runs every notebook; ``paper`` runs notebooks 01-04 (the 00 notebooks build and
train the embedded model, which the paper profile does not use). A planned notebook without its
``params/<profile>/<name>.yaml`` is refused (it would otherwise run the embedded defaults and file them
under the paper profile's folder).

``--standin`` (paper profile: a dry run, offline, on CPU): every hub model a parameter names is replaced
by its shape-faithful stand-in (:func:`mllm_ood.mllm.standins.standin_model`), every ``hub:`` dataset is read
from stand-in copies in the card's schema (:func:`mllm_ood.data.hub.make_standin_dataset`, found through
``$MLLM_OOD_HUB_MIRROR``), paper A's CLIP probe model by a tiny CLIP of the same shapes, and notebook 04's
hub embedders (XLM-R, CLIP ViT-B/32) by tiny random stand-ins in the same formats. The substitutions
are listed in the logs and summary; outputs go to ``runs/<profile>-standin[-smoke]/`` and its
``figures/``, never to ``figures/``. Before anything runs, a few-shot notebook whose demonstrations and
query would not fit the model's context is refused, naming the largest shot count that fits.
"""

from .cli import add_parser, run
from .execution import (CELL_TIMEOUT, LOCK, LONGEST_FIRST, SOLO, FolderBusy, default_jobs, folder_lock, runs_alone,
                        schedule)
from .planning import (KERNEL, PROFILES, check_notebook_parameters, declared_parameters, notebooks, parse_override, plan,
                       resolve_parameters, runs_root, validation_prefix)
from .standins import check_context, prepare_standin_datasets, standin_substitutions

__all__ = ["CELL_TIMEOUT", "KERNEL", "LOCK", "LONGEST_FIRST", "PROFILES", "SOLO", "FolderBusy", "add_parser",
           "check_context", "runs_alone", "schedule",
           "check_notebook_parameters", "declared_parameters", "default_jobs", "folder_lock", "notebooks",
           "parse_override", "plan", "prepare_standin_datasets", "resolve_parameters", "run", "runs_root",
           "standin_substitutions", "validation_prefix"]
