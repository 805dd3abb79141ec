"""Administrative commands: `python -m models create-account NAME`, `migrate`, `purge`, `new-secret-key`,
`rotate-secret`.

create-account prints the new API key alone on the last line; it is shown only then. purge runs one
retention pass now (what the worker does every PURGE_INTERVAL_S) and prints one line per kind:
`purge [--jobs-older-than 30d] [--readings-older-than 30d]`. new-secret-key prints a fresh key for
SECRET_KEY; rotate-secret re-encrypts every stored brand credential with the first key of SECRET_KEY
(see models/encryption.py for the rotation steps).
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
    create.add_argument(
        "--if-missing", action="store_true", help="do nothing (exit 0, print nothing) if the account already exists"
    )
    sub.add_parser("migrate", help="create or migrate the schema")
    purge = sub.add_parser("purge", help="delete finished jobs and old readings now (readings rolled up first)")
    purge.add_argument("--jobs-older-than", metavar="DURATION", help="e.g. 90s, 12h, 30d (default JOB_RETENTION_DAYS)")
    purge.add_argument(
        "--readings-older-than", metavar="DURATION", help="e.g. 90s, 12h, 30d (default READING_RETENTION_DAYS)"
    )
    sub.add_parser("new-secret-key", help="print a fresh key for SECRET_KEY")
    sub.add_parser("rotate-secret", help="re-encrypt every stored brand credential with the first key of SECRET_KEY")
    args = parser.parse_args(argv)
    if args.command == "purge":
        from models.retention import parse_duration

        for option in ("jobs_older_than", "readings_older_than"):
            value = getattr(args, option)
            if value is not None:
                try:
                    setattr(args, option, parse_duration(value))
                except ValueError as exc:
                    print(f"error: --{option.replace('_', '-')}: {exc}", file=sys.stderr)
                    return 2

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
        print(
            f"re-encrypted the credentials of {count} brand connection(s) with the first key of SECRET_KEY; "
            "the other keys may now be removed"
        )
        return 0

    if args.command == "purge":
        return _purge(owner, settings, args)

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


def _purge(owner, settings, args) -> int:
    from models.retention import Purge

    jobs_s = args.jobs_older_than if args.jobs_older_than is not None else settings.job_retention_days * 86400
    readings_s = (
        args.readings_older_than if args.readings_older_than is not None else settings.reading_retention_days * 86400
    )
    purge = Purge(owner, settings.purge_batch, rest=lambda _: None, rest_factor=0)
    jobs, attempts = purge.jobs(jobs_s)
    print(f"jobs: deleted {jobs} finished jobs and {attempts} attempts older than {jobs_s:g} s")
    readings, days = purge.readings(readings_s)
    print(f"readings: rolled up {days} days, deleted {readings} readings older than {readings_s:g} s")
    return 0


if __name__ == "__main__":
    from models.db import close_database
    from models.process import exit_process

    code = main()
    # Closed here (a SQLite WAL checkpointed and removed), not left to the interpreter's teardown, which
    # exit_process skips: ~20 ms of CPU a run (docs/benchmarks.md).
    close_database()
    exit_process(code)
