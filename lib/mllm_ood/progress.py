"""Progress bars for every loop of the library: ``from mllm_ood.progress import tqdm``.

In a notebook opened by hand the bars show in the cell output, as plain ``tqdm.tqdm``. Under
``run_all.sh`` the runner sets ``MLLM_OOD_PROGRESS_LOG`` to a file beside the notebook's log, and every
bar is written there instead, so executed notebooks stay readable (a bar refreshes hundreds of times,
and each refresh would otherwise become an output block of the notebook).
"""

from __future__ import annotations

import os
from functools import lru_cache

from tqdm import tqdm as _tqdm

ENV = "MLLM_OOD_PROGRESS_LOG"


@lru_cache(maxsize=4)
def _log(path: str):
    return open(path, "a", buffering=1, encoding="utf-8")  # line-buffered; kept open for the process


def tqdm(*args, **kwargs):
    """``tqdm.tqdm(*args, **kwargs)``, writing to the run's progress log when ``$MLLM_OOD_PROGRESS_LOG`` is set
    (an explicit ``file=`` wins)."""
    path = os.environ.get(ENV)
    if path and "file" not in kwargs:
        kwargs["file"] = _log(path)
    return _tqdm(*args, **kwargs)
