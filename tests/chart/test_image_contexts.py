"""The Dockerfiles own which repository files go into each image: the BuildKit allow-lists
(`<name>.Dockerfile.dockerignore`) must say the same, and the reader of their COPY lines
(docker/context.py, used by docker/build-local.sh and the chart tests) must read them right."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chart.conftest import REPO
from tests.chart.containers import docker_context, training_image_files

DOCKERFILES = sorted((REPO / "docker").glob("*.Dockerfile"))
# BuildKit reads `<name>.Dockerfile.dockerignore`; the PostgreSQL image copies from docker/ only.
WITH_ALLOW_LIST = [d for d in DOCKERFILES if d.with_name(d.name + ".dockerignore").exists()]


def allow_list(dockerfile: Path) -> list[str]:
    """The `!path` entries of the Dockerfile's own .dockerignore."""
    ignore = dockerfile.with_name(dockerfile.name + ".dockerignore")
    return [
        line[1:].strip().rstrip("/")
        for line in ignore.read_text().splitlines()
        if line.startswith("!")
    ]


def test_the_two_project_images_have_allow_lists() -> None:
    assert [d.name for d in WITH_ALLOW_LIST] == [
        "model-server.Dockerfile",
        "training-job.Dockerfile",
    ]


@pytest.mark.parametrize("dockerfile", WITH_ALLOW_LIST, ids=lambda p: p.name)
def test_each_dockerignore_lets_in_exactly_what_its_dockerfile_copies(dockerfile: Path) -> None:
    allowed = allow_list(dockerfile)
    copied = docker_context().copy_sources(dockerfile)
    assert sorted(set(allowed)) == sorted(copied), (
        f"{dockerfile.name}.dockerignore lets in {sorted(set(allowed) - set(copied))} that "
        f"the Dockerfile does not copy, and leaves out {sorted(set(copied) - set(allowed))}"
    )


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_every_copied_path_exists_in_the_repository(dockerfile: Path) -> None:
    missing = [p for p in docker_context().copy_sources(dockerfile) if not (REPO / p).exists()]
    assert missing == [], f"{dockerfile.name} copies paths the repository lacks: {missing}"


def test_the_reader_takes_sources_from_the_context_only(tmp_path: Path) -> None:
    dockerfile = tmp_path / "x.Dockerfile"
    dockerfile.write_text(
        "FROM base AS builder\n"
        "COPY a.toml b.lock ./\n"
        "# a comment\n"
        "RUN echo one \\\n"
        "    # a comment inside a continued RUN\n"
        "    && echo two\n"
        "COPY --chown=1:1 pkg/ pkg/\n"
        "FROM base\n"
        "COPY --from=builder /opt/venv /opt/venv\n"
        "COPY data/x.dvc \\\n"
        "     data/.gitignore data/\n"
        "COPY pkg/ pkg/\n"
    )
    reader = docker_context()
    assert reader.copy_sources(dockerfile) == [
        "a.toml",
        "b.lock",
        "pkg",
        "data/x.dvc",
        "data/.gitignore",
    ]
    assert reader.copy_sources(dockerfile, final_stage_only=True) == [
        "data/x.dvc",
        "data/.gitignore",
        "pkg",
    ]


def test_the_reader_refuses_a_copy_without_a_destination(tmp_path: Path) -> None:
    dockerfile = tmp_path / "x.Dockerfile"
    dockerfile.write_text("FROM base\nCOPY lonely\n")
    with pytest.raises(ValueError, match="names no source and destination"):
        docker_context().copy_sources(dockerfile)


def test_the_staged_training_workdir_follows_the_dockerfile() -> None:
    files = training_image_files()
    # The pipeline's definition and the frozen reference set, not the code (the venv has it).
    assert {"dvc.yaml", "dvc.lock", "params.yaml", "dvc-remote"} <= set(files)
    assert "data/reference/reference.data.dvc" in files
    assert "housing" not in files and "training_job" not in files
