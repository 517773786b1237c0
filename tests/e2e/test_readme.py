"""The README's shell examples run verbatim, in order, in a fresh copy of the
repository, and print what the README shows (version ids and times aside).

Conventions in README.md: a ```sh block is run; lines starting with `# ` right
after a command are the output it must print (in order, possibly abridged);
`<!-- readme: skip <why> -->` on the line before a block marks one that cannot
run here (cloud deploys, this very test suite), and says why; `<!-- readme:
server URL -->` marks a block that starts a server: it runs in the background
until the README's examples are done, and the next block waits until URL
answers. All blocks run in one bash session, as a reader's terminal.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support import REPO

pytestmark = pytest.mark.e2e

README = REPO / "README.md"
_BLOCK = re.compile(
    r"(?:<!-- readme: (?P<marker>[a-z]+)(?P<why>[^>]*)-->\n)?```sh\n(?P<body>.*?)```",
    re.S,
)
_VERSION = re.compile(r"\d{8}T\d{6}\.\d{3}Z-[0-9a-f]{8}")
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
_REQUEST_ID = re.compile(r"[0-9a-f]{32}")
# Measured, not fixed: float differences in the last bits, rates.
_MEASURED = re.compile(r"(max difference|rows/s\)?:?) [0-9.,e+-]+")


@dataclass
class Command:
    """One shell command and the output lines the README shows for it."""

    text: str
    expected: list[str] = field(default_factory=list)


@dataclass
class Block:
    """A ```sh block of the README, with its marker."""

    line: int
    marker: str | None
    why: str
    commands: list[Command]


def blocks(text: str) -> list[Block]:
    """Every sh block of `text`, split into commands and their shown output."""
    found = []
    for match in _BLOCK.finditer(text):
        commands: list[Command] = []
        pending = ""
        for raw in match["body"].splitlines():
            if raw.startswith("# ") or raw == "#":
                if commands and not pending:
                    commands[-1].expected.append(raw[2:])
                continue
            if not raw.strip():
                continue
            if raw.endswith("\\"):  # a continuation line
                piece = raw[:-1].rstrip()
                pending = f"{pending} {piece.strip()}" if pending else piece
                continue
            pending = (
                f"{pending}\n{raw}"
                if pending and _open(pending)
                else (f"{pending} {raw.strip()}" if pending else raw)
            )
            if not _open(pending):  # else a quoted string goes on
                commands.append(Command(pending.strip()))
                pending = ""
        found.append(
            Block(
                line=text[: match.start()].count("\n") + 1,
                marker=match["marker"],
                why=(match["why"] or "").strip(),
                commands=commands,
            )
        )
    return found


def _open(command: str) -> bool:
    """Whether `command` ends inside a quoted string (it goes on next line)."""
    try:
        shlex.split(command, comments=True)
    except ValueError:
        return True
    return False


def normalise(line: str) -> str:
    """Ids, times and measured differences vary by run; nothing else may."""
    line = _VERSION.sub("<version>", line.rstrip())
    line = _TIME.sub("<time>", line)
    line = _MEASURED.sub(r"\1 <measured>", line)
    return _REQUEST_ID.sub("<id>", line)


def shown_in_order(expected: list[str], printed: list[str]) -> bool:
    """Whether every shown line was printed, in the README's order."""
    remaining = iter(normalise(line) for line in printed)
    return all(normalise(line) in remaining for line in expected)


def test_every_block_is_run_or_says_why_not() -> None:
    for block in blocks(README.read_text()):
        assert block.marker in (None, "skip", "server"), f"line {block.line}"
        if block.marker == "skip":
            assert len(block.why) > 10, f"line {block.line}: say why it is skipped"
        if block.marker == "server":
            assert block.why.startswith("http"), f"line {block.line}: its URL"
        assert block.commands, f"line {block.line}: an empty block"


def test_the_parser_reads_commands_continuations_and_output() -> None:
    text = (
        "<!-- readme: skip needs a real cloud account -->\n```sh\ngcloud x\n```\n"
        "```sh\nfoo --a \\\n  --b   # why\n# out 1\n# out 2\nbar\n"
        "baz -d '{\"a\":\n  1}'\n```\n"
    )

    skipped, run = blocks(text)

    assert (skipped.marker, skipped.why) == ("skip", "needs a real cloud account")
    assert [c.text for c in run.commands] == [
        "foo --a --b   # why",
        "bar",
        "baz -d '{\"a\":\n  1}'",
    ]
    assert run.commands[0].expected == ["out 1", "out 2"]
    assert shown_in_order(["out 2"], ["out 1", "out 2"])
    assert not shown_in_order(["out 2", "out 1"], ["out 1", "out 2"])


@pytest.fixture
def fresh_copy(tmp_path: Path) -> Iterator[Path]:
    """The repository as a fresh clone would have it, beside the shared venv.

    Files git tracks or would track are copied; the venv is linked (building a
    new one would only re-download the same pins) and nothing else is.
    """
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    copy = tmp_path / "repo"
    for name in filter(None, listed):
        source = REPO / name.decode()
        if source.is_file():
            target = copy / name.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    # `make run` must find the venv set up (its stamp newer than the pins), or it
    # would reinstall the editable packages from this temporary copy.
    stamp = REPO / ".venv" / "bin" / ".installed-run"
    pins = ["function/requirements.txt", "train/requirements.txt", "pyproject.toml"]
    assert stamp.exists(), "run `make run` or `make test` first"
    assert all(stamp.stat().st_mtime >= (REPO / p).stat().st_mtime for p in pins)
    (copy / ".venv").symlink_to(REPO / ".venv")
    yield copy


def script(chosen: list[Block]) -> tuple[str, list[tuple[Block, Command]]]:
    """One bash script running every chosen block in order, as a reader types
    them into one terminal; `@@N@@` lines split the output by command."""
    lines = [
        "set -eo pipefail",
        # A server block must be the one answering its URL: its port must be
        # free before it starts (else another server, not the README's, would
        # answer), and it must still be running once the URL answers.
        'readme_free() { if curl -s -o /dev/null "$1"; then echo "$1 is already '
        'answering: another server holds its port"; return 1; fi; }',
        'readme_wait() { for _ in $(seq 1200); do curl -sf "$1" >/dev/null && '
        'kill -0 "$2" 2>/dev/null && return 0; kill -0 "$2" 2>/dev/null || '
        '{ echo "the server for $1 exited"; return 1; }; sleep 0.25; done; '
        'echo "$1 never answered"; return 1; }',
    ]
    order: list[tuple[Block, Command]] = []
    for block in chosen:
        for command in block.commands:
            # A newline first: the previous command's output may not end in one.
            lines.append(f"printf '\\n@@{len(order)}@@\\n'")
            order.append((block, command))
            if block.marker == "server":  # the URL it serves is the marker's text
                lines.append(f"readme_free {block.why}")
                # On lines of its own: the command may end in a `# comment`.
                lines += ["(", command.text, f") >server-{len(order)}.log 2>&1 &"]
                lines.append(f'readme_wait {block.why} "$!"')
            else:
                lines.append(command.text)
    return "\n".join(lines) + "\n", order


def test_the_readme_examples_run_verbatim(fresh_copy: Path) -> None:
    chosen = [b for b in blocks(README.read_text()) if b.marker != "skip"]
    text, order = script(chosen)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MODEL_", "API_KEYS", "CORS_", "MAX_", "VIRTUAL_ENV"))
    }
    process = subprocess.Popen(
        ["bash", "-c", text],
        cwd=fresh_copy,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # servers it starts are stopped with it
    )
    try:
        output, _ = process.communicate(timeout=1200)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    printed: dict[int, list[str]] = {}
    current = -1
    for line in output.splitlines():
        marker = re.fullmatch(r"@@(\d+)@@", line)
        if marker:
            current = int(marker[1])
            printed[current] = []
        elif line.strip():
            printed.setdefault(current, []).append(line)
    block, command = order[current]
    assert process.returncode == 0, (
        f"README line {block.line}: `{command.text}` failed:\n"
        + "\n".join(printed[current])
    )
    assert current == len(order) - 1
    for index, (block, command) in enumerate(order):
        assert shown_in_order(command.expected, printed[index]), (
            f"README line {block.line}: `{command.text}` printed\n"
            + "\n".join(printed[index])
            + "\nbut the README shows\n"
            + "\n".join(command.expected)
        )


def test_a_server_block_fails_when_another_server_holds_its_port(
    tmp_path: Path,
) -> None:
    """Someone else's server on the port must not stand in for the README's."""
    import socket
    import sys

    from tests.support import free_port

    port = free_port()
    other = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):  # until the other server listens
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port}/"
        text = (
            f"<!-- readme: server {url} -->\n```sh\n"
            f"python3 -m http.server {port} --bind 127.0.0.1\n```\n"
            "```sh\necho after\n```\n"
        )
        code, _ = script(blocks(text))

        result = subprocess.run(
            ["bash", "-c", code],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            start_new_session=True,
        )
    finally:
        other.terminate()
        other.wait(timeout=10)

    assert result.returncode != 0
    assert "already answering: another server holds its port" in result.stdout
    assert "after" not in result.stdout
