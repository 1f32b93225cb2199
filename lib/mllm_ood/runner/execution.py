"""Executing notebooks: folder locks, one notebook into its staging folder (published only when it succeeds,
kept under ``failed/`` otherwise), up to ``jobs`` at once, the run's summary."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

from .. import progress
from ..paths import resolve_model
from .planning import KERNEL, params_label
from .publish import publish_files

# Per-cell limit (a hung cell fails the run). The longest cell, notebook 04 embedding the 8,616 shipped LLaVA
# answers with e5 on first use, took over 30 minutes on one core shared with the other notebooks and a test run.
CELL_TIMEOUT = 3 * 3600
LOCK = ".lock"


class FolderBusy(RuntimeError):
    """Another run holds the lock on an output folder."""


@contextlib.contextmanager
def folder_lock(folder: Path):
    """Hold an exclusive lock on ``folder`` (a ``.lock`` file, released by the OS even if this process is
    killed); raise FolderBusy naming the holder when another run has it."""
    folder.mkdir(parents=True, exist_ok=True)
    fh = open(folder / LOCK, "a+")  # noqa: SIM115 - held for the whole block
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "a process that has not written its name yet"
            raise FolderBusy(f"another run is writing here: {folder}\n  held by {holder}\n  wait for it to "
                             f"finish, or write elsewhere (another --profile, or MLLM_OOD_RUNS=DIR and "
                             f"MLLM_OOD_FIGURES=DIR)") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(sys.argv)}\n")
        fh.flush()
        yield
    finally:
        fh.close()  # closing releases the lock


def publish(stage: Path, stage_figs: Path, figs: Path, run_dir: Path, names: list[str]) -> None:
    """Move a succeeded notebook's figures into ``figs`` and its executed copy, HTML and log into ``run_dir``
    (:func:`mllm_ood.runner.publish.publish_files`: across filesystems, all or nothing; PublishError leaves
    the stage intact), then drop the stage and an earlier failure's ``failed/<notebook>`` folder."""
    figures = sorted(stage_figs.glob("*")) if stage_figs.exists() else []
    publish_files([(f, figs / f.name) for f in figures] + [(stage / name, run_dir / name) for name in names])
    shutil.rmtree(stage, ignore_errors=True)
    shutil.rmtree(run_dir / "failed" / stage.name, ignore_errors=True)
    with contextlib.suppress(OSError):
        (run_dir / "failed").rmdir()  # only when empty


def keep_failed(stage: Path, run_dir: Path, stem: str) -> Path:
    failed = run_dir / "failed" / stem
    shutil.rmtree(failed, ignore_errors=True)
    failed.parent.mkdir(parents=True, exist_ok=True)
    os.replace(stage, failed)
    return failed


def summary_text(command: str, profile: str, smoke: bool, overrides: dict, rows, figs: Path, run_dir: Path,
             notes: list[str]) -> str:
    lines = [f"command: {command}", f"profile: {profile}{' (smoke)' if smoke else ''}",
             "overrides: " + (", ".join(f"{k}={v!r}" for k, v in overrides.items()) if overrides else "none"),
             "", f"{'notebook':32s} {'status':11s} {'wall':>8s}  outputs"]
    lines += [f"{stem:32s} {st:11s} {wall:7.1f}s  {out}" for stem, st, wall, out in rows]
    lines += ["", f"figures: {figs}", f"logs and executed notebooks: {run_dir}", *notes]
    return "\n".join(lines) + "\n"


# Runs first, and alone when it may train the model every later notebook loads (:func:`runs_alone`).
SOLO = ("00_embedded_model",)
# Started next, longest first, before the others (which need no order among themselves), so the short ones
# fill the cores at the end instead of a long one starting last and running alone. Measured in a first run
# on 2 cores (README, "How long"): 04 the longest, then 02 and 03; 00_embedded_world and 01 take under a
# minute each.
LONGEST_FIRST = ("04_emi_bound", "02_hypotheses", "03_in_context_learning")
# Started last, once every other notebook has finished and published: it reads what they published.
LAST = ("05_claims_ledger",)


def runs_alone(nb: Path, params: dict) -> bool:
    """Whether ``nb`` must run alone: a :data:`SOLO` notebook may write the model the others load, unless it
    only loads a checkpoint (RETRAIN off and its MODEL_DIR holding a training record, as the committed one
    does: ``train_or_load`` then trains nothing)."""
    if nb.stem not in SOLO:
        return False
    from ..mllm.embedded.saving import read_record  # imports torch: only when a run is scheduled

    model_dir = params.get("MODEL_DIR")
    return bool(params.get("RETRAIN")) or not isinstance(model_dir, str) or read_record(resolve_model(model_dir)) is None


def schedule(resolved: list) -> list:
    """``resolved`` ((notebook, params file, params) triples, in notebook order) in execution order: the
    :data:`SOLO` notebooks, then the :data:`LONGEST_FIRST` ones in its order, then the rest, then the
    :data:`LAST` ones, each group in notebook order."""
    def rank(stem: str) -> int:
        return LONGEST_FIRST.index(stem) if stem in LONGEST_FIRST else len(LONGEST_FIRST)

    return sorted(resolved, key=lambda item: (item[0].stem in LAST, item[0].stem not in SOLO, rank(item[0].stem)))


def _all_published(published: dict) -> bool:
    """Whether every publish handed to the publishing executor so far has finished (a :data:`LAST` notebook
    reads the published figures folder). Waits for them: they are short copies and renames."""
    for future in published.values():
        future.exception()  # blocks until done; a failed publish is reported after the run
    return True


def default_jobs(profile: str = "embedded") -> int:
    """Notebooks executed at once: one per usable core (each kernel computes on one thread), except the
    paper profile, one at a time: its notebooks each load a hub MLLM, and two would share one GPU's memory."""
    if profile == "paper":
        return 1
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


class Kernels:
    """The kernels the run has started, so an interrupt can stop every running notebook at once."""

    def __init__(self):
        self._lock, self._managers, self._logs = threading.Lock(), [], []

    def manager_class(self, env: dict, log: Path):
        """A kernel manager class whose kernels get ``env`` on top of this process's environment (each
        notebook's figure folder and progress log: threads share one ``os.environ``), write their own
        stderr (start-up warnings, the interrupt jupyter_client sends before a shutdown) to the end of the
        notebook's ``log`` instead of the terminal, and are recorded here."""
        from jupyter_client.manager import AsyncKernelManager

        kernels = self

        class _Manager(AsyncKernelManager):
            async def _async_pre_start_kernel(self, **kw):
                stderr = open(log, "a")  # noqa: SIM115 - closed by close_logs() when the run ends
                kw["env"], kw["stderr"] = {**kw.get("env", os.environ), **env}, stderr
                with kernels._lock:
                    kernels._managers.append(self)
                    kernels._logs.append(stderr)
                return await super()._async_pre_start_kernel(**kw)

        return _Manager

    def close_logs(self) -> None:
        with self._lock:
            for fh in self._logs:
                fh.close()
            self._logs.clear()

    def kill_all(self) -> None:
        with self._lock:
            managers = list(self._managers)
        for km in managers:
            pid = getattr(km.provisioner, "pid", None)
            if pid:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)


def render_and_publish(executed: Path, stage: Path, stage_figs: Path, figs: Path, run_dir: Path, nb: Path) -> None:
    """Render the executed copy as HTML for reading (nbconvert's HTMLExporter in this process: a subprocess
    spends seconds importing per notebook), then :func:`publish` the notebook's outputs. The page shows the
    explanations, tables and figures without the code cells, and says where the code is: the executed
    notebook published beside it."""
    import nbformat
    from nbconvert import HTMLExporter

    try:
        book = nbformat.read(str(executed), as_version=4)
        book.cells.insert(0, nbformat.v4.new_markdown_cell(
            f"*This page shows the text, tables and figures of `{nb.name}`; its code is in the executed notebook "
            f"`{nb.name}` beside this page.*"))
        body, _ = HTMLExporter(exclude_input=True, exclude_input_prompt=True,
                               exclude_output_prompt=True).from_notebook_node(book)
        executed.with_suffix(".html").write_text(body, encoding="utf-8")
    except Exception as err:  # noqa: BLE001 - the executed copy and figures still publish without HTML
        with open(stage / f"{nb.stem}.log", "a") as fh:
            fh.write(f"\n# no HTML rendering: {type(err).__name__}: {err}\n")
    publish(stage, stage_figs, figs, run_dir, [nb.name, f"{nb.stem}.html", f"{nb.stem}.log",
                                                f"{nb.stem}.progress.log"])


def run_one(pm, nb: Path, params_file: Path | None, params: dict, run_dir: Path, figs: Path, timeout: int,
             command: str, smoke: bool, extra: dict, standin_notes: list[str] | None, kernels: Kernels,
             interrupted: threading.Event, publishing) -> tuple[tuple, str | None, int, object]:
    """Execute one notebook into its staging folder; hand a success to ``publishing`` (an executor:
    :func:`render_and_publish`), keep a failure under failed/: (summary row, note or None, status 0 / 1 / 130,
    the publishing future or None)."""
    stage = run_dir / "running" / nb.stem
    stage_figs = stage / "figures"
    stage_figs.mkdir(parents=True)
    out, log = stage / nb.name, stage / f"{nb.stem}.log"
    env = {"MLLM_OOD_FIGURES": str(stage_figs), "MLLM_OOD_CLAIMS": str(figs),
           progress.ENV: str(stage / f"{nb.stem}.progress.log")}
    source = params_label(params_file)
    flags = (" +SMOKE" if smoke else "") + "".join(f" -p {k} {v!r}" for k, v in extra.items())
    print(f"==> {nb.name}  params: {source}{flags}  (log: {log})", flush=True)
    t0 = time.time()
    ok = True
    with open(log, "a") as fh:  # appending: the kernel's own stderr goes to the end of this file too
        fh.write("".join(f"# stand-in: {line}\n" for line in standin_notes or []))
        fh.write(f"# {command}\n# parameters file: {source}\n# overrides (-p): "
                 f"{', '.join(f'{k}={v!r}' for k, v in extra.items()) or 'none'}\n"
                 f"# injected parameters: {params!r}\n")
        fh.flush()
        try:
            pm.execute_notebook(str(nb), str(out), parameters=params, kernel_name=KERNEL,
                                execution_timeout=timeout, log_output=True, stdout_file=fh, stderr_file=fh,
                                progress_bar=False, cwd=str(nb.parent), kernel_manager_class=kernels.manager_class(env, log))
        except KeyboardInterrupt:
            ok = False
            interrupted.set()
        except Exception as err:  # noqa: BLE001 - papermill raises several kinds; all mean "failed"
            ok = False
            fh.write(f"\n{type(err).__name__}: {err}\n")
        if interrupted.is_set() and not ok:
            fh.write("\nKeyboardInterrupt: run interrupted\n")
    wall = time.time() - t0
    if ok:
        print(f"<== {nb.name} ok in {wall:.0f}s", flush=True)
        # Rendered and published beside the next notebook's run, which can start at once.
        published = publishing.submit(render_and_publish, out, stage, stage_figs, figs, run_dir, nb)
        return (nb.stem, "ok", wall, run_dir / nb.name), None, 0, published
    stopped = interrupted.is_set()
    cell = failing_cell(out)
    failed = keep_failed(stage, run_dir, nb.stem)
    print(f"{'INTERRUPTED' if stopped else 'FAILED'}: {nb.name} at {cell}\n"
          f"  executed copy, log and figures of the failed run: {failed}\n"
          f"  previous good figures and executed copy left in place ({figs}, {run_dir})", file=sys.stderr)
    note = (f"{nb.stem} {'interrupted' if stopped else 'failed'} at {cell}\n"
            f"  its executed copy, log and figures: {failed}\n"
            f"  {figs} and {run_dir} still hold the previous good outputs of {nb.stem}")
    return (nb.stem, "INTERRUPTED" if stopped else "FAILED", wall, failed / nb.name), note, 130 if stopped else 1, None


def execute(pm, resolved, run_dir: Path, figs: Path, timeout: int, command: str, profile: str, smoke: bool,
             extra: dict, standin_notes: list[str] | None = None, jobs: int = 1) -> int:
    """Execute the notebooks, up to ``jobs`` at once in the order of :func:`schedule` (a :data:`SOLO`
    notebook alone when :func:`runs_alone`, before the rest). After a failure nothing new starts; an interrupt (Ctrl-C, SIGTERM) stops every running one."""
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    notes, status = [], 0
    if standin_notes:
        notes += ["DRY RUN on stand-ins (random tiny weights, noise images): the numbers mean nothing; only that "
                  "every step runs.", *[f"stand-in: {line}" for line in standin_notes]]
    kernels, interrupted = Kernels(), threading.Event()
    done_rows: dict[str, tuple] = {}
    pending, running, published = schedule(resolved), {}, {}
    alone = {item[0] for item in pending if runs_alone(item[0], item[2])}  # decided once: it reads the record

    def collect(futures) -> None:
        nonlocal status
        for f in futures:
            row, note, st, publish_future = f.result()
            if publish_future is not None:
                published[row[0]] = publish_future
            running.pop(f)
            done_rows[row[0]] = row
            notes.extend([note] if note else [])
            status = status or st

    with ThreadPoolExecutor(max_workers=1) as publishing, ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        try:
            while pending or running:
                while (pending and not status and len(running) < jobs
                       and not any(item[0] in alone for item in running.values())
                       and (pending[0][0] not in alone or not running)
                       and (pending[0][0].stem not in LAST or not running and _all_published(published))):
                    nb, pf, params = item = pending.pop(0)
                    running[pool.submit(run_one, pm, nb, pf, params, run_dir, figs, timeout, command, smoke,
                                        extra, standin_notes, kernels, interrupted, publishing)] = item
                if not running:
                    break
                collect(wait(list(running), return_when=FIRST_COMPLETED)[0])
        except KeyboardInterrupt:
            interrupted.set()
            while running:  # again each second: a kernel still starting has no process to stop yet
                kernels.kill_all()
                collect(wait(list(running), timeout=1)[0])
            status = 130
    kernels.close_logs()
    for stem, publish_future in published.items():  # a publish that failed fails the run; its outputs go to failed/
        err = publish_future.exception()
        if err is None:
            continue
        failed = keep_failed(run_dir / "running" / stem, run_dir, stem)
        print(f"FAILED: {stem} ran, but publishing its outputs failed: {err}\n"
              f"  executed copy, log and figures: {failed}", file=sys.stderr)
        done_rows[stem] = (stem, "FAILED", done_rows[stem][2], failed / done_rows[stem][3].name)
        notes.append(f"{stem} ran, but publishing its outputs failed ({err})\n  its executed copy, log and figures: "
                     f"{failed}\n  {figs} and {run_dir} still hold the previous good outputs of {stem}")
        status = status or 1
    shutil.rmtree(run_dir / "running", ignore_errors=True)
    rows = [done_rows[nb.stem] for nb, _, _ in resolved if nb.stem in done_rows]
    summary = summary_text(command, profile, smoke, extra, rows, figs, run_dir, notes)
    (run_dir / "summary.txt").write_text(summary)
    print("\n" + summary, end="")
    return status


def failing_cell(executed: Path) -> str:
    """Where the notebook stopped: the cell with the error, else the cell papermill marked running (an
    interrupt or a killed kernel), else the last completed one; or what is known when no copy was written."""
    import nbformat

    if not executed.exists():
        return "start-up (no executed copy was written: stopped before the kernel ran its first cell)"
    try:
        nb = nbformat.read(executed, as_version=4)
    except Exception as err:  # noqa: BLE001 - the copy may be unreadable after a crash
        return f"a cell not known (the executed copy cannot be read: {type(err).__name__})"

    def first_line(cell) -> str:
        return (cell.source.strip().splitlines() or [""])[0][:80]

    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                return f"cell {i} ({out.get('ename')}: {out.get('evalue', '')[:200]}) starting {first_line(cell)!r}"
    # papermill marks never-run cells "completed" at the end; the last cell with a start time is where it stopped
    started = [i for i, c in enumerate(nb.cells) if c.get("metadata", {}).get("papermill", {}).get("start_time")]
    if not started:
        return "its first cell (none had started)"
    return f"cell {started[-1]} (running when stopped) starting {first_line(nb.cells[started[-1]])!r}"
