"""`inferwatch user create|list` — people who sign in to the web app. The password is read
from a prompt, or from standard input with `--password-stdin` (never from the command line,
where other users of the machine could see it)."""

from __future__ import annotations

import argparse
import getpass
import sys

from api.commands.common import add_server_options
from api.commands.token import _meta


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("user", help="create and list web users")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    create = verbs.add_parser("create", help="create a user who signs in to the web app")
    create.add_argument("username", help="letters, digits and . _ @ + -")
    create.add_argument(
        "--role",
        choices=("viewer", "admin"),
        default="viewer",
        help="viewer: read pages; admin: also change settings (default viewer)",
    )
    create.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    add_server_options(create, network=False)
    create.set_defaults(func=run_create)
    listing = verbs.add_parser("list", help="list users")
    add_server_options(listing, network=False)
    listing.set_defaults(func=run_list)


def run_create(args: argparse.Namespace) -> int:
    from api.meta.common import parse
    from api.meta.users import UserIn, create_user

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"Password for {args.username} (10 characters or more): ")
    data = parse(UserIn, {"username": args.username, "password": password, "role": args.role})
    meta = _meta(args)
    try:
        with meta.session() as session:
            user = create_user(session, data)
    finally:
        meta.close()
    sys.stdout.write(f"Created {user.role} {user.username} (id {user.id}). They can sign in at /login.\n")
    return 0


def run_list(args: argparse.Namespace) -> int:
    from api.meta.users import list_users

    meta = _meta(args)
    try:
        with meta.session() as session:
            page = list_users(session, limit=1000)
    finally:
        meta.close()
    if not page.items:
        sys.stdout.write("No users. Create one with: inferwatch user create NAME --role admin\n")
        return 0
    sys.stdout.write(f"{'ID':>4}  {'USERNAME':<24} {'ROLE':<7} {'STATE':<9} LAST SIGN-IN\n")
    for u in page.items:
        last = u.last_login_at.strftime("%Y-%m-%d %H:%M") if u.last_login_at else "never"
        sys.stdout.write(
            f"{u.id:>4}  {u.username:<24} {u.role:<7} {'disabled' if u.disabled else 'active':<9} {last}\n"
        )
    return 0
