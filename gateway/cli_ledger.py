"""``fairgate ledger ...``: export the billing ledger, verify an export, print the public key.

    fairgate ledger export --out FILE [--since T] [--until T] [--tenant NAME]
                           [--format jsonl|csv|cloudevents]
    fairgate ledger verify FILE --public-key PEM [--public-key PEM ...] [--allow-gaps]
    fairgate ledger public-key [--jwks]
    fairgate ledger rotate-key

T is RFC 3339 (``2025-01-31T00:00:00Z``; no offset means UTC) or unix seconds. ``verify`` needs
no configuration: it is what a customer runs offline. Exit codes: 0 ok, 1 the export (or the
ledger) is bad, 2 usage errors (argparse's own errors exit 2 too).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from fairgate.metering.errors import MeteringError
from fairgate.metering.export import ExportFormat, export_ledger
from fairgate.metering.ledger import SQLITE_FILENAME, open_ledger
from fairgate.metering.signing import Keyring, PublicKey, parse_public_keys
from fairgate.metering.timestamps import parse_time
from fairgate.metering.verify import verify_export

EXIT_OK = 0
EXIT_BAD = 1
EXIT_USAGE = 2


class LedgerConfig(Protocol):
    @property
    def data_dir(self) -> Path: ...

    @property
    def ledger_url(self) -> str | None: ...


LoadConfig = Callable[[argparse.Namespace], LedgerConfig]


def _time(text: str) -> float:
    try:
        return parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _config_arg(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS: never overwrite a --config given to a parent parser.
    parser.add_argument(
        "--config",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="YAML configuration file (default: $FAIRGATE_CONFIG)",
    )


def register(subparsers: Any, load_config: LoadConfig) -> None:
    """Add ``ledger`` and its actions to an argparse subparsers object.

    Each action sets ``func(args) -> int`` (the exit code).
    """
    ledger = subparsers.add_parser(
        "ledger",
        help="export and verify the signed usage ledger",
        description="Export the signed, hash-chained usage ledger and verify exports offline.",
    )
    actions = ledger.add_subparsers(dest="ledger_command", metavar="ACTION", required=True)

    export = actions.add_parser(
        "export",
        help="write ledger records to a file",
        description="Write ledger records (every chain, in seq order). A --tenant or time "
        "filtered JSONL export verifies with 'verify --allow-gaps'.",
    )
    _config_arg(export)
    export.add_argument("--out", required=True, metavar="FILE", help="output file, '-' for stdout")
    export.add_argument(
        "--since",
        type=_time,
        metavar="T",
        help="records finished at or after T (RFC 3339 or unix seconds)",
    )
    export.add_argument("--until", type=_time, metavar="T", help="records finished before T")
    export.add_argument("--tenant", metavar="NAME", help="only this tenant's records")
    export.add_argument(
        "--format",
        default=ExportFormat.JSONL.value,
        choices=[f.value for f in ExportFormat],
        help="jsonl (signed, verifiable; default), csv, or cloudevents",
    )
    export.set_defaults(func=lambda args: _export(args, load_config))

    verify = actions.add_parser(
        "verify",
        help="verify an exported JSONL file offline",
        description="Check every signature, hash link and seq of a JSONL (or CloudEvents) "
        "export. Exit 0 when all hold, 1 naming the first bad record and why, 2 on usage errors.",
    )
    verify.add_argument("file", metavar="FILE", help="the export to verify")
    verify.add_argument(
        "--public-key",
        required=True,
        action="append",
        metavar="PEM",
        help="public key file (PEM, or a JWKS from /.well-known/fairgate-keys); "
        "repeat for rotated keys",
    )
    verify.add_argument(
        "--allow-gaps",
        action="store_true",
        help="accept missing seqs (a filtered export) and report them",
    )
    verify.set_defaults(func=_verify)

    public_key = actions.add_parser("public-key", help="print the active signing public key")
    _config_arg(public_key)
    public_key.add_argument(
        "--jwks",
        action="store_true",
        help="print every known key as an RFC 8037 JWKS instead of PEM",
    )
    public_key.set_defaults(func=lambda args: _public_key(args, load_config))

    rotate = actions.add_parser(
        "rotate-key",
        help="make a fresh signing key active; old public keys stay published",
        description="Rotate the signing key kept in the data directory. Restart the gateway to "
        "sign with it. A key from FAIRGATE_SIGNING_KEY is rotated by replacing the secret.",
    )
    _config_arg(rotate)
    rotate.set_defaults(func=lambda args: _rotate(args, load_config))


def _fail(message: str, code: int) -> int:
    print(f"fairgate ledger: {message}", file=sys.stderr)
    return code


def _export(args: argparse.Namespace, load_config: LoadConfig) -> int:
    config = load_config(args)
    url = config.ledger_url
    if url is None and not (Path(config.data_dir) / SQLITE_FILENAME).exists():
        return _fail(f"no ledger in {config.data_dir}", EXIT_BAD)
    try:
        ledger = open_ledger(url, Path(config.data_dir), key=None)
    except MeteringError as exc:
        return _fail(str(exc), EXIT_BAD)
    try:
        options = {"since": args.since, "until": args.until, "tenant": args.tenant}
        if args.out == "-":
            count = export_ledger(ledger, sys.stdout, args.format, **options)
        else:
            out = Path(args.out)
            tmp = out.with_name(out.name + ".partial")
            try:
                with tmp.open("w", encoding="utf-8", newline="") as handle:
                    count = export_ledger(ledger, handle, args.format, **options)
                os.replace(tmp, out)  # a reader never sees a half-written export
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                return _fail(f"cannot write {out}: {exc}", EXIT_USAGE)
    finally:
        ledger.close()
    print(f"exported {count} records ({args.format}) to {args.out}", file=sys.stderr)
    return EXIT_OK


def _lines(path: Path) -> Iterator[str]:
    with path.open("rb") as handle:
        for raw in handle:
            yield raw.decode("utf-8", errors="replace")


def _verify(args: argparse.Namespace) -> int:
    keys: list[PublicKey] = []
    for key_path in args.public_key:
        try:
            keys.extend(parse_public_keys(Path(key_path).read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError, MeteringError) as exc:
            return _fail(f"cannot use public key {key_path}: {exc}", EXIT_USAGE)
    path = Path(args.file)
    if not path.is_file():
        return _fail(f"no such file: {path}", EXIT_USAGE)
    try:
        report = verify_export(_lines(path), keys, allow_gaps=args.allow_gaps)
    except OSError as exc:
        return _fail(f"cannot read {path}: {exc}", EXIT_USAGE)
    print(f"{path}: {report.summary()}")
    return EXIT_OK if report.ok else EXIT_BAD


def _public_key(args: argparse.Namespace, load_config: LoadConfig) -> int:
    config = load_config(args)
    try:
        ring = Keyring.load(Path(config.data_dir))
    except MeteringError as exc:
        return _fail(str(exc), EXIT_BAD)
    if args.jwks:
        print(json.dumps(ring.jwks(), indent=2))
    else:
        print(ring.active.public_pem(), end="")
    return EXIT_OK


def _rotate(args: argparse.Namespace, load_config: LoadConfig) -> int:
    config = load_config(args)
    try:
        ring = Keyring.load(Path(config.data_dir))
        old = ring.active.key_id
        fresh = ring.rotate()
    except MeteringError as exc:
        return _fail(str(exc), EXIT_BAD)
    print(
        f"rotated signing key {old} -> {fresh.key_id}; restart the gateway to use it",
        file=sys.stderr,
    )
    return EXIT_OK
