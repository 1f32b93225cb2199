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
