"""`inferwatch token create|list|revoke` — API tokens in the metadata database. The secret
is printed once, at creation; only its hash is kept."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from api.commands.common import add_server_options, settings_from_args

if TYPE_CHECKING:
    from api.meta import Meta


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("token", help="create, list and revoke API tokens")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    create = verbs.add_parser("create", help="create a token and print its secret (once)")
    create.add_argument(
        "--scope",
        required=True,
        choices=("ingest", "read", "admin"),
        help="ingest: send telemetry; read: the API and pages; admin: everything",
    )
    create.add_argument("--name", default="", help="what the token is for, e.g. 'collectors in prod'")
    add_server_options(create, network=False)
    create.set_defaults(func=run_create)

    listing = verbs.add_parser("list", help="list tokens (never their secrets)")
    listing.add_argument("--active", action="store_true", help="leave out revoked tokens")
    add_server_options(listing, network=False)
    listing.set_defaults(func=run_list)

    revoke = verbs.add_parser("revoke", help="revoke a token, by id or by its prefix (iwt_…)")
    revoke.add_argument("token", help="the token's id or displayed prefix")
    add_server_options(revoke, network=False)
    revoke.set_defaults(func=run_revoke)


def _meta(args: argparse.Namespace) -> Meta:
    from api.meta import open_meta, upgrade_metadata

    settings = settings_from_args(args)
    upgrade_metadata(settings)
    return open_meta(settings)


def run_create(args: argparse.Namespace) -> int:
    from api.meta.common import parse
    from api.meta.tokens import TokenIn, create_token

    data = parse(TokenIn, {"scope": args.scope, "name": args.name})
    meta = _meta(args)
    try:
        with meta.session() as session:
            token = create_token(session, data)
    finally:
        meta.close()
    out = sys.stdout
    out.write(
        f"Created token {token.id} ({token.scope}{', ' + token.name if token.name else ''}). "
        "Its secret, shown this once:\n\n"
    )
    out.write(f"    {token.secret}\n\n")
    out.write("Only its hash is kept: store it now. Clients send it as 'Authorization: Bearer <token>'.\n")
    return 0


def run_list(args: argparse.Namespace) -> int:
    from api.meta.tokens import list_tokens

    meta = _meta(args)
    try:
        with meta.session() as session:
            rows, offset = [], 0
            while True:
                page = list_tokens(session, include_revoked=not args.active, limit=1000, offset=offset)
                rows += page.items
                if page.next_offset is None:
                    break
                offset = page.next_offset
    finally:
        meta.close()
    out = sys.stdout
    if not rows:
        out.write("No tokens. Create one with: inferwatch token create --scope ingest|read|admin\n")
        return 0
    out.write(f"{'ID':>4}  {'PREFIX':<13} {'SCOPE':<7} {'CREATED':<17} {'LAST USED':<17} {'STATE':<8} NAME\n")
    for t in rows:
        used = f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "never"
        state = "revoked" if t.revoked_at else "active"
        out.write(
            f"{t.id:>4}  {t.prefix:<13} {t.scope:<7} {t.created_at:%Y-%m-%d %H:%M} {used:<17} {state:<8} "
            f"{t.name}\n"
        )
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    from api.meta.tokens import find_token, revoke_token

    meta = _meta(args)
    try:
        with meta.session() as session:
            token = revoke_token(session, find_token(session, args.token).id)
    finally:
        meta.close()
    sys.stdout.write(f"Revoked token {token.id} ({token.prefix}, {token.scope}).\n")
    return 0
