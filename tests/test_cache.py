"""The cache: built once, atomic (a killed build leaves nothing valid-looking), corrupt/stale rebuilt."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mllm_ood import cache


def _writer(counter: list):
    def build(tmp):
        counter.append(1)
        (tmp / "a.txt").write_text("payload")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "b.bin").write_bytes(b"\x00\x01")
    return build


def test_built_once_then_reused(fresh_cache):
    calls = []
    p1 = cache.cached("thing", {"x": 1}, _writer(calls))
    p2 = cache.cached("thing", {"x": 1}, _writer(calls))
    assert p1 == p2 and len(calls) == 1
    assert (p1 / "a.txt").read_text() == "payload" and cache.is_valid(p1)
    cache.cached("thing", {"x": 2}, _writer(calls))
    assert len(calls) == 2, "other inputs, other entry"


def test_key_depends_on_code_version(monkeypatch):
    k1 = cache.cache_key("thing", {"x": 1})
    monkeypatch.setattr(cache, "CODE_VERSION", "other")
    assert cache.cache_key("thing", {"x": 1}) != k1


def test_corrupt_entry_is_rebuilt(fresh_cache):
    calls = []
    p = cache.cached("thing", {"x": 1}, _writer(calls))
    (p / "sub" / "b.bin").write_bytes(b"garbage")
    assert not cache.is_valid(p)
    p2 = cache.cached("thing", {"x": 1}, _writer(calls))
    assert len(calls) == 2 and (p2 / "sub" / "b.bin").read_bytes() == b"\x00\x01"


def test_stale_or_unmarked_entry_is_rebuilt(fresh_cache):
    calls = []
    p = cache.cached("thing", {"x": 1}, _writer(calls))
    marker = json.loads((p / cache.MARKER).read_text())
    (p / cache.MARKER).write_text(json.dumps({**marker, "code": "0"}))
    cache.cached("thing", {"x": 1}, _writer(calls))
    assert len(calls) == 2
    (p / cache.MARKER).unlink()
    cache.cached("thing", {"x": 1}, _writer(calls))
    assert len(calls) == 3


KILLED_BUILD = """
import time
from pathlib import Path

import pytest
from pathlib import Path
from mllm_ood import cache

def build(tmp):
    (tmp / "part1.txt").write_text("half")
    Path({flag!r}).write_text("started")
    time.sleep(60)
    (tmp / "part2.txt").write_text("never")

cache.cached("slow", {{"x": 1}}, build)
"""


def test_killed_build_leaves_no_valid_looking_entry(fresh_cache, tmp_path):
    flag = tmp_path / "started"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_BUILD.format(flag=str(flag))])
    deadline = time.time() + 60
    while not flag.exists() and time.time() < deadline:
        time.sleep(0.1)
    assert flag.exists(), "the build never started"
    assert cache.clean_stale_temporaries() == 0, "a running build's temporary must survive a sweep"
    assert list(cache.entry_path("slow", {"x": 1}).parent.glob(".tmp-*"))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    final = cache.entry_path("slow", {"x": 1})
    assert not final.exists(), "a killed build must not leave an entry under the final name"
    assert list(final.parent.glob(".tmp-*")), "the half-written temporary stays aside"
    calls = []
    p = cache.cached("slow", {"x": 1}, _writer(calls))
    assert len(calls) == 1 and cache.is_valid(p)
    assert cache.clean_stale_temporaries("slow") == 1


CONCURRENT_BUILD = """
import sys, time
from pathlib import Path
from mllm_ood import cache

def build(tmp):
    with open(sys.argv[1], "a") as f:
        f.write("built\\n")
    time.sleep(1.5)
    (tmp / "a.txt").write_text("payload")

print(cache.cached("shared", {"x": 1}, build))
"""


def test_concurrent_builders_of_one_entry_build_it_once(fresh_cache, tmp_path):
    count = tmp_path / "builds.txt"
    env = {**os.environ, "MLLM_OOD_CACHE": str(fresh_cache)}
    procs = [subprocess.Popen([sys.executable, "-c", CONCURRENT_BUILD, str(count)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert count.read_text() == "built\n", "the second process waits for the first build and reuses it"
    assert outs[0][0] == outs[1][0] and cache.is_valid(Path(outs[0][0].strip()))


@pytest.mark.parametrize("file", ["table.csv", "table.jsonl", "table.pkl"])
def test_cached_table_builds_once_and_returns_what_was_built(fresh_cache, file):
    import numpy as np
    import pandas as pd

    from mllm_ood.cache import cached_table

    calls = []
    built = pd.DataFrame({"x": [0.1 + 0.2, 1 / 3, np.pi], "ok": [True, False, True], "name": ["a", "b", "c"]})

    def build():
        calls.append(1)
        return built

    first = cached_table("tables", {"a": 1}, build, file=file)
    again = cached_table("tables", {"a": 1}, build, file=file)
    assert len(calls) == 1
    for t in (first, again):
        if file.endswith(".jsonl"):  # JSON keeps 10 significant digits: for tables of text
            assert np.allclose(t["x"], built["x"], rtol=1e-9)
        else:
            assert t["x"].tolist() == built["x"].tolist()  # every float exactly as computed
        assert t["ok"].tolist() == built["ok"].tolist() and t["name"].tolist() == built["name"].tolist()
    cached_table("tables", {"a": 2}, build, file=file)
    assert len(calls) == 2
    with pytest.raises(ValueError):
        cached_table("tables", {"a": 1}, build, file="table.parquet")


def test_cached_arrays_round_trip(fresh_cache):
    import numpy as np

    from mllm_ood.cache import cached_arrays

    calls = []

    def build():
        calls.append(1)
        return {"x": np.arange(6, dtype=np.float32).reshape(2, 3), "ids": np.array(["a", "b"])}

    a = cached_arrays("arrays", {"k": 1}, build)
    b = cached_arrays("arrays", {"k": 1}, build)
    assert len(calls) == 1 and np.array_equal(a["x"], b["x"]) and list(b["ids"]) == ["a", "b"]


def test_analysis_is_computed_once_per_argument_content(fresh_cache):
    import pandas as pd

    calls = []

    @cache.cached_analysis("analysis")
    def mean_by(table: pd.DataFrame, column: str, *, scale: float = 1.0) -> pd.DataFrame:
        calls.append(1)
        return table.groupby(column, as_index=False)["v"].mean().assign(v=lambda t: t["v"] * scale)

    t = pd.DataFrame({"g": ["a", "a", "b"], "v": [1.0, 3.0, 5.0]})
    first = mean_by(t, "g")
    again = mean_by(t.copy(), column="g", scale=1.0)  # same content, another object, defaults spelled out
    assert len(calls) == 1 and again.equals(first) and again["v"].tolist() == [2.0, 5.0]
    changed = t.copy()
    changed.loc[2, "v"] = 7.0
    assert mean_by(changed, "g")["v"].tolist() == [2.0, 7.0] and len(calls) == 2  # a changed value recomputes
    mean_by(t, "g", scale=2.0)
    assert len(calls) == 3
    assert mean_by.uncached(t, "g").equals(first) and len(calls) == 4


def test_analysis_recomputes_when_the_package_source_changes(fresh_cache, monkeypatch):
    calls = []

    @cache.cached_analysis("analysis")
    def f(x: int) -> int:
        calls.append(x)
        return x + 1

    assert f(1) == 2 and f(1) == 2 and len(calls) == 1
    monkeypatch.setattr(cache, "_SOURCE_DIGEST", "0123456789abcdef")  # as after an edit of the code
    assert f(1) == 2 and len(calls) == 2


def test_analysis_keys_refuse_objects_without_a_stable_identity(fresh_cache):
    import numpy as np

    @cache.cached_analysis("analysis")
    def f(thing) -> int:
        return 1

    with pytest.raises(TypeError, match="cannot key an analysis cache on a object"):
        f(object())
    assert cache.content_digest(np.arange(3)) != cache.content_digest(np.arange(3.0))  # dtype counts
    assert cache.content_digest({"b": 1, "a": [1, 2]}) == cache.content_digest({"a": [1, 2], "b": 1})


def test_an_entry_is_hashed_once_per_process_but_its_marker_is_always_read(fresh_cache, monkeypatch):
    calls, hashed = [], []
    p = cache.cached("thing", {"x": 2}, _writer(calls))
    real = cache._manifest
    monkeypatch.setattr(cache, "_manifest", lambda folder: hashed.append(folder) or real(folder))
    cache.cached("thing", {"x": 2}, _writer(calls))
    cache.cached("thing", {"x": 2}, _writer(calls))
    assert len(calls) == 1 and len(hashed) == 1  # checked against the manifest on the first read only
    marker = json.loads((p / cache.MARKER).read_text())
    (p / cache.MARKER).write_text(json.dumps({**marker, "code": "0"}))  # an older code version
    cache.cached("thing", {"x": 2}, _writer(calls))
    assert len(calls) == 2


def test_an_empty_location_variable_means_the_default_not_the_working_directory(monkeypatch, tmp_path):
    """``MLLM_OOD_CACHE=""`` (an unset-by-mistake shell variable) must not turn the working directory into the
    cache, nor an empty figures or runs variable the working directory into figures or runs."""
    from mllm_ood import paths
    from mllm_ood.runner import planning

    monkeypatch.chdir(tmp_path)
    for var in ("MLLM_OOD_CACHE", "MLLM_OOD_FIGURES", "MLLM_OOD_RUNS", "MLLM_OOD_CLAIMS"):
        monkeypatch.setenv(var, "")
    assert paths.cache_dir() == paths.DATA / "cache"
    assert paths.figures_dir() == paths.ROOT / "figures"
    assert paths.claims_dir() == paths.ROOT / "figures"
    assert planning.runs_root() == paths.RUNS
