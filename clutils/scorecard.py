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
from typing import Iterable

ENV_DIR = "CLUTILS_SCORECARD_DIR"
ENV_NOTEBOOK = "CLUTILS_NOTEBOOK"
#: Profiles in which a failing core claim fails the build. ``smoke`` runs are
#: too small to reproduce anything; they only check that the code runs.
STRICT_PROFILES = ("quick", "paper")
FORMAT = 1


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

    def describe(self) -> str:
        return (
            f"[{self.chapter}] {self.claim!r}: paper {self.paper}; measured {self.measured}"
            f" ({self.dataset}, profile {self.profile}, device {self.device}, seed {self.seed})"
            + (f"; criterion: {self.criterion}" if self.criterion else "")
        )


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
    ) -> Claim:
        """Record one claim; ``reproduced`` is the notebook's verdict, ``core`` marks a chapter's core claim."""
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
        held = sum(c.reproduced for c in self.claims)
        return f"Scorecard({self.chapter!r}: {held}/{len(self.claims)} claims reproduced)"


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


def core_failures(claims: Iterable[Claim], profiles: Iterable[str] = STRICT_PROFILES) -> list[Claim]:
    """Core claims that did not reproduce in a profile where they must."""
    profiles = set(profiles)
    return [c for c in claims if c.core and not c.reproduced and c.profile in profiles]


_COLUMNS = ["chapter", "claim", "paper", "measured", "verdict", "core", "dataset", "profile", "device", "seed"]


def _verdict(claim: Claim) -> str:
    return "✓ reproduced" if claim.reproduced else "✗ not reproduced"


def table(claims: Iterable[Claim]):
    """A pandas DataFrame of ``claims`` (one row each)."""
    import pandas as pd

    rows = []
    for c in claims:
        row = dataclasses.asdict(c)
        row["verdict"] = _verdict(c)
        row["core"] = "core" if c.core else ""
        rows.append(row)
    return pd.DataFrame(rows, columns=_COLUMNS + ["criterion"])


def _escape(text: str) -> str:
    return (
        str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "&#124;")
    )


def to_html(claims: list[Claim], title: str = "Scorecard") -> str:
    """A self-contained HTML table (used by the notebooks' last cell)."""
    if not claims:
        return f"<p><strong>{_escape(title)}</strong>: no claims recorded.</p>"
    held = sum(c.reproduced for c in claims)
    head = "".join(f"<th>{h}</th>" for h in ["claim", "paper", "measured", "verdict", "core", "run"])
    body = []
    for c in claims:
        colour = "#1a7f37" if c.reproduced else "#cf222e"
        run = f"{c.dataset}, {c.profile}, {c.device}, seed {c.seed}"
        crit = f"<br><small>{_escape(c.criterion)}</small>" if c.criterion else ""
        body.append(
            "<tr>"
            f"<td>{_escape(c.claim)}{crit}</td><td>{_escape(c.paper)}</td><td>{_escape(c.measured)}</td>"
            f'<td style="color:{colour};font-weight:bold">{_verdict(c)}</td>'
            f"<td>{'core' if c.core else ''}</td><td>{_escape(run)}</td>"
            "</tr>"
        )
    return (
        f'<div class="clutils-scorecard"><p><strong>{_escape(title)}</strong>: '
        f"{held} of {len(claims)} claims reproduced.</p>"
        f'<table class="table"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'
    )


def to_markdown(claims: list[Claim], chapters_without_claims: Iterable[str] = ()) -> str:
    """The book's aggregated scorecard as MyST markdown: a summary, then one table per chapter."""
    lines: list[str] = []
    if not claims:
        lines.append("No notebook has recorded a claim yet.")
    else:
        held = sum(c.reproduced for c in claims)
        core = [c for c in claims if c.core]
        core_held = sum(c.reproduced for c in core)
        runs = sorted({f"{c.dataset}, profile {c.profile}, device {c.device}, seed {c.seed}" for c in claims})
        lines.append(
            f"**{held} of {len(claims)} claims reproduced** "
            f"({core_held} of {len(core)} core claims). Runs: {'; '.join(runs)}."
        )
        lines.append("")
        chapters: dict[str, list[Claim]] = {}
        for c in claims:
            chapters.setdefault(c.chapter, []).append(c)
        for chapter, items in chapters.items():
            ok = sum(c.reproduced for c in items)
            lines += ["", f"## {chapter}", "", f"{ok} of {len(items)} claims reproduced.", ""]
            lines.append("| claim | paper | measured | verdict | core | dataset | profile | device |")
            lines.append("| --- | --- | --- | --- | --- | --- | --- | --- |")
            for c in items:
                cells = [
                    c.claim + (f" <br>*{c.criterion}*" if c.criterion else ""),
                    c.paper,
                    c.measured,
                    ("**✓ reproduced**" if c.reproduced else "**✗ not reproduced**"),
                    "core" if c.core else "",
                    c.dataset,
                    c.profile,
                    c.device,
                ]
                lines.append("| " + " | ".join(_escape(x).replace("&lt;br&gt;", "<br>") for x in cells) + " |")
    missing = list(chapters_without_claims)
    if missing:
        lines += ["", "Notebooks that recorded no claim: " + ", ".join(f"`{m}`" for m in missing) + "."]
    return "\n".join(lines) + "\n"
