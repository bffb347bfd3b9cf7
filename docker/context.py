"""What each image's build context must hold: the sources of its Dockerfile's COPY lines.

The Dockerfiles are the one owner of which repository files go into an image. This reads them
for docker/build-local.sh (which stages exactly these files), for the chart tests (which lay
out the training image's WORKDIR from its final stage) and for the test that checks each
Dockerfile's BuildKit `.dockerignore` allow-list against them. No third-party imports: the
build script runs it with any Python 3.

    python3 docker/context.py docker/model-server.Dockerfile docker/training-job.Dockerfile
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path


def _instructions(dockerfile: Path) -> list[list[str]]:
    """Each instruction's words, continuation lines joined, comments and blank lines dropped."""
    instructions: list[list[str]] = []
    pending = ""
    for line in dockerfile.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):  # a comment inside a continued RUN
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        instructions.append(shlex.split(pending + stripped, comments=False))
        pending = ""
    if pending:
        raise ValueError(f"{dockerfile}: the last instruction ends with a line continuation")
    return instructions


def copy_sources(dockerfile: Path, *, final_stage_only: bool = False) -> list[str]:
    """The repository paths COPY takes from the build context (not `--from` another stage), in
    order, without duplicates or trailing slashes; only the last stage's if asked."""
    sources: list[str] = []
    for words in _instructions(dockerfile):
        keyword = words[0].upper()
        if keyword == "FROM" and final_stage_only:
            sources.clear()
        if keyword not in ("COPY", "ADD"):
            continue
        arguments = [w for w in words[1:] if not w.startswith("--")]
        if any(w.startswith("--from=") for w in words[1:]):
            continue
        if len(arguments) < 2:
            raise ValueError(f"{dockerfile}: {' '.join(words)!r} names no source and destination")
        for source in arguments[:-1]:
            path = source.rstrip("/")
            if path not in sources:
                sources.append(path)
    return sources


def context_files(dockerfiles: list[Path]) -> list[str]:
    """Every Dockerfile's COPY sources, once each, in order."""
    files: list[str] = []
    for dockerfile in dockerfiles:
        files += [path for path in copy_sources(dockerfile) if path not in files]
    return files


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip().splitlines()[0])
        print("usage: python3 docker/context.py DOCKERFILE...")
        return 0 if argv else 2
    print("\n".join(context_files([Path(a) for a in argv])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
