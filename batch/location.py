"""An output prefix is refused at launch unless the job's last write can use it."""

# Beam's file sinks write into a temporary folder beside the prefix (a path it
# normalises) and, once every row is scored, rename into the prefix as written:
# a local prefix that climbs out of a folder with "..", or one whose folder
# cannot be made or written, would fail only then. Object stores keep "." and
# ".." in names literally and have rules for bucket names; whether the workers
# may write there is theirs to prove (the launcher need not be allowed to), so
# nothing is written to test a bucket.

from __future__ import annotations

import ipaddress
import os
import re
import tempfile

_GCS_BUCKET = re.compile(r"[a-z0-9][a-z0-9._-]*[a-z0-9]")
_S3_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]*[a-z0-9]")
_S3_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_S3_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
_PROBE = ".skserve-batch-probe-"


class OutputError(ValueError):
    """Why an output prefix cannot work, in one line."""


def check_output(prefix: str) -> None:
    """Raise OutputError unless `prefix` (local, gs://, s3:// or another of
    Beam's filesystems) names files the job can write where it says. Leaves
    nothing behind: no folder is made, a probe file is removed at once."""
    scheme, separator, rest = prefix.partition("://")
    if separator:
        _check_object_prefix(prefix, scheme.lower(), rest)
    else:
        _check_local_prefix(prefix)


def _check_local_prefix(prefix: str) -> None:
    if prefix.endswith("/"):
        raise OutputError(
            f"--output {prefix} ends with '/': name the files too, e.g. {prefix}scored"
        )
    parts = prefix.split("/")
    named = False  # a folder name seen: ".." after it climbs back out
    for part in parts:
        if part == ".." and named:
            raise OutputError(
                f"--output {prefix}: '..' after a folder name climbs back out of "
                "it, and where that lands depends on folders that may not exist; "
                f"write the prefix without it ({os.path.normpath(prefix)})"
            )
        named = named or part not in ("", ".", "..")
    if parts[-1] in (".", ".."):
        raise OutputError(
            f"--output {prefix} names a folder: name the files too, e.g. "
            f"{prefix}/scored"
        )
    # The nearest folder that exists: Beam makes the others under it.
    existing = os.path.dirname(prefix) or "."
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing) or "."
    if not os.path.isdir(existing):
        what = "a file" if os.path.isfile(existing) else "no folder"
        raise OutputError(f"--output {prefix}: {existing} is {what}, not a folder")
    try:
        handle, probe = tempfile.mkstemp(prefix=_PROBE, dir=existing)
    except OSError as exc:
        raise OutputError(
            f"--output {prefix}: cannot write in {existing}: {exc.strerror or exc}"
        ) from None
    os.close(handle)
    os.unlink(probe)


def _check_object_prefix(prefix: str, scheme: str, rest: str) -> None:
    if scheme not in ("gs", "s3"):
        from apache_beam.io.filesystems import FileSystems

        try:
            FileSystems.get_filesystem(prefix)
        except ValueError:
            raise OutputError(
                f"--output {prefix}: no filesystem for {scheme}:// (local paths, "
                "gs://, s3:// and Beam's other filesystems)"
            ) from None
        return
    bucket, slash, key = rest.partition("/")
    if scheme == "gs" and not _gcs_bucket(bucket):
        raise OutputError(
            f"--output {prefix}: {bucket!r} is not a Cloud Storage bucket name "
            "(3-63 lowercase letters, digits, '-', '_' and '.', starting and "
            "ending with a letter or digit)"
        )
    if scheme == "s3" and not _s3_bucket(bucket):
        raise OutputError(
            f"--output {prefix}: {bucket!r} is not an S3 bucket name (3-63 "
            "lowercase letters, digits, '-' and '.', starting and ending with a "
            "letter or digit, no '..')"
        )
    if not slash:
        raise OutputError(
            f"--output {prefix} names a bucket but no file prefix in it, e.g. "
            f"{prefix}/scored"
        )
    if not key or key.endswith("/"):
        raise OutputError(
            f"--output {prefix} ends with '/': name the files too, e.g. {prefix}scored"
        )
    for part in key.split("/"):
        if part in ("", ".", ".."):
            shown = part or "//"
            raise OutputError(
                f"--output {prefix}: object names keep {shown!r} as it is written "
                "(no folder is climbed or skipped); write the prefix without it"
            )


def _is_ip(name: str) -> bool:
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        return False
    return True


def _gcs_bucket(name: str) -> bool:
    """Cloud Storage's rules for bucket names (those a name can break alone)."""
    if not _GCS_BUCKET.fullmatch(name) or _is_ip(name):
        return False
    if name.startswith("goog") or "google" in name:
        return False
    if "." in name:
        return len(name) <= 222 and all(1 <= len(p) <= 63 for p in name.split("."))
    return 3 <= len(name) <= 63


def _s3_bucket(name: str) -> bool:
    """S3's rules for general purpose bucket names."""
    return (
        3 <= len(name) <= 63
        and _S3_BUCKET.fullmatch(name) is not None
        and ".." not in name
        and not _is_ip(name)
        and not name.startswith(_S3_RESERVED_PREFIXES)
        and not name.endswith(_S3_RESERVED_SUFFIXES)
    )
