"""``modelport keys create|list|revoke``: API keys, managed on the store directly (which is
how the first admin key is made; the admin routes ``/keys`` do the same over HTTP)."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import sys
from typing import Any

from modelport.cli_security import read_secret
from modelport.errors import ModelportError
from modelport.keys import SCOPES, ApiKey, new_key, parse_duration
from modelport.stores import store_from_url


def add_parser(commands: Any, default_store: str) -> None:
    keys = commands.add_parser(
        "keys",
        help="create, list and revoke API keys",
        description="Manage the API keys kept in a store; every server using that store "
        "accepts them (a revoked key stops working within a second).",
    )
    verbs = keys.add_subparsers(dest="keys_command", metavar="VERB", required=True)
    create = verbs.add_parser(
        "create",
        help="make a key and print its secret (shown only this once)",
        description="Make a key. The secret goes to stdout alone (KEY=$(modelport keys "
        "create ...)); what it is goes to stderr.",
    )
    create.add_argument("--scope", required=True, choices=SCOPES, help="what the key may do")
    create.add_argument("--name", default=None, help="a name to recognise the key by")
    create.add_argument(
        "--endpoints",
        default=None,
        metavar="NAMES",
        help="comma-separated endpoints a client or worker key is limited to (default: all)",
    )
    create.add_argument(
        "--expires-in", default=None, metavar="DURATION", help="e.g. 3600, 12h or 90d"
    )
    create.add_argument("--rate", default=None, help="requests per time, e.g. 20/s or 600/min")
    create.add_argument(
        "--burst", type=int, default=None, help="requests allowed at once (default: the rate/s)"
    )
    create.add_argument("--quota", default=None, help="requests per UTC day, e.g. 10000/day")
    create.add_argument(
        "--max-queued", type=int, default=None, metavar="N", help="queued jobs at once"
    )
    create.add_argument(
        "--webhook-secret-file",
        default=None,
        metavar="PATH",
        help="sign the webhooks of this key's jobs with the secret in this file (whsec_ and "
        "base64) instead of the server's",
    )
    listing = verbs.add_parser("list", help="list the keys (never their secrets)")
    revoke = verbs.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id", metavar="KEY_ID")
    for verb in (create, listing, revoke):
        verb.add_argument(
            "--store", default=default_store, help="the store URL (default: %(default)s)"
        )
        verb.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    store = store_from_url(args.store)
    await store.open()
    try:
        if args.keys_command == "create":
            return await _create(store, args)
        if args.keys_command == "list":
            keys = [ApiKey.from_dict(k) for k in await store.list_keys()]
            if args.json:
                print(json.dumps([k.public() for k in keys], indent=2))
            else:
                _table(keys)
            return 0
        if not await store.delete_key(args.key_id):
            raise ModelportError(f"no key with id {args.key_id!r} in {args.store}")
        print(f"revoked {args.key_id}", file=sys.stderr)
        return 0
    finally:
        await store.close()


async def _create(store: Any, args: argparse.Namespace) -> int:
    endpoints = None
    if args.endpoints is not None:
        endpoints = [e.strip() for e in args.endpoints.split(",") if e.strip()]
    expires_at = None
    if args.expires_in is not None:
        expires_at = datetime.datetime.now(datetime.UTC).timestamp() + parse_duration(
            args.expires_in
        )
    key, secret = new_key(
        args.scope,
        name=args.name,
        endpoints=endpoints,
        expires_at=expires_at,
        rate=args.rate,
        burst=args.burst,
        quota=args.quota,
        max_queued=args.max_queued,
        webhook_secret=(
            read_secret(args.webhook_secret_file, "--webhook-secret-file")
            if args.webhook_secret_file
            else None
        ),
    )
    await store.put_key(key.to_dict())
    if args.json:
        print(json.dumps({**key.public(), "key": secret}, indent=2))
    else:
        print(secret)
        print(
            f"created {key.scope} key {key.id} ({key.name}); the secret above is shown only once",
            file=sys.stderr,
        )
    return 0


def _when(at: float | None) -> str:
    if at is None:
        return "-"
    return datetime.datetime.fromtimestamp(at, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _limits(key: ApiKey) -> str:
    parts = []
    if key.rate is not None:
        parts.append(f"{key.rate:g}/s burst {key.bucket_size}")
    if key.quota is not None:
        parts.append(f"{key.quota}/day")
    if key.max_queued is not None:
        parts.append(f"{key.max_queued} queued")
    return ", ".join(parts) or "-"


def _table(keys: list[ApiKey]) -> None:
    rows = [("ID", "NAME", "SCOPE", "ENDPOINTS", "LIMITS", "CREATED", "LAST USED", "EXPIRES")]
    for k in keys:
        endpoints = ",".join(k.endpoints) if k.endpoints is not None else "*"
        rows.append(
            (
                k.id,
                k.name,
                k.scope,
                endpoints,
                _limits(k),
                _when(k.created_at),
                _when(k.last_used),
                _when(k.expires_at),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
