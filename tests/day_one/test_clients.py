"""docs/clients.md: every snippet, executed as a user would run it, against a real server that
requires API keys; and each one's key matters (without it, the same snippet fails)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.day_one.conftest import USER_KEY
from tests.support.pipeline import REPO
from tests.support.server import ServerProcess

GUIDE = REPO / "docs" / "clients.md"
FENCE = re.compile(r"^```(bash|python)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def snippets() -> list[tuple[str, str]]:
    """(language, code) of every fenced block but the first (which sets the variables)."""
    blocks = FENCE.findall(GUIDE.read_text(encoding="utf-8"))
    assert blocks[0][0] == "bash" and "export HOUSING_URL" in blocks[0][1]
    return blocks[1:]


def test_the_guide_covers_both_protocols_with_each_client() -> None:
    code = "\n".join(body for _, body in snippets())
    for needle in (
        "curl",
        "import requests",
        "InferenceRESTClient",
        "tritonclient.http",
        ":predict",
        "/infer",
        "Authorization: Bearer",
    ):
        assert needle in code, needle
    assert len(snippets()) == 5


def run(language: str, code: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    command = ["bash", "-euo", "pipefail", "-c", code] if language == "bash" else None
    if command is None:
        command = [sys.executable, "-c", code]
    return subprocess.run(
        command, env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize("index", range(5))
def test_every_snippet_runs_against_a_keyed_server(
    index: int, keyed_server: ServerProcess, tmp_path: Path
) -> None:
    language, code = snippets()[index]
    env = {**os.environ, "HOUSING_URL": keyed_server.url, "HOUSING_API_KEY": USER_KEY}
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    result = run(language, code, env, tmp_path)
    assert result.returncode == 0, result.stderr
    # Each prints its predictions: a value in units of $100,000.
    assert re.search(r"\d\.\d+", result.stdout), result.stdout
    if "version" in code:
        assert re.search(r"\b1\b", result.stdout), result.stdout  # the served version
    # The key is what lets it through.
    refused = run(language, code, {**env, "HOUSING_API_KEY": "not-a-valid-key-0000"}, tmp_path)
    assert refused.returncode != 0, refused.stdout
