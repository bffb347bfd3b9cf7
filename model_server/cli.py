"""The command line of `model-server` (and `python -m model_server`): --help and --version only.

Everything else is configured by the environment (settings.py), as in a container. Parsing
comes before anything starts, so `--help` never binds a port or loads a model.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from pydantic import AliasChoices

from housing.version import version
from model_server.settings import ServerSettings

DESCRIPTION = (
    "Serve the California Housing model from the MLflow registry over KServe v1, the Open "
    "Inference Protocol v2 and the operations API, until SIGTERM or Ctrl-C."
)
EPILOG_HEAD = (
    "Configuration is the environment only (defaults in brackets); "
    "see docs/model-server.md and docs/security.md."
)


def environment() -> list[tuple[str, str]]:
    """(variable, default) of every setting, in the settings' order: the settings own both."""
    prefix = ServerSettings.model_config.get("env_prefix", "")
    rows = []
    for name, field in ServerSettings.model_fields.items():
        alias = field.validation_alias
        env = alias.choices[0] if isinstance(alias, AliasChoices) else f"{prefix}{name}".upper()
        default = field.get_default(call_default_factory=True)
        if field.exclude or isinstance(default, tuple):
            default = ""
        rows.append((str(env), "" if default is None else str(default)))
    return rows


def parser(prog: str) -> argparse.ArgumentParser:
    width = max(len(env) for env, _ in environment())
    lines = [f"  {env:<{width}}  [{default}]" for env, default in environment()]
    command = argparse.ArgumentParser(
        prog=prog,
        description=DESCRIPTION,
        epilog="\n".join([EPILOG_HEAD, *lines]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    command.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    return command


def parse(argv: Sequence[str], prog: str) -> None:
    """Print help or the version and exit 0, or refuse an unknown argument (exit 2)."""
    parser(prog).parse_args(argv)
