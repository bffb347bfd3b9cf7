"""The command line of `model-server` (and `python -m model_server`): --help and --version only.

Everything else is configured by the environment (settings.py), as in a container. Parsing
comes before anything starts, so `--help` never binds a port or loads a model.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pydantic import AliasChoices, ValidationError

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


def variable(name: str) -> str:
    """The environment variable of the setting `name`."""
    alias = ServerSettings.model_fields[name].validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return f"{ServerSettings.model_config.get('env_prefix', '')}{name}".upper()


def environment() -> list[tuple[str, str]]:
    """(variable, default) of every setting, in the settings' order: the settings own both."""
    rows = []
    for name, field in ServerSettings.model_fields.items():
        env = variable(name)
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


def load_settings(prog: str) -> ServerSettings:
    """The settings from the environment; a refused value is one line per variable on stderr
    and exit 2, not a traceback."""
    try:
        return ServerSettings()
    except ValidationError as exc:
        print(f"{prog}: invalid configuration:", file=sys.stderr)
        for error in exc.errors():
            # A field's name or its alias (MLFLOW_TRACKING_URI); none for a check of several.
            where = str(error["loc"][0]) if error["loc"] else ""
            if where in ServerSettings.model_fields:
                where = variable(where)
            message = str(error["msg"]).removeprefix("Value error, ")
            print(f"  {where}: {message}" if where else f"  {message}", file=sys.stderr)
        raise SystemExit(2) from None
