"""The ``fairgate`` command line."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from fairgate.gateway.config import CONFIG_ENV, Config, ConfigError, load_config

log = logging.getLogger("fairgate")

EXIT_USAGE = 2


def _config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="PATH",
        help=f"YAML configuration file (default: ${CONFIG_ENV}, else built-in "
        "defaults: the embedded SmolLM2 model on vLLM, data in ./.fairgate)",
    )


def load_config_from(args: argparse.Namespace) -> Config:
    return load_config(getattr(args, "config", None))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fairgate",
        description="OpenAI-compatible LLM gateway: fair, locality-aware scheduling over vLLM "
        "replicas, with every token metered into a signed, verifiable ledger.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = sub.add_parser(
        "serve",
        help="run the gateway (and the replicas it manages)",
        description="Run the gateway. Clients use it like the OpenAI API: "
        "base URL http://HOST:PORT/v1, 'Authorization: Bearer "
        "<key>'.",
    )
    _config_arg(serve)
    serve.add_argument("--host", help="listen address (overrides listen.host)")
    serve.add_argument("--port", type=int, help="listen port (overrides listen.port)")
    serve.add_argument(
        "--log-level",
        default=os.environ.get("FAIRGATE_LOG_LEVEL", "info"),
        choices=["debug", "info", "warning", "error"],
    )
    serve.set_defaults(func=_serve)

    keys = sub.add_parser("keys", help="manage API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    create = keys_sub.add_parser(
        "create",
        help="create an API key for a tenant; it is printed once and only its hash is stored",
    )
    _config_arg(create)
    create.add_argument("--tenant", required=True, help="tenant name")
    create.add_argument("--weight", type=float, help="tenant weight, if not set in the config")
    create.set_defaults(func=_keys_create)

    _register_optional(sub)
    return parser


def _register_optional(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from fairgate.gateway import cli_audit, cli_ledger, cli_replicas

    cli_ledger.register(sub, load_config_from)
    cli_audit.register(sub)
    cli_replicas.register(sub, load_config_from)


def _serve(args: argparse.Namespace) -> int:
    from fairgate.gateway.serve import serve

    config = load_config_from(args)
    if args.config:  # a reload (SIGHUP, POST /admin/reload) re-reads the same file
        os.environ[CONFIG_ENV] = str(Path(args.config).resolve())
    return serve(config, host=args.host, port=args.port, log_level=args.log_level)


def _keys_create(args: argparse.Namespace) -> int:
    from fairgate.gateway.auth import KeyStore

    config = load_config_from(args)
    if args.weight is not None and args.weight <= 0:
        print("fairgate: --weight must be positive", file=sys.stderr)
        return EXIT_USAGE
    key = KeyStore(config.data_dir).create(args.tenant, args.weight)
    print(key)
    print(
        f"created an API key for tenant '{args.tenant}' (stored hashed in "
        f"{Path(config.data_dir) / 'api_keys.json'}); it will not be shown again",
        file=sys.stderr,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as error:
        print(f"fairgate: invalid configuration:\n{error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
