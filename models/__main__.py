"""Administrative commands: `python -m models create-account NAME`, `migrate`, `new-secret-key`, `rotate-secret`.

create-account prints the new API key alone on the last line; it is shown only then. new-secret-key
prints a fresh key for SECRET_KEY; rotate-secret re-encrypts every stored brand credential with the
first key of SECRET_KEY (see models/encryption.py for the rotation steps).
"""
from __future__ import annotations

import argparse
import sys

from models.logs import one_line
from models.settings import SettingsError, get_settings


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create-account", help="create an account and print its API key")
    create.add_argument("name")
    create.add_argument("--if-missing", action="store_true",
                        help="do nothing (exit 0, print nothing) if the account already exists")
    sub.add_parser("migrate", help="create or migrate the schema")
    sub.add_parser("new-secret-key", help="print a fresh key for SECRET_KEY")
    sub.add_parser("rotate-secret", help="re-encrypt every stored brand credential with the first key of SECRET_KEY")
    args = parser.parse_args(argv)

    if args.command == "new-secret-key":
        from models.encryption import new_key

        print(new_key())
        return 0

    try:
        settings = get_settings()
        from models.db import open_database
        from models.schema import ensure_schema

        owner = open_database(settings.database_url)
        version = ensure_schema(owner)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a database we cannot reach: one line, not a traceback
        print(f"error: cannot open the database {settings.database_url}: {one_line(exc)}", file=sys.stderr)
        return 1

    if args.command == "migrate":
        print(f"schema at version {version}")
        return 0
    if args.command == "rotate-secret":
        from models.encryption import reencrypt_credentials

        try:
            count = owner.write(reencrypt_credentials)
        except SettingsError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"re-encrypted the credentials of {count} brand connection(s) with the first key of SECRET_KEY; "
              "the other keys may now be removed")
        return 0

    from models.accounts import AccountExists, account_by_name, create_account

    try:
        if args.if_missing and owner.call(account_by_name, args.name) is not None:
            return 0
        account, key = owner.write(create_account, args.name)
    except AccountExists as exc:
        if args.if_missing:  # another run created it after our look: the same outcome
            return 0
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"created account {account.name} ({account.id}); its API key (shown only now):")
    print(key)
    return 0


if __name__ == "__main__":
    sys.exit(main())
