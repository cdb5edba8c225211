#!/usr/bin/env python
"""Build the book: execute every notebook with papermill, then ``jupyter-book build``.

    python tools/build_book.py --profile quick --device auto --dataset fashion-mnist

Stages (each one timed and printed):

1. **assets**: MathJax, require.js and the ipywidgets embed manager from the npm
   registry (``tools/npm_assets.py``), so the HTML renders with no network.
2. **notebooks**: every ``notebooks/*.ipynb`` is executed by papermill with the
   parameters ``profile``, ``device``, ``seed`` and ``dataset`` into
   ``_build/executed/<run>/`` (the sources stay clean). An executed copy is
   re-used while its key (the notebook's code cells, the parameters, every file
   of ``clutils`` and the versions of the packages that run it) is unchanged; an
   edit of markdown cells only is merged into the cached copy without
   re-running it. A failing notebook fails the build with its name and the
   cell's error (every notebook is still tried, so all failures show at once).
   ``--jobs N`` (``make book JOBS=N``) runs N notebooks at once in a process
   pool, each worker with its own GPU (``CUDA_VISIBLE_DEVICES``) or its share of
   the CPU cores (``OMP_NUM_THREADS``); by default one per GPU, else the cores
   divided by one notebook's threads (one in the smoke and quick profiles).
3. **stage**: ``_config.yml``, ``_toc.yml`` (entries whose file does not exist
   yet are dropped, notebooks no entry matches are appended), ``book/``, the
   executed notebooks and the assets are synced into ``_build/src`` (files whose
   content is unchanged keep their mtime, so Sphinx rebuilds only what changed).
4. **scorecard**: the claims every notebook recorded (``clutils.scorecard``)
   are rendered into the scorecard page.
5. **html**: ``jupyter-book build _build/src`` with execution off, into
   ``_build/html`` (log in ``_build/logs/jupyter-book.log``).
6. **claims**: a core claim that did not reproduce in the quick or paper
   profile fails the build, naming the claim.

The CI's paper-scale workflow splits this: one job per notebook
(``--only NAME --no-html``; ``tools/book_matrix.py`` lists them from ``_toc.yml``),
then a gathering job (``--from-executed``) that builds the HTML and the scorecard
from the executed copies without running anything, naming any notebook that has none.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import copy
import dataclasses
import fnmatch
import hashlib
import json
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT))

import book_matrix  # noqa: E402
import book_timings  # noqa: E402
import npm_assets  # noqa: E402

#: Bump to invalidate every cached executed notebook.
CACHE_FORMAT = "1"
PROFILES = ("smoke", "quick", "paper")
#: The longest a single cell may run before the build calls it hung and names it (None: no limit).
#: A quick cell takes minutes at most on 2 cores; a lost kernel message would otherwise wait forever.
CELL_TIMEOUT_S = {"smoke": 600, "quick": 1800, "paper": None}
DEVICES = ("auto", "cpu", "cuda")
#: Packages whose version changes what a notebook computes or shows.
RUNTIME_PACKAGES = (
    "torch", "torchvision", "numpy", "pandas", "matplotlib", "seaborn", "scikit-learn",
    "ipywidgets", "ipykernel", "papermill", "nbclient",
)
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class BuildError(Exception):
    pass


# ----------------------------------------------------------------------------- configuration


@dataclasses.dataclass(frozen=True)
class Run:
    profile: str = "quick"
    device: str = "auto"
    dataset: str | None = None
    seed: int = 0

    @property
    def tag(self) -> str:
        data = self.dataset or "paper-datasets"
        return f"{self.profile}-{self.device}-{data}-seed{self.seed}"

    def parameters(self) -> dict:
        return {"profile": self.profile, "device": self.device, "seed": self.seed, "dataset": self.dataset}


@dataclasses.dataclass
class Paths:
    root: Path = ROOT
    build: Path = ROOT / "_build"

    @property
    def notebooks(self) -> Path:
        return self.root / "notebooks"

    @property
    def src(self) -> Path:
        return self.build / "src"

    @property
    def html(self) -> Path:
        return self.build / "html"

    def executed(self, run: Run) -> Path:
        return self.build / "executed" / run.tag

    @property
    def logs(self) -> Path:
        return self.build / "logs"


class Timer:
    def __init__(self) -> None:
        self.rows: list[tuple[str, float, str]] = []

    @contextlib.contextmanager
    def stage(self, name: str):
        print(f"\n== {name} ==", flush=True)
        start = time.perf_counter()
        try:
            yield
        finally:
            seconds = time.perf_counter() - start
            self.rows.append((name, seconds, ""))
            print(f"== {name}: {seconds:.1f} s", flush=True)

    def report(self, notebooks: list["NotebookResult"], total: float) -> str:
        lines = ["", "== Timings =="]
        for name, seconds, _ in self.rows:
            lines.append(f"  {name:<28} {seconds:8.1f} s")
            if name == "notebooks":
                for nb in notebooks:
                    lines.append(f"    {nb.name:<26} {nb.seconds:8.1f} s  {nb.status}")
        lines.append(f"  {'total':<28} {total:8.1f} s")
        return "\n".join(lines)


# ----------------------------------------------------------------------------- cache keys


def _sha(*chunks: bytes) -> str:
    h = hashlib.sha256()
    for chunk in chunks:
        h.update(len(chunk).to_bytes(8, "little"))
        h.update(chunk)
    return h.hexdigest()


def clutils_digest(root: Path = ROOT) -> str:
    """One hash over every file of the ``clutils`` package (code and data files)."""
    chunks = []
    package = root / "clutils"
    for path in sorted(package.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in {".pyc", ".pyo"}:
            chunks += [path.relative_to(root).as_posix().encode(), path.read_bytes()]
    return _sha(*chunks)


def runtime_digest() -> str:
    versions = []
    for name in RUNTIME_PACKAGES:
        try:
            versions.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name} missing")
    versions.append(f"python {sys.version_info[:3]}")
    return _sha(*(v.encode() for v in versions))


def read_notebook(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def code_digest(nb: dict) -> str:
    """What execution depends on: code cells (source and tags), kernel and language."""
    chunks = [json.dumps(nb.get("metadata", {}).get("kernelspec", {}), sort_keys=True).encode()]
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else source
        tags = sorted(cell.get("metadata", {}).get("tags", []))
        chunks += [source.encode(), json.dumps(tags).encode()]
    return _sha(*chunks)


def notebook_key(nb: dict, run: Run, clutils_hash: str, runtime_hash: str) -> str:
    params = json.dumps(run.parameters(), sort_keys=True).encode()
    return _sha(CACHE_FORMAT.encode(), code_digest(nb).encode(), params, clutils_hash.encode(), runtime_hash.encode())


def merge_prose(source: dict, executed: dict) -> dict:
    """The executed notebook with the markdown/raw cells of ``source`` (same code cells)."""
    executed_code = [
        c for c in executed["cells"]
        if c.get("cell_type") == "code" and "injected-parameters" not in c.get("metadata", {}).get("tags", [])
    ]
    injected = [
        c for c in executed["cells"]
        if "injected-parameters" in c.get("metadata", {}).get("tags", [])
    ]
    merged = copy.deepcopy(executed)
    cells = []
    code_iter = iter(executed_code)
    for cell in source["cells"]:
        if cell.get("cell_type") == "code":
            done = copy.deepcopy(next(code_iter))
            done["id"] = cell.get("id", done.get("id"))
            cells.append(done)
            if "parameters" in cell.get("metadata", {}).get("tags", []):
                cells += copy.deepcopy(injected)
        else:
            cells.append(copy.deepcopy(cell))
    merged["cells"] = cells
    return merged


# ----------------------------------------------------------------------------- notebooks


@dataclasses.dataclass
class NotebookResult:
    name: str
    status: str  # executed | cached | merged | failed
    seconds: float
    error: str = ""


def kernel_manager_class():
    """A kernel manager whose kernels talk over Unix sockets with unique names, not TCP ports.

    With TCP, jupyter_client picks free ports and releases them before the kernel binds them, so
    two kernels started at once (``JOBS=2``, or two builds) can take the same port: one dies with
    "Address already in use", or a client talks to the wrong kernel and waits forever. On
    Windows, which has no Unix sockets, the default TCP manager is kept.
    """
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import CaselessStrEnum

    if os.name != "posix":
        return AsyncKernelManager

    class UnixSocketKernelManager(AsyncKernelManager):
        transport = CaselessStrEnum(["tcp", "ipc"], default_value="ipc", config=True)

        def _ip_default(self) -> str:
            # A short path: a Unix socket's path may not exceed about 100 bytes.
            folder = Path(tempfile.gettempdir()) / f"clutils-kernels-{os.getuid()}"
            folder.mkdir(mode=0o700, exist_ok=True)
            return str(folder / uuid.uuid4().hex[:12])

    return UnixSocketKernelManager


def _kernel_env(paths: Paths) -> Path:
    """A private ``python3`` kernelspec that runs *this* interpreter (user kernelspecs can't hijack it)."""
    spec_dir = paths.build / "jupyter" / "kernels" / "python3"
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
        "metadata": {"debugger": True},
    }
    # Written only when it changes (and atomically): parallel workers start kernels from it.
    _write_if_changed(spec_dir / "kernel.json", json.dumps(spec, indent=1).encode())
    return paths.build / "jupyter"


def format_papermill_error(name: str, err: Exception) -> str:
    ename = getattr(err, "ename", type(err).__name__)
    evalue = getattr(err, "evalue", str(err))
    cell = getattr(err, "exec_count", None)
    index = getattr(err, "cell_index", None)
    source = getattr(err, "source", "") or ""
    trace = getattr(err, "traceback", None) or []
    lines = [f"notebook {name} failed in cell [{cell}] (index {index}): {ename}: {ANSI.sub('', str(evalue))}"]
    if source:
        snippet = source.strip().splitlines()
        lines.append("  cell source:")
        lines += [f"    {line}" for line in snippet[:12]]
        if len(snippet) > 12:
            lines.append("    ...")
    if trace:
        text = ANSI.sub("", "\n".join(trace)).strip().splitlines()
        lines.append("  traceback (last lines):")
        lines += [f"    {line}" for line in text[-25:]]
    return "\n".join(lines)


def execute_notebook(
    path: Path,
    run: Run,
    paths: Paths,
    *,
    clutils_hash: str | None = None,
    runtime_hash: str | None = None,
    force: bool = False,
    env: dict[str, str] | None = None,
    log=print,
) -> NotebookResult:
    """Execute (or re-use) one notebook; the executed copy lies at ``paths.executed(run)/<name>.ipynb``.

    ``env`` is added to the kernel's environment (a parallel worker's GPU or CPU threads).
    """
    import papermill

    name = path.stem
    start = time.perf_counter()
    out_dir = paths.executed(run)
    out_dir.mkdir(parents=True, exist_ok=True)
    claims_dir = out_dir / "claims"
    claims_dir.mkdir(exist_ok=True)
    executed = out_dir / f"{name}.ipynb"
    key_file = out_dir / f"{name}.key"
    source = read_notebook(path)
    key = notebook_key(
        source, run, clutils_hash or clutils_digest(paths.root), runtime_hash or runtime_digest()
    )
    if not force and executed.exists() and key_file.exists() and key_file.read_text().strip() == key:
        previous = read_notebook(executed)
        merged = merge_prose(source, previous)
        status = "cached"
        if merged != previous:
            executed.write_text(json.dumps(merged, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
            status = "cached, prose merged"
        result = NotebookResult(name, status, time.perf_counter() - start)
        log(f"  {name}: {status} ({result.seconds:.1f} s)")
        return result

    key_file.unlink(missing_ok=True)
    (claims_dir / f"{name}.json").unlink(missing_ok=True)
    partial = out_dir / f"{name}.partial.ipynb"
    failed = out_dir / f"{name}.failed.ipynb"
    failed.unlink(missing_ok=True)
    env_updates = {
        "CLUTILS_SCORECARD_DIR": str(claims_dir),
        "CLUTILS_NOTEBOOK": name,
        "JUPYTER_PATH": os.pathsep.join(
            [str(_kernel_env(paths))] + [p for p in os.environ.get("JUPYTER_PATH", "").split(os.pathsep) if p]
        ),
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        "PYTHONWARNINGS": os.environ.get("PYTHONWARNINGS", "ignore::DeprecationWarning"),
        "TQDM_DISABLE": "1",
        **(env or {}),
    }
    saved = {k: os.environ.get(k) for k in env_updates}
    os.environ.update(env_updates)
    log(f"  {name}: executing with {run.parameters()} ...")
    try:
        papermill.execute_notebook(
            str(path),
            str(partial),
            parameters=run.parameters(),
            kernel_name="python3",
            cwd=str(path.parent),
            progress_bar=False,
            log_output=False,
            request_save_on_cell_execute=False,
            start_timeout=180,
            kernel_manager_class=kernel_manager_class(),
            execution_timeout=CELL_TIMEOUT_S[run.profile],
        )
    except Exception as err:  # noqa: BLE001 - reported with the notebook's name
        if partial.exists():
            partial.replace(failed)
        message = format_papermill_error(f"notebooks/{path.name}", err)
        if failed.exists():
            message += f"\n  partially executed copy: {failed.relative_to(paths.root) if failed.is_relative_to(paths.root) else failed}"
        result = NotebookResult(name, "failed", time.perf_counter() - start, message)
        log(f"  {name}: FAILED after {result.seconds:.1f} s\n{message}")
        return result
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    # Store the prose exactly as in the source, so a later merge of unchanged prose is a no-op.
    normalised = merge_prose(source, read_notebook(partial))
    partial.write_text(json.dumps(normalised, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    partial.replace(executed)
    key_file.write_text(key + "\n")
    result = NotebookResult(name, "executed", time.perf_counter() - start)
    log(f"  {name}: executed in {result.seconds:.1f} s")
    return result


def notebook_sources(paths: Paths, only: list[str] | None = None) -> list[Path]:
    found = sorted(p for p in paths.notebooks.glob("*.ipynb") if not p.name.startswith("."))
    if only:
        found = [p for p in found if any(fnmatch.fnmatch(p.stem, pat) for pat in only)]
    return found


# ----------------------------------------------------------------------------- notebooks in parallel

#: Threads one notebook uses on the CPU, by profile. The smoke and quick profiles train small
#: MLPs, for which one thread is as fast as two (the AR1 notebooks pin it); None: all cores.
NOTEBOOK_THREADS = {"smoke": 1, "quick": 1, "paper": None}
#: Seconds between two progress lines while notebooks run in parallel.
PROGRESS_EVERY = 30.0


def cpu_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def visible_gpus(device: str) -> list[str]:
    """The CUDA device ids a worker may be given (``CUDA_VISIBLE_DEVICES`` entries); none for the CPU."""
    if device == "cpu":
        return []
    import torch

    count = torch.cuda.device_count()
    listed = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return listed[:count] if listed else [str(i) for i in range(count)]


def default_jobs(run: Run, gpus: list[str], cores: int) -> int:
    """One notebook per GPU; on the CPU, the cores divided by the threads one notebook uses."""
    if gpus:
        return len(gpus)
    threads = NOTEBOOK_THREADS[run.profile] or cores
    return max(1, cores // threads)


def worker_envs(jobs: int, gpus: list[str], cores: int, threads: int | None = None) -> list[dict[str, str]]:
    """The kernel environment of each of ``jobs`` workers: its own GPU and its share of the cores.

    ``threads`` fixes one notebook's CPU threads whatever ``jobs`` is (the smoke and quick
    profiles: 1), because the thread count changes the order of float sums and so the last
    digits of every result: the book must compute the same numbers with JOBS=1 and JOBS=2.
    Without it the workers share the cores, and a lone worker keeps the machine's defaults.
    """
    if jobs <= 1 and threads is None:
        return [{}]
    share = str(threads or max(1, cores // jobs))
    envs = []
    for slot in range(max(1, jobs)):
        env = {"OMP_NUM_THREADS": share, "MKL_NUM_THREADS": share}
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
        envs.append(env)
    return envs


def _describe_env(env: dict[str, str]) -> str:
    parts = []
    if "CUDA_VISIBLE_DEVICES" in env:
        parts.append(f"GPU {env['CUDA_VISIBLE_DEVICES']}")
    if "OMP_NUM_THREADS" in env:
        parts.append(f"{env['OMP_NUM_THREADS']} CPU thread(s)")
    return ", ".join(parts) or "default threads"


def longest_first(sources: list[Path], run: Run, paths: Paths) -> list[Path]:
    """``sources`` ordered by their last execution time, longest first (never executed: first of all).

    Starting the long notebooks first keeps a short one from being the last to start, which
    would leave the other workers idle at the end. The time is papermill's own record in the
    previous executed (or failed) copy.
    """
    def last_seconds(path: Path) -> float:
        for copy_ in (paths.executed(run) / f"{path.stem}.ipynb", paths.executed(run) / f"{path.stem}.failed.ipynb"):
            if copy_.exists():
                with contextlib.suppress(ValueError, TypeError, KeyError):
                    return float(read_notebook(copy_)["metadata"]["papermill"]["duration"] or 0.0)
        return float("inf")

    return sorted(sources, key=last_seconds, reverse=True)  # stable: ties keep the source order


def _quiet(*_args) -> None:
    """The log of a pool worker: the parent prints each notebook's outcome."""


def _outcome_line(result: NotebookResult) -> str:
    if result.status == "failed":
        return f"  {result.name}: FAILED after {result.seconds:.1f} s\n{result.error}"
    return f"  {result.name}: {result.status} in {result.seconds:.1f} s"


def execute_notebooks(sources: list[Path], run: Run, paths: Paths, *, jobs: int, gpus: list[str],
                      cores: int, force: bool = False, log=print) -> list[NotebookResult]:
    """Execute ``sources``, ``jobs`` at a time, in a process pool; results in the order of ``sources``.

    Each notebook runs in its own kernel, so one that fails (its partial copy kept as
    ``<name>.failed.ipynb``) does not stop the others. At most ``jobs`` notebooks are handed to
    the pool at once, so each holds one worker slot (its GPU or share of the cores) while it runs.
    """
    hashes = {"clutils_hash": clutils_digest(paths.root), "runtime_hash": runtime_digest()}
    _kernel_env(paths)
    jobs = max(1, min(jobs, len(sources)))  # a lone notebook keeps the whole machine
    envs = worker_envs(jobs, gpus, cores, threads=None if gpus else NOTEBOOK_THREADS[run.profile])
    if jobs <= 1:
        return [execute_notebook(path, run, paths, force=force, env=envs[0], log=log, **hashes)
                for path in sources]

    log(f"  {len(sources)} notebooks, {jobs} at a time: " + "; ".join(
        f"worker {slot + 1}: {_describe_env(env)}" for slot, env in enumerate(envs)))
    waiting = longest_first(sources, run, paths)
    running: dict[concurrent.futures.Future, tuple[str, int, float]] = {}
    free = list(range(jobs))
    done: dict[str, NotebookResult] = {}

    def progress() -> None:
        now = time.perf_counter()
        busy = ", ".join(f"{name} {now - start:.0f} s ({_describe_env(envs[slot])})"
                         for name, slot, start in running.values())
        log(f"  [{len(done)}/{len(sources)} done, {len(waiting)} waiting] running: {busy or 'none'}")

    context = multiprocessing.get_context("spawn")  # no fork of a process that may hold CUDA or threads
    with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context) as pool:
        while waiting or running:
            while waiting and free:
                path, slot = waiting.pop(0), free.pop(0)
                try:
                    future = pool.submit(execute_notebook, path, run, paths, force=force, env=envs[slot],
                                         log=_quiet, **hashes)
                except concurrent.futures.process.BrokenProcessPool as err:  # a worker was killed (memory?)
                    done[path.stem] = NotebookResult(path.stem, "failed", 0.0, (
                        f"notebook notebooks/{path.name}: not executed, the process pool broke ({err})"))
                    log(_outcome_line(done[path.stem]))
                    free.append(slot)
                    continue
                running[future] = (path.stem, slot, time.perf_counter())
                log(f"  {path.stem}: started ({_describe_env(envs[slot])})")
            finished, _ = concurrent.futures.wait(running, timeout=PROGRESS_EVERY,
                                                  return_when=concurrent.futures.FIRST_COMPLETED)
            for future in finished:
                name, slot, start = running.pop(future)
                free.append(slot)
                try:
                    result = future.result()
                except Exception as err:  # noqa: BLE001 - the worker process itself died
                    result = NotebookResult(name, "failed", time.perf_counter() - start,
                                            f"notebook notebooks/{name}.ipynb: its worker process died "
                                            f"({type(err).__name__}: {err})")
                done[name] = result
                log(_outcome_line(result))
            progress()
    return [done[path.stem] for path in sources]


def _code_sources(nb: dict) -> list[str]:
    """The code cells' sources, without the cell papermill injects."""
    return ["".join(c.get("source", "")) for c in nb.get("cells", [])
            if c.get("cell_type") == "code" and "injected-parameters" not in c.get("metadata", {}).get("tags", [])]


def gather_executed(sources: list[Path], run: Run, paths: Paths, log=print) -> list[NotebookResult]:
    """The executed copies already in ``paths.executed(run)`` (e.g. the CI's artifacts), not re-run.

    A notebook without an executed copy failed elsewhere (its CI job): it is named as failed,
    with its partial copy when one was gathered.
    """
    results = []
    out_dir = paths.executed(run)
    for path in sources:
        name = path.stem
        source = read_notebook(path)
        if (out_dir / f"{name}.ipynb").exists() and (out_dir / f"{name}.key").exists():
            executed = read_notebook(out_dir / f"{name}.ipynb")
            if _code_sources(executed) != _code_sources(source):
                results.append(NotebookResult(name, "failed", 0.0, (
                    f"notebook notebooks/{name}.ipynb: the executed copy in {out_dir} ran other code "
                    "than the source (executed at another commit?)")))
                log(f"  {name}: STALE")
                continue
            merged = merge_prose(source, executed)
            if merged != executed:
                (out_dir / f"{name}.ipynb").write_text(json.dumps(merged, indent=1, ensure_ascii=False) + "\n",
                                                       encoding="utf-8")
            results.append(NotebookResult(name, "gathered", 0.0))
            log(f"  {name}: gathered")
            continue
        message = (f"notebook notebooks/{name}.ipynb has no executed copy in {out_dir}: "
                   f"it was not executed or its execution failed (in CI: see the job 'execute ({name})')")
        failed = out_dir / f"{name}.failed.ipynb"
        if failed.exists():
            message += f"\n  partially executed copy: {failed}"
        results.append(NotebookResult(name, "failed", 0.0, message))
        log(f"  {name}: MISSING\n{message}")
    return results


# ----------------------------------------------------------------------------- staging


def _write_if_changed(path: Path, data: bytes) -> bool:
    if path.exists() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return True


def _copy_if_changed(src: Path, dst: Path) -> bool:
    if dst.exists() and dst.stat().st_size == src.stat().st_size and dst.read_bytes() == src.read_bytes():
        return False
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dst)
    return True


def _doc_exists(src_root: Path, docname: str) -> bool:
    base = src_root / docname
    if base.suffix in {".md", ".ipynb", ".rst"} and base.exists():
        return True
    return any(base.with_name(base.name + ext).exists() for ext in (".md", ".ipynb", ".rst"))


def _matches(pattern: str, docname: str) -> bool:
    return fnmatch.fnmatch(docname, pattern)


def filter_toc(toc: dict, docs: set[str], notebooks: list[str]) -> tuple[dict, list[str], list[str]]:
    """Drop entries whose file is missing; append notebooks that no entry covers.

    ``docs`` are the docnames that exist (without suffix). Returns the new TOC,
    the dropped entries and the appended notebooks.
    """
    toc = copy.deepcopy(toc)
    dropped: list[str] = []
    covered: set[str] = set()

    def walk_items(items: list) -> list:
        kept = []
        for item in items:
            if "file" in item:
                doc = str(item["file"]).removesuffix(".md").removesuffix(".ipynb")
                subs = walk_items(item.get("sections", [])) if "sections" in item else None
                if doc not in docs:
                    dropped.append(doc)
                    kept += subs or []  # promote sections of a missing page
                    continue
                covered.add(doc)
                if subs is not None:
                    if subs:
                        item["sections"] = subs
                    else:
                        item.pop("sections")
                kept.append(item)
            elif "glob" in item:
                hits = [d for d in docs if _matches(str(item["glob"]), d)]
                if not hits:
                    dropped.append(f"glob {item['glob']}")
                    continue
                covered.update(hits)
                kept.append(item)
            else:
                kept.append(item)
        return kept

    if "root" in toc:
        covered.add(str(toc["root"]).removesuffix(".md"))
    if "parts" in toc:
        parts = []
        for part in toc["parts"]:
            part["chapters"] = walk_items(part.get("chapters", []))
            if part["chapters"]:
                parts.append(part)
            else:
                dropped.append(f"part {part.get('caption', '?')}")
        toc["parts"] = parts
    elif "chapters" in toc:
        toc["chapters"] = walk_items(toc["chapters"])
    orphans = [nb for nb in notebooks if nb not in covered]
    if orphans:
        extra = {"caption": "More notebooks", "chapters": [{"file": nb} for nb in orphans]}
        toc.setdefault("parts", []).append(extra)
    return toc, dropped, orphans


def local_extensions(root: Path) -> list[Path]:
    """The files of the local Sphinx extensions that ``_config.yml`` names (``sphinx.local_extensions``)."""
    import yaml

    config = yaml.safe_load((root / "_config.yml").read_text())
    named = (config.get("sphinx") or {}).get("local_extensions") or {}
    files = [root / folder / f"{name}.py" for name, folder in named.items()]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise BuildError(f"_config.yml names Sphinx extensions that do not exist: {', '.join(missing)}")
    return files


#: A MyST include directive and its argument: ```{literalinclude} ../clutils/x.py or ```{include} file.
_INCLUDE = re.compile(r"^\s*(?:```|:::)\{(?:literal)?include\}\s+(\S+)", re.M)


def included_files(root: Path, pages: list[Path]) -> list[Path]:
    """The repository files that ``pages`` include (``literalinclude``, ``include``), outside ``book/``.

    The chapters pull their code from ``clutils`` so that it cannot drift; Sphinx reads those files
    from the staged tree, so they are staged too. Generated includes (``_generated/``) are written
    by the build itself. A target that does not exist, or lies outside the repository, is an error
    here rather than a warning and a page without its code.
    """
    found: set[Path] = set()
    for page in pages:
        for target in _INCLUDE.findall(page.read_text(encoding="utf-8")):
            if "_generated" in Path(target).parts:
                continue
            path = (page.parent / target).resolve()
            if not path.is_relative_to(root.resolve()) or not path.is_file():
                raise BuildError(f"{page.relative_to(root)} includes {target}, which is not a file of the repository")
            found.add(path)
    return sorted(found)


def stage_sources(paths: Paths, run: Run, results: list[NotebookResult], log=print) -> dict:
    """Sync everything the HTML build reads into ``_build/src``; return a summary."""
    import yaml

    src = paths.src
    expected: dict[Path, bytes | Path] = {}

    # pages
    for path in sorted((paths.root / "book").rglob("*")):
        if path.is_file() and "_generated" not in path.parts and ".ipynb_checkpoints" not in path.parts:
            expected[src / path.relative_to(paths.root)] = path
    # the clutils sources the pages include (their code beside the formulas)
    pages = sorted((paths.root / "book").rglob("*.md"))
    for path in included_files(paths.root, pages):
        expected[src / path.relative_to(paths.root.resolve())] = path
    # executed notebooks (those that failed are left out; the build fails anyway)
    executed_dir = paths.executed(run)
    notebooks = []
    for result in results:
        if result.status == "failed":
            continue
        expected[src / "notebooks" / f"{result.name}.ipynb"] = executed_dir / f"{result.name}.ipynb"
        notebooks.append(f"notebooks/{result.name}")
    # the local Sphinx extensions named in _config.yml (sphinx.local_extensions)
    extensions = local_extensions(paths.root)
    for extension in extensions:
        expected[src / extension.relative_to(paths.root)] = extension
    for extra in ("references.bib", "logo.png", "favicon.ico"):
        if (paths.root / extra).exists():
            expected[src / extra] = paths.root / extra

    # config: the repository URL follows the CI's repository when there is one
    config = yaml.safe_load((paths.root / "_config.yml").read_text())
    repo_url = os.environ.get("BOOK_REPOSITORY_URL")
    if not repo_url and os.environ.get("GITHUB_REPOSITORY"):
        server = os.environ.get("GITHUB_SERVER_URL", "https://github.com")
        repo_url = f"{server}/{os.environ['GITHUB_REPOSITORY']}"
    if repo_url:
        configured = str((config.get("repository") or {}).get("url", "")).rstrip("/")
        if repo_url.rstrip("/") != configured:
            log(f"  note: the launch buttons point to {repo_url}, but the notebooks' Colab cells install "
                f"from {configured} (_config.yml's repository.url); to make them agree, set repository.url "
                "and run tools/notebook_header.py")
        config.setdefault("repository", {})["url"] = repo_url
    branch = os.environ.get("BOOK_BRANCH")
    if branch:
        config.setdefault("repository", {})["branch"] = branch
    # Sphinx does not notice when an extension's code changes; an html-level config
    # value that does makes it rewrite every page.
    extension = _sha(*(path.read_bytes() for path in extensions))
    sphinx_config = config.setdefault("sphinx", {}).setdefault("config", {}) or {}
    config["sphinx"]["config"] = sphinx_config
    sphinx_config.setdefault("html_context", {})["clutils_extension"] = extension[:16]
    expected[src / "_config.yml"] = yaml.safe_dump(config, sort_keys=False, allow_unicode=True).encode()

    # table of contents
    docs = set(notebooks)
    for path in expected:
        rel = path.relative_to(src)
        if rel.suffix in {".md", ".ipynb"}:
            docs.add(rel.with_suffix("").as_posix())
    toc = yaml.safe_load((paths.root / "_toc.yml").read_text())
    toc, dropped, orphans = filter_toc(toc, docs, notebooks)
    for entry in dropped:
        log(f"  toc: skipped {entry} (not written yet)")
    for nb in orphans:
        log(f"  toc: {nb} matched no entry of _toc.yml; listed under 'More notebooks'")
    expected[src / "_toc.yml"] = yaml.safe_dump(toc, sort_keys=False, allow_unicode=True).encode()

    changed = 0
    for dst, origin in expected.items():
        if isinstance(origin, bytes):
            changed += _write_if_changed(dst, origin)
        else:
            changed += _copy_if_changed(origin, dst)
    # assets
    changed += npm_assets.vendor_web_assets(src / "_vendor")
    # remove what is no longer a source (the vendor folder and generated pages are managed above/below)
    keep = {p.resolve() for p in expected}
    removed = 0
    for path in sorted(src.rglob("*"), reverse=True):
        rel = path.relative_to(src)
        if rel.parts[0] in {"_vendor", "_build"} or "_generated" in rel.parts:
            continue
        if path.is_file() and path.resolve() not in keep:
            path.unlink()
            removed += 1
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    log(f"  staged {len(expected)} files into {src} ({changed} changed, {removed} removed)")
    return {"dropped": dropped, "orphans": orphans, "notebooks": notebooks}


def write_scorecard(paths: Paths, run: Run, results: list[NotebookResult], log=print) -> list:
    from clutils import scorecard

    names = [r.name for r in results if r.status != "failed"]
    claims = scorecard.load(paths.executed(run) / "claims", names)
    with_claims = {c.notebook for c in claims}
    text = scorecard.to_markdown(claims, [n for n in names if n not in with_claims])
    _write_if_changed(paths.src / "book" / "_generated" / "scorecard.md", text.encode())
    log(f"  {len(claims)} claims from {len(with_claims)} notebooks: {scorecard.tally(claims)}")
    return claims


def write_timings(paths: Paths, run: Run, results: list[NotebookResult], *, jobs: int | None,
                  cores: int, html: bool, log=print) -> dict:
    """Each notebook's time in this build (``tools/book_timings.py``): ``timings.json`` in the executed
    folder and, for the HTML, the table that ``book/teaching.md`` includes."""
    names = [r.name for r in results if r.status != "failed"]
    timings = book_timings.collect(paths.executed(run), names, profile=run.profile, device=run.device,
                                   dataset=run.dataset, seed=run.seed, cores=cores, jobs=jobs,
                                   threads=NOTEBOOK_THREADS[run.profile])
    book_timings.write_json(paths.executed(run) / "timings.json", timings)
    if html:
        _write_if_changed(paths.src / "book" / "_generated" / "timings.md",
                          book_timings.to_markdown(timings).encode())
    log(f"  timings of {len(names)} notebooks: {paths.executed(run) / 'timings.json'}")
    return timings


def build_html(paths: Paths, log=print) -> None:
    if paths.build.name != "_build":
        raise BuildError("the build folder must be named _build (jupyter-book writes <path-output>/_build/html)")
    paths.logs.mkdir(parents=True, exist_ok=True)
    log_file = paths.logs / "jupyter-book.log"
    jb = Path(sys.executable).with_name("jupyter-book")
    command = [str(jb)] if jb.exists() else [sys.executable, "-m", "jupyter_book.cli.main"]
    command += ["build", str(paths.src), "--path-output", str(paths.build.parent), "--builder", "html"]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    with log_file.open("w") as out:
        proc = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=paths.root)
    text = ANSI.sub("", log_file.read_text(errors="replace"))
    warnings = [line for line in text.splitlines() if "WARNING" in line or "ERROR" in line]
    for line in warnings[:40]:
        log(f"  {line}")
    if len(warnings) > 40:
        log(f"  ... {len(warnings) - 40} more (see {log_file})")
    log(f"  {len(warnings)} Sphinx warnings; log: {log_file}")
    if proc.returncode != 0:
        tail = "\n".join(text.splitlines()[-40:])
        raise BuildError(f"jupyter-book build failed (exit {proc.returncode}); last lines:\n{tail}")
    log(f"  HTML in {paths.html}")


# ----------------------------------------------------------------------------- data first


def check_datasets(run: Run, sources: list[Path], log=print) -> None:
    """Load (downloading if needed) every dataset the notebooks need, before executing any.

    Raises BuildError within seconds on a machine without them, with the command that works.
    """
    from clutils.data import preflight

    code = "\n".join("".join(cell.get("source", "")) for path in sources
                     for cell in read_notebook(path).get("cells", []) if cell.get("cell_type") == "code")
    needed = preflight.datasets_needed(preflight.experiments_in(code), run.profile, run.dataset)
    log(f"  datasets needed: {', '.join(sorted(needed)) or 'none'}")
    missing = preflight.missing_datasets(needed)
    if not missing:
        return
    lines = [f"the notebooks need data that is not on this machine: {', '.join(missing)}"]
    for name, reason in missing.items():
        lines += [f"  [{name}] " + line for line in reason.splitlines()]
    if "fashion-mnist" not in missing and run.dataset != "fashion-mnist":
        lines.append("Nothing was executed. To build the book on Fashion-MNIST instead (every caption says so):")
        lines.append(f"  make book PROFILE={run.profile} DATASET=fashion-mnist")
    else:
        lines.append("Nothing was executed. Fashion-MNIST works offline once Debian's package is installed:")
        lines.append("  sudo apt-get install dataset-fashion-mnist")
        lines.append(f"  make book PROFILE={run.profile} DATASET=fashion-mnist")
    raise BuildError("\n".join(lines))


# ----------------------------------------------------------------------------- main


def write_ci_summary(run: Run, results: list[NotebookResult], failures: list[str]) -> None:
    """On GitHub Actions, the outcome as the job's summary (``$GITHUB_STEP_SUMMARY``), naming
    every notebook and, first line each, every failure (a failed notebook, a core claim)."""
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return
    lines = [f"### Book {run.tag}: {'FAILED' if failures else 'built'}", ""]
    lines += [f"- `{r.name}`: {r.status}" + (f" ({r.seconds:.0f} s)" if r.seconds else "") for r in results]
    if failures:
        lines += ["", "Failures:", ""] + [f"- {failure.splitlines()[0]}" for failure in failures]
    with open(target, "a", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n\n")


def build(run: Run, paths: Paths, *, only: list[str] | None = None, chapter: str | None = None,
          force: bool = False, html: bool = True, jobs: int | None = None, from_executed: bool = False,
          log=print) -> int:
    """Execute the notebooks (``jobs`` at a time; None: what the machine has) and build the HTML.

    ``from_executed``: execute nothing; build from the executed copies already in
    ``_build/executed/<run>/`` (the CI's gathering job), naming every notebook that has none.
    """
    timer = Timer()
    t0 = time.perf_counter()
    results: list[NotebookResult] = []
    failures: list[str] = []
    print(f"Building the book: profile={run.profile} device={run.device} "
          f"dataset={run.dataset or '(papers defaults)'} seed={run.seed}", flush=True)
    try:
        with timer.stage("assets (npm)"):
            for name in ("mathjax", "requirejs", "html-manager"):
                npm_assets.fetch(name)
        sources = notebook_sources(paths, only)
        if chapter:
            try:
                in_chapter = {row["notebook"] for row in book_matrix.matrix(paths.root, chapter)["include"]}
            except book_matrix.MatrixError as err:
                raise BuildError(str(err)) from None
            sources = [p for p in sources if p.stem in in_chapter]
        if (only or chapter) and not sources:
            raise BuildError(f"no notebook under {paths.notebooks} matches --only {' '.join(only or [])}"
                             f"{' --chapter ' + chapter if chapter else ''}")
        if from_executed:
            with timer.stage("gather executed notebooks"):
                results = gather_executed(sources, run, paths, log=log)
        else:
            with timer.stage("datasets"):
                check_datasets(run, sources, log=log)
            with timer.stage("notebooks"):
                if not sources:
                    log("  no notebooks found under notebooks/")
                gpus = visible_gpus(run.device)
                cores = cpu_cores()
                results = execute_notebooks(sources, run, paths, jobs=jobs or default_jobs(run, gpus, cores),
                                            gpus=gpus, cores=cores, force=force, log=log)
        failures += [r.error for r in results if r.status == "failed"]
        if html:
            with timer.stage("stage sources"):
                stage_sources(paths, run, results, log=log)
            with timer.stage("scorecard"):
                claims = write_scorecard(paths, run, results, log=log)
                write_timings(paths, run, results, jobs=jobs, cores=cpu_cores(), html=True, log=log)
            with timer.stage("html (jupyter-book)"):
                build_html(paths, log=log)
        else:
            from clutils import scorecard

            claims = scorecard.load(paths.executed(run) / "claims", [r.name for r in results])
            write_timings(paths, run, results, jobs=jobs, cores=cpu_cores(), html=False, log=log)
        from clutils import scorecard

        broken = scorecard.core_failures(claims)
        for claim in broken:
            failures.append(f"core claim not reproduced in profile {claim.profile}: {claim.describe()}"
                            f" (notebook {claim.notebook})")
    except BuildError as err:
        failures.append(str(err))
    total = time.perf_counter() - t0
    print(timer.report(results, total), flush=True)
    write_ci_summary(run, results, failures)
    if failures:
        print("\nBUILD FAILED:", file=sys.stderr)
        for failure in failures:
            print(f"- {failure}", file=sys.stderr)
        return 1
    if html:
        print(f"\nBook built in {total:.1f} s: {paths.html / 'index.html'}")
    else:
        print(f"\nNotebooks done in {total:.1f} s (no HTML): {paths.executed(run)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default=os.environ.get("PROFILE", "quick"), choices=PROFILES)
    parser.add_argument("--device", default=os.environ.get("DEVICE", "auto"), choices=DEVICES)
    parser.add_argument("--dataset", default=os.environ.get("DATASET", ""),
                        help="dataset override for every notebook; empty = each paper's own dataset")
    parser.add_argument("--seed", type=int, default=int(os.environ.get("SEED", "0")))
    parser.add_argument("--build-dir", type=Path, default=ROOT / "_build")
    parser.add_argument("--only", nargs="*", help="only these notebooks (glob on the name)")
    parser.add_argument("--force", action="store_true", help="re-execute even when cached")
    parser.add_argument("--chapter", default=os.environ.get("CHAPTER", ""),
                        help="only this chapter's notebooks (as in _toc.yml, e.g. alasso); empty: all")
    parser.add_argument("--jobs", type=_jobs, default=os.environ.get("JOBS", ""),
                        help="notebooks executed at once; empty or 0: one per GPU, else the CPU cores "
                             "divided by one notebook's threads")
    parser.add_argument("--no-html", action="store_true", help="execute notebooks only")
    parser.add_argument("--from-executed", action="store_true",
                        help="execute nothing: build the HTML and scorecard from the executed copies in "
                             "_build/executed/ (the CI's gathering job); a notebook without one fails the build")
    args = parser.parse_args(argv)
    if args.from_executed and (args.force or args.no_html):
        parser.error("--from-executed executes nothing: it takes neither --force nor --no-html")
    run = Run(args.profile, args.device, args.dataset.strip() or None, args.seed)
    paths = Paths(ROOT, args.build_dir.resolve())
    return build(run, paths, only=args.only, chapter=args.chapter.strip() or None, force=args.force,
                 html=not args.no_html, jobs=args.jobs, from_executed=args.from_executed)


def _jobs(text: str) -> int | None:
    """``--jobs``/``JOBS``: a positive count, or empty/0 for the machine's default."""
    text = str(text).strip()
    if text in {"", "0", "auto"}:
        return None
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"JOBS must be a whole number of notebooks at once (or 0/empty "
                                         f"for the machine's default), not {text!r}")
    return int(text)


if __name__ == "__main__":
    sys.exit(main())
