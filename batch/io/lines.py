"""A line too long or not UTF-8 is a RecordProblem in its place, never held whole."""

from __future__ import annotations

import io
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from skserve.errors import Code

# The most characters an input line may hold (besides its line break), and a
# CSV record over the lines a quoted field spans: a longer one is rejected
# while it is read, so no line, however long, is held in memory whole.
MAX_LINE_CHARS = 1 << 20
# How much of a rejected over-long line its dead letter shows.
EXCERPT_CHARS = 200
# Characters read at a time while skipping the rest of an over-long line.
_SKIP_CHARS = 1 << 16
# Characters read at a time: each piece is split into lines, checked and
# handed on in one call each, so a line costs no Python call of its own.
_PIECE_CHARS = 1 << 16
# str.splitlines also ends a line at these; a line here ends at CR, LF or CRLF
# only (as a text stream with newline="" reads it).
_OTHER_BREAKS = re.compile("[\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
_LINES = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")


@dataclass(frozen=True)
class RecordProblem:
    """A line or record that cannot be read as a row (too long, not UTF-8, not
    splittable as CSV), and what to show of it, to fix and replay."""

    message: str
    text: str = ""
    code: str = Code.INVALID_REQUEST


class _RawReader(io.RawIOBase):
    """Any object with read(n) as the raw stream TextIOWrapper needs (Beam's
    CompressedFile, for .gz and other compressed inputs, is not one)."""

    def __init__(self, source: Any) -> None:
        self.source = source

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.source.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def text_stream(raw: Any) -> IO[str]:
    """UTF-8 text over a binary stream; a BOM is dropped, and an undecodable
    byte becomes a lone surrogate (U+DC80-U+DCFF), which `text_lines` finds,
    so the line it is in is rejected, not the whole file."""
    if not isinstance(raw, io.IOBase):
        raw = io.BufferedReader(_RawReader(raw))
    return io.TextIOWrapper(
        raw, encoding="utf-8-sig", errors="surrogateescape", newline=""
    )


def readable(text: str) -> str:
    """`text` with each undecodable byte shown as \\xNN, for messages and
    dead letters (which must be UTF-8 themselves)."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _excerpt(text: str, limit: int) -> str:
    shown = min(EXCERPT_CHARS, limit)
    return readable(text[:shown]) + ("…" if len(text) > shown else "")


def _break_length(line: str) -> int:
    """How many characters of `line` are its line break (0, 1 or 2)."""
    if line.endswith("\r\n"):
        return 2
    return 1 if line.endswith(("\n", "\r")) else 0


def text_lines(
    text: IO[str], max_chars: int = MAX_LINE_CHARS
) -> Iterator[str | RecordProblem]:
    """Each line of `text` with its line break (CR, LF or CRLF), or, in its
    place, a RecordProblem for a line of more than `max_chars` characters
    (read in pieces and dropped, never held whole) or one that is not UTF-8."""
    return itertools.chain.from_iterable(line_runs(text, max_chars))


def line_runs(
    text: IO[str], max_chars: int = MAX_LINE_CHARS
) -> Iterator[list[str | RecordProblem]]:
    """`text_lines` a run at a time: the lines of each piece of `text` read,
    in order, as one list (never empty)."""
    limit = max_chars + 2  # the line and a CRLF
    read = text.read
    number = 0  # lines handed on so far
    carry = ""  # the start of a line whose end is not read yet
    while True:
        piece = read(_PIECE_CHARS)
        if not piece:
            if carry:
                yield [_checked(carry, number + 1, max_chars)]
            return
        data = carry + piece if carry else piece
        if carry[-1:] not in ("", "\r") and "\n" not in piece and "\r" not in piece:
            lines = []  # the carried line goes on
            carry = data
        else:
            lines = _split_lines(data)
            carry = lines.pop()
            if carry.endswith("\n"):
                lines.append(carry)
                carry = ""
            # else no line break yet, or a CR that an LF may follow.
        if lines:
            if max(map(len, lines)) > max_chars or not _is_utf8(data):
                lines = [
                    _checked(line, number + i, max_chars)
                    for i, line in enumerate(lines, start=1)
                ]
            number += len(lines)
            yield lines
        if len(carry) - _break_length(carry) > max_chars:
            # Over the bound: count the rest of the line while dropping it.
            number += 1
            problem, carry = _skip_line(text, carry, number, max_chars, limit)
            yield [problem]


def _split_lines(data: str) -> list[str]:
    """`data` cut after each CR, LF or CRLF, line breaks kept; the last piece
    may have none."""
    if _OTHER_BREAKS.search(data) is None:
        return data.splitlines(True)
    return _LINES.findall(data)


def _is_utf8(text: str) -> bool:
    """Whether `text` holds no lone surrogate (an undecodable byte)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _checked(line: str, number: int, max_chars: int) -> str | RecordProblem:
    """The line, or the RecordProblem that replaces it (too long, not UTF-8)."""
    size = len(line) - _break_length(line)
    if size > max_chars:
        return _too_long(number, size, line[: max_chars + 2], max_chars)
    return _utf8_line(line, number)


def _too_long(number: int, size: int, head: str, max_chars: int) -> RecordProblem:
    return RecordProblem(
        f"line {number} has {size:,} characters, more than the {max_chars:,} "
        "a line may have (--max-line-chars)",
        _excerpt(head.rstrip("\r\n"), max_chars),
        Code.PAYLOAD_TOO_LARGE,
    )


def _skip_line(
    text: IO[str], head: str, number: int, max_chars: int, limit: int
) -> tuple[RecordProblem, str]:
    """(the problem of an over-long line whose first characters, `head`, were
    read, what was read after it). The rest of the line is read in pieces and
    dropped."""
    size = len(head) - _break_length(head)
    last, piece = head, len(head)
    while not _break_length(last):
        last = text.readline(_SKIP_CHARS)
        if not last:
            break
        size += len(last) - _break_length(last)
        piece = _SKIP_CHARS
    after = ""
    if last.endswith("\r") and len(last) == piece:
        # The read stopped at a CR: an LF after it ends this line too.
        after = text.read(1)
        if after == "\n":
            after = ""
    return _too_long(number, size, head[:limit], max_chars), after


def _utf8_line(line: str, number: int) -> str | RecordProblem:
    """The line, or a RecordProblem naming its first byte that is not UTF-8."""
    if line.isascii():
        return line
    try:
        line.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate: an undecodable byte
        byte = ord(line[exc.start]) - 0xDC00
        return RecordProblem(
            f"line {number} is not UTF-8: byte 0x{byte:02X} at character "
            f"{exc.start + 1} (save the file as UTF-8)",
            readable(line.rstrip("\r\n")),
        )
    return line
