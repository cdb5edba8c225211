"""The reproduction scorecard: every paper claim a notebook checks, and whether it held.

In a notebook::

    from clutils.scorecard import Scorecard

    card = Scorecard("Introduction", profile=profile, device=run_device, dataset=run_dataset, seed=seed)
    card.check(
        "Naive fine-tuning forgets the first task",
        paper="AR1 Fig. 3: NAIVE keeps almost nothing of batch 1",
        measured=f"{first:.2f} -> {last:.2f}",
        reproduced=last < 0.5 * first,
        criterion="acc(task 1, end) < 0.5 x acc(task 1, just learned)",
        core=True,
    )
    card  # the last line of the chapter shows its table

Every claim has a **kind** (:data:`KINDS`): ``empirical`` (a measurement that
could come out either way), ``analytic`` (true by construction: a formula
plotted, a frozen layer that stays frozen) or ``arithmetic`` (computed from the
paper's own numbers). Only empirical claims count in "N of M reproduced"; the
others are listed apart.

A claim measured on a **stand-in** for the paper's setting (another dataset,
fewer tasks, a smaller model) says so in its title: :func:`stand_in` compares
what ran with the paper's setting and ``check(..., stand_in=...)`` appends
"(stand-in: 5 tasks of Fashion-MNIST)" to the claim.

A comparison measured on several seeds is decided by
:func:`beyond_seed_noise` (the rule is in its docstring and in
:attr:`SeedComparison.rule`), so every notebook applies the same rule.

When the environment variable ``CLUTILS_SCORECARD_DIR`` is set (the book build
sets it), every :meth:`Scorecard.check` rewrites
``$CLUTILS_SCORECARD_DIR/<notebook>.json`` (``<notebook>`` from
``CLUTILS_NOTEBOOK``, else the chapter's name). The build reads these files
back with :func:`load`, renders the book's scorecard page with
:func:`to_markdown` and fails when :func:`core_failures` is not empty: a core
claim that does not hold in the ``quick`` (or ``paper``) profile.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

ENV_DIR = "CLUTILS_SCORECARD_DIR"
ENV_NOTEBOOK = "CLUTILS_NOTEBOOK"
#: Profiles in which a failing core claim fails the build. ``smoke`` runs are
#: too small to reproduce anything; they only check that the code runs.
STRICT_PROFILES = ("quick", "paper")
FORMAT = 2
#: What a claim's verdict rests on; only ``empirical`` claims are counted in the tally.
KINDS = ("empirical", "analytic", "arithmetic")
#: How many standard errors the mean paired difference must clear (:func:`beyond_seed_noise`).
NOISE_FACTOR = 2.0
#: How many seeds a core claim's comparison runs (:func:`core_seeds`); smoke runs only check
#: that the code works, so two (the fewest that give a standard error) keep them fast.
CORE_SEEDS = {"smoke": 2, "quick": 3, "paper": 3}


@dataclasses.dataclass
class Claim:
    chapter: str
    claim: str  # the claim in words
    paper: str  # the paper's figure or number
    measured: str  # our measured value, formatted for reading
    reproduced: bool
    core: bool
    profile: str
    device: str
    dataset: str
    seed: int
    criterion: str = ""  # how "reproduced" was decided
    value: float | None = None  # the measured value as a number, when there is one
    notebook: str = ""
    kind: str = "empirical"  # one of KINDS
    stand_in: str = ""  # what ran instead of the paper's setting ("" when it is the paper's)
    seeds: list[int] | None = None  # the seeds a multi-seed comparison ran (None: the card's seed)

    @property
    def title(self) -> str:
        """The claim in words, with "(stand-in: ...)" when it was measured on a stand-in."""
        return f"{self.claim} (stand-in: {self.stand_in})" if self.stand_in else self.claim

    @property
    def counted(self) -> bool:
        """Whether the claim counts in "N of M reproduced" (empirical claims only)."""
        return self.kind == "empirical"

    def seed_text(self) -> str:
        if self.seeds:
            return "seeds " + ", ".join(str(s) for s in self.seeds)
        return f"seed {self.seed}"

    def describe(self) -> str:
        return (
            f"[{self.chapter}] {self.title!r}: paper {self.paper}; measured {self.measured}"
            f" ({self.dataset}, profile {self.profile}, device {self.device}, {self.seed_text()})"
            + (f"; criterion: {self.criterion}" if self.criterion else "")
        )

    # A check as the last expression of a notebook cell reads as one sentence, not a repr:
    # "✓ reproduced (core): <claim>. Measured <value>; paper: <figure>."
    def verdict_text(self) -> str:
        """"✓ reproduced" / "✗ not reproduced" (empirical), "✓ holds" / "✗ does not hold" (the others)."""
        if self.counted:
            return "✓ reproduced" if self.reproduced else "✗ not reproduced"
        return "✓ holds" if self.reproduced else "✗ does not hold"

    def sentence(self) -> str:
        """The claim in one line: verdict, title, measured value and the paper's figure."""
        core = " (core)" if self.core else ""
        return f"{self.verdict_text()}{core}: {self.title}. Measured {self.measured}; paper: {self.paper}."

    def _repr_markdown_(self) -> str:
        core = " (core)" if self.core else ""
        return (f"**{self.verdict_text()}**{core}: {_escape(self.title)}. Measured {_escape(self.measured)};"
                f" paper: {_escape(self.paper)}.")

    def _repr_html_(self) -> str:
        colour = "#1a7f37" if self.reproduced else "#cf222e"
        core = " <small>(core)</small>" if self.core else ""
        return (f'<p class="clutils-claim"><span style="color:{colour};font-weight:bold">'
                f"{_escape(self.verdict_text())}</span>{core}: {_escape(self.title)}. "
                f"Measured {_escape(self.measured)}; paper: {_escape(self.paper)}.</p>")


def _format(value) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "chapter"


# ----------------------------------------------------------------------------- stand-ins


def _same(a, b) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a.strip().lower() == b.strip().lower()
    return a == b


def stand_in(paper: Mapping[str, Any], ran: Mapping[str, Any]) -> str:
    """What ran instead of the paper's setting, for a claim's title; ``""`` when nothing differs.

    Both mappings may give ``dataset`` (a readable name), ``tasks`` (how many)
    and ``model`` (a short description); a key missing from either is not
    compared. A differing dataset or task count is named as "5 tasks of
    Fashion-MNIST" (what ran), a differing model is added after a comma::

        stand_in({"dataset": "CIFAR-10/100", "tasks": 30}, {"dataset": "Fashion-MNIST", "tasks": 5})
        # -> "5 tasks of Fashion-MNIST"
    """
    unknown = (set(paper) | set(ran)) - {"dataset", "tasks", "model"}
    if unknown:
        raise ValueError(f"stand_in compares only dataset, tasks and model; got {sorted(unknown)}")

    def differs(key: str) -> bool:
        return key in paper and key in ran and not _same(paper[key], ran[key])

    parts = []
    if differs("dataset") or differs("tasks"):
        dataset = ran.get("dataset", paper.get("dataset"))
        tasks = ran.get("tasks")
        parts.append(f"{tasks} tasks of {dataset}" if tasks is not None and dataset else str(dataset or f"{tasks} tasks"))
    if differs("model"):
        parts.append(str(ran["model"]))
    return ", ".join(parts)


# ----------------------------------------------------------------------------- seed noise


@dataclasses.dataclass(frozen=True)
class SeedComparison:
    """A comparison measured once per seed: the per-seed differences and the verdict on them."""

    larger: tuple[float, ...]
    smaller: tuple[float, ...]
    seeds: tuple[int, ...]
    factor: float = NOISE_FACTOR

    @property
    def differences(self) -> tuple[float, ...]:
        return tuple(a - b for a, b in zip(self.larger, self.smaller))

    @property
    def n(self) -> int:
        return len(self.differences)

    @property
    def mean(self) -> float:
        return float(sum(self.differences) / self.n)

    @property
    def stderr(self) -> float:
        """Standard error of the mean difference: sample standard deviation / sqrt(n)."""
        m = self.mean
        variance = sum((d - m) ** 2 for d in self.differences) / (self.n - 1)
        return math.sqrt(variance / self.n)

    @property
    def held(self) -> bool:
        return self.mean > self.factor * self.stderr

    @property
    def rule(self) -> str:
        return (f"mean paired difference over {self.n} seeds > {self.factor:g} standard errors "
                f"of the difference")

    def summary(self, scale: float = 100.0, unit: str = " points") -> str:
        """Per-seed differences, their mean and standard error, e.g. for ``measured=``."""
        per_seed = ", ".join(f"{scale * d:+.1f}" for d in self.differences)
        return (f"difference per seed ({', '.join(str(s) for s in self.seeds)}): {per_seed}; "
                f"mean {scale * self.mean:+.1f} +/- {scale * self.stderr:.1f}{unit} (standard error)")


def core_seeds(profile: str, seed: int = 0) -> list[int]:
    """The seeds a core claim's comparison runs in ``profile``: ``seed``, ``seed + 1``, ..."""
    if profile not in CORE_SEEDS:
        raise ValueError(f"unknown profile {profile!r}; choose one of: {', '.join(CORE_SEEDS)}")
    return [int(seed) + k for k in range(CORE_SEEDS[profile])]


def beyond_seed_noise(
    larger: Sequence[float],
    smaller: Sequence[float] | float = 0.0,
    *,
    seeds: Sequence[int] | None = None,
    factor: float = NOISE_FACTOR,
) -> SeedComparison:
    """Decide "larger > smaller" from one measurement of each per seed, beyond seed noise.

    With the paired differences d_s = larger_s - smaller_s over n seeds, mean
    d and standard error SE = std(d, ddof=1) / sqrt(n), the comparison holds
    when mean d > ``factor`` x SE (``factor`` 2 by default: about a one-sided
    97.5% test under a normal approximation). ``smaller`` may be one number (a
    threshold), then every seed is compared with it. At least two seeds are
    needed to estimate SE; the book runs three or more in the quick profile.
    """
    larger = [float(x) for x in larger]
    if isinstance(smaller, (int, float)):
        smaller = [float(smaller)] * len(larger)
    smaller = [float(x) for x in smaller]
    if len(larger) != len(smaller):
        raise ValueError(f"one value per seed on each side: got {len(larger)} and {len(smaller)}")
    if len(larger) < 2:
        raise ValueError(f"a standard error needs at least 2 seeds, got {len(larger)}")
    if any(math.isnan(x) for x in larger + smaller):
        raise ValueError("a per-seed value is nan")
    seeds = list(range(len(larger))) if seeds is None else [int(s) for s in seeds]
    if len(seeds) != len(larger):
        raise ValueError(f"{len(seeds)} seeds for {len(larger)} values")
    return SeedComparison(tuple(larger), tuple(smaller), tuple(seeds), float(factor))


class Scorecard:
    """The claims one notebook checks (see the module docstring)."""

    def __init__(
        self,
        chapter: str,
        *,
        profile: str,
        device: str,
        dataset: str | None,
        seed: int = 0,
        directory: str | os.PathLike | None = None,
        notebook: str | None = None,
    ) -> None:
        self.chapter = chapter
        self.profile = str(profile)
        self.device = str(device)
        self.dataset = "paper default" if dataset is None else str(dataset)
        self.seed = int(seed)
        self.notebook = notebook or os.environ.get(ENV_NOTEBOOK) or _slug(chapter)
        where = directory if directory is not None else os.environ.get(ENV_DIR)
        self.path: Path | None = Path(where) / f"{self.notebook}.json" if where else None
        self.claims: list[Claim] = []
        self._save()  # a re-run starts from an empty card

    def check(
        self,
        claim: str,
        *,
        paper,
        measured,
        reproduced: bool,
        core: bool = False,
        criterion: str = "",
        kind: str = "empirical",
        stand_in: str = "",
        seeds: Sequence[int] | None = None,
    ) -> Claim:
        """Record one claim; ``reproduced`` is the notebook's verdict, ``core`` marks a chapter's core claim.

        ``kind`` is one of :data:`KINDS`; ``stand_in`` (see :func:`stand_in`) what
        ran instead of the paper's setting; ``seeds`` the seeds of a multi-seed
        comparison (:func:`beyond_seed_noise`).
        """
        if kind not in KINDS:
            raise ValueError(f"unknown claim kind {kind!r}; choose one of: {', '.join(KINDS)}")
        value = None
        if isinstance(measured, (int, float)) and not isinstance(measured, bool):
            value = float(measured)
        item = Claim(
            chapter=self.chapter,
            claim=claim,
            paper=_format(paper),
            measured=_format(measured),
            reproduced=bool(reproduced),
            core=bool(core),
            profile=self.profile,
            device=self.device,
            dataset=self.dataset,
            seed=self.seed,
            criterion=criterion,
            value=value,
            notebook=self.notebook,
            kind=kind,
            stand_in=str(stand_in or ""),
            seeds=[int(x) for x in seeds] if seeds is not None else None,
        )
        self.claims.append(item)
        self._save()
        return item

    def _save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"format": FORMAT, "claims": [dataclasses.asdict(c) for c in self.claims]}
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(payload, indent=2))
        os.replace(tmp, self.path)

    def failures(self, core_only: bool = True) -> list[Claim]:
        return [c for c in self.claims if not c.reproduced and (c.core or not core_only)]

    def table(self):
        return table(self.claims)

    def _repr_html_(self) -> str:
        return to_html(self.claims, title=f"Scorecard: {self.chapter}")

    def __repr__(self) -> str:
        return f"Scorecard({self.chapter!r}: {tally(self.claims)})"


def load(directory: str | os.PathLike, notebooks: Iterable[str] | None = None) -> list[Claim]:
    """Every claim recorded under ``directory`` (only of ``notebooks`` when given)."""
    directory = Path(directory)
    wanted = set(notebooks) if notebooks is not None else None
    claims: list[Claim] = []
    for path in sorted(directory.glob("*.json")):
        if wanted is not None and path.stem not in wanted:
            continue
        payload = json.loads(path.read_text())
        fields = {f.name for f in dataclasses.fields(Claim)}
        for raw in payload.get("claims", []):
            claims.append(Claim(**{k: v for k, v in raw.items() if k in fields}))
    return claims


def tally(claims: Iterable[Claim]) -> str:
    """ "N of M claims reproduced" over the empirical claims, the others counted apart."""
    claims = list(claims)
    counted = [c for c in claims if c.counted]
    text = f"{sum(c.reproduced for c in counted)} of {len(counted)} claims reproduced"
    apart = [c for c in claims if not c.counted]
    if apart:
        kinds = " or ".join(k for k in KINDS[1:] if any(c.kind == k for c in apart))
        text += (f"; {len(apart)} {kinds} check{'s' if len(apart) > 1 else ''} listed apart"
                 f" ({sum(c.reproduced for c in apart)} of them hold)")
    return text


def core_failures(claims: Iterable[Claim], profiles: Iterable[str] = STRICT_PROFILES) -> list[Claim]:
    """Core claims that did not reproduce in a profile where they must."""
    profiles = set(profiles)
    return [c for c in claims if c.core and not c.reproduced and c.profile in profiles]


_COLUMNS = ["chapter", "claim", "kind", "paper", "measured", "verdict", "core", "dataset", "profile", "device",
            "seed"]


def _verdict(claim: Claim) -> str:
    return "✓ reproduced" if claim.reproduced else "✗ not reproduced"


def table(claims: Iterable[Claim]):
    """A pandas DataFrame of ``claims`` (one row each)."""
    import pandas as pd

    rows = []
    for c in claims:
        row = dataclasses.asdict(c)
        row["claim"] = c.title
        row["seed"] = c.seed_text()
        row["verdict"] = _verdict(c)
        row["core"] = "core" if c.core else ""
        rows.append(row)
    return pd.DataFrame(rows, columns=_COLUMNS + ["criterion"])


def _escape(text: str) -> str:
    return (
        str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "&#124;")
    )


def _split_by_kind(claims: Iterable[Claim]) -> tuple[list[Claim], list[Claim]]:
    claims = list(claims)
    return [c for c in claims if c.counted], [c for c in claims if not c.counted]


def _html_table(claims: list[Claim], with_kind: bool = False) -> str:
    head = ["claim", "paper", "measured", "verdict", "core", "run"] + (["kind"] if with_kind else [])
    body = []
    for c in claims:
        colour = "#1a7f37" if c.reproduced else "#cf222e"
        run = f"{c.dataset}, {c.profile}, {c.device}, {c.seed_text()}"
        crit = f"<br><small>{_escape(c.criterion)}</small>" if c.criterion else ""
        body.append(
            "<tr>"
            f"<td>{_escape(c.title)}{crit}</td><td>{_escape(c.paper)}</td><td>{_escape(c.measured)}</td>"
            f'<td style="color:{colour};font-weight:bold">{_verdict(c)}</td>'
            f"<td>{'core' if c.core else ''}</td><td>{_escape(run)}</td>"
            + (f"<td>{c.kind}</td>" if with_kind else "")
            + "</tr>"
        )
    cells = "".join(f"<th>{h}</th>" for h in head)
    return f'<table class="table"><thead><tr>{cells}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def to_html(claims: list[Claim], title: str = "Scorecard") -> str:
    """A self-contained HTML table (used by the notebooks' last cell); analytic and arithmetic
    checks in a second table, outside the count."""
    if not claims:
        return f"<p><strong>{_escape(title)}</strong>: no claims recorded.</p>"
    counted, apart = _split_by_kind(claims)
    parts = [f'<div class="clutils-scorecard"><p><strong>{_escape(title)}</strong>: {_escape(tally(claims))}.</p>']
    if counted:
        parts.append(_html_table(counted))
    if apart:
        parts.append("<p>Checks true by construction (analytic) or computed from the paper's own numbers "
                     "(arithmetic), not counted above:</p>")
        parts.append(_html_table(apart, with_kind=True))
    parts.append("</div>")
    return "".join(parts)


def _markdown_rows(claims: list[Claim], with_kind: bool = False) -> list[str]:
    head = ["claim", "paper", "measured", "verdict", "core", "dataset", "profile", "device", "seeds"]
    head += ["kind"] if with_kind else []
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for c in claims:
        cells = [
            c.title + (f" <br>*{c.criterion}*" if c.criterion else ""),
            c.paper,
            c.measured,
            ("**✓ reproduced**" if c.reproduced else "**✗ not reproduced**"),
            "core" if c.core else "",
            c.dataset,
            c.profile,
            c.device,
            c.seed_text().removeprefix("seeds ").removeprefix("seed "),
        ] + ([c.kind] if with_kind else [])
        lines.append("| " + " | ".join(_escape(x).replace("&lt;br&gt;", "<br>") for x in cells) + " |")
    return lines


def to_markdown(claims: list[Claim], chapters_without_claims: Iterable[str] = ()) -> str:
    """The book's aggregated scorecard as MyST markdown: a summary, then one table per chapter.

    Only empirical claims are counted in "N of M reproduced"; each chapter lists
    its analytic and arithmetic checks in a second table.
    """
    lines: list[str] = []
    if not claims:
        lines.append("No notebook has recorded a claim yet.")
    else:
        counted, apart = _split_by_kind(claims)
        core = [c for c in counted if c.core]
        runs = sorted({f"{c.dataset}, profile {c.profile}, device {c.device}, {c.seed_text()}" for c in claims})
        lines.append(
            f"**{sum(c.reproduced for c in counted)} of {len(counted)} claims reproduced** "
            f"({sum(c.reproduced for c in core)} of {len(core)} core claims). Runs: {'; '.join(runs)}."
        )
        if apart:
            lines += ["", f"Not counted: analytic checks (true by construction) and arithmetic ones (computed "
                          f"from the papers' own numbers), {sum(c.reproduced for c in apart)} of {len(apart)} "
                          "holding; each chapter lists them apart."]
        lines.append("")
        chapters: dict[str, list[Claim]] = {}
        for c in claims:
            chapters.setdefault(c.chapter, []).append(c)
        for chapter, items in chapters.items():
            mine, others = _split_by_kind(items)
            lines += ["", f"## {chapter}", "", f"{tally(items)}.", ""]
            if mine:
                lines += _markdown_rows(mine)
            if others:
                lines += ["", "Analytic and arithmetic checks (not counted):", ""]
                lines += _markdown_rows(others, with_kind=True)
    missing = list(chapters_without_claims)
    if missing:
        lines += ["", "Notebooks that recorded no claim: " + ", ".join(f"`{m}`" for m in missing) + "."]
    return "\n".join(lines) + "\n"
