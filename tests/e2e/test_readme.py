"""The README's and the documentation site's shell examples run verbatim, in
order, in a fresh copy of the repository, and print what the text shows
(version ids and times aside); the site builds with no broken link or anchor.

The README is one reader's session; the site's pages, in the order of
mkdocs.yml's nav, are another's (a reader starts from either).
Conventions in both: a ```sh block is run; lines starting with `# ` right
after a command are the output it must print, all of it, in order (`# ...`
stands for lines left out, and says so to the reader);
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
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support import REPO

pytestmark = pytest.mark.e2e

README = REPO / "README.md"
DOCS = REPO / "docs"


def nav_pages(nav: list[Any] | None = None) -> list[Path]:
    """The site's pages in the order its nav shows them."""
    import yaml

    if nav is None:
        config = yaml.load((REPO / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)
        nav = config["nav"]
    pages: list[Path] = []
    for entry in nav:
        for value in entry.values() if isinstance(entry, dict) else [entry]:
            if isinstance(value, list):
                pages += nav_pages(value)
            else:
                pages.append(DOCS / value)
    return pages


def sources() -> list[tuple[Path, list[Block]]]:
    """Each text a reader follows, with its blocks: the README, then every page."""
    return [(path, blocks(path.read_text())) for path in [README, *nav_pages()]]


_BLOCK = re.compile(
    r"(?:<!-- readme: (?P<marker>[a-z]+)(?P<why>[^>]*)-->\n)?```sh\n(?P<body>.*?)```",
    re.S,
)
_VERSION = re.compile(r"\d{8}T\d{6}\.\d{3}Z-[0-9a-f]{8}")
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
_REQUEST_ID = re.compile(r"[0-9a-f]{32}")
# Measured, not fixed: float differences in the last bits, rates.
_MEASURED = re.compile(r"(max difference|rows/s\)?:?) [0-9.,e+-]+")
# A shown output line standing for printed lines the text leaves out.
ELIDED = "..."


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


def shown_exactly(expected: list[str], printed: list[str]) -> bool:
    """Whether the shown lines are what was printed, all of it and in order; a
    shown `...` stands for any lines left out (none or more)."""
    shown = [normalise(line) for line in expected]
    lines = [normalise(line) for line in printed]

    def match(i: int, j: int) -> bool:
        if i == len(shown):
            return j == len(lines)
        if shown[i] == ELIDED:
            return any(match(i + 1, k) for k in range(j, len(lines) + 1))
        return j < len(lines) and shown[i] == lines[j] and match(i + 1, j + 1)

    return match(0, 0)


def test_every_block_is_run_or_says_why_not() -> None:
    for path, found in sources():
        for block in found:
            where = f"{path.name} line {block.line}"
            assert block.marker in (None, "skip", "server"), where
            if block.marker == "skip":
                assert len(block.why) > 10, f"{where}: say why it is skipped"
            if block.marker == "server":
                assert block.why.startswith("http"), f"{where}: its URL"
            assert block.commands, f"{where}: an empty block"


def test_every_page_is_in_the_nav_once() -> None:
    pages = nav_pages()
    on_disk = sorted(DOCS.rglob("*.md"))

    assert len(set(pages)) == len(pages)
    assert sorted(pages) == on_disk


def test_the_site_builds_with_no_broken_link_or_anchor(tmp_path: Path) -> None:
    """mkdocs.yml sets strict and warns on every unresolved link and anchor."""
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict",
         "--site-dir", str(tmp_path / "site")],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert (tmp_path / "site" / "index.html").exists()
    assert (tmp_path / "site" / "deploy" / "lambda" / "index.html").exists()


def test_a_broken_anchor_fails_the_site_build(tmp_path: Path) -> None:
    """The strict build above can fail: a link to a heading no page has."""
    site = tmp_path / "project"
    shutil.copytree(DOCS, site / "docs")
    shutil.copy(REPO / "mkdocs.yml", site / "mkdocs.yml")
    page = site / "docs" / "configuration.md"
    page.write_text(
        page.read_text() + "\nSee [nowhere](security.md#no-such-heading).\n"
    )

    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict",
         "--site-dir", str(tmp_path / "site")],
        cwd=site, capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip

    assert result.returncode != 0
    assert "no-such-heading" in result.stderr


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


def test_shown_output_is_all_that_prints_unless_it_says_what_it_leaves_out() -> None:
    printed = ["out 1", "out 2", "out 3"]

    assert shown_exactly(["out 1", "out 2", "out 3"], printed)
    assert shown_exactly(["out 1", "...", "out 3"], printed)
    assert shown_exactly(["...", "out 3"], printed)
    assert shown_exactly(["out 1", "out 2", "out 3", "..."], printed)
    assert not shown_exactly(["out 1", "out 3"], printed)  # a line left out
    assert not shown_exactly(["out 2", "out 1", "..."], printed)  # out of order
    assert not shown_exactly(["out 1", "out 2"], printed)  # the rest unsaid
    assert not shown_exactly(["out 1", "out 2", "out 3", "out 4"], printed)
    assert shown_exactly(["version 20261129T102017.512Z-d94d2dcc"], [
        "version 20261207T091147.398Z-c644006e"
    ])  # fmt: skip


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


def script(chosen: list[tuple[Path, Block]]) -> tuple[str, list[tuple[str, Command]]]:
    """One bash script running every chosen block in order, as a reader types
    them into one terminal; `@@N@@` lines split the output by command, each
    named by where it is written."""
    lines = [
        "set -eo pipefail",
        # A server block must be the one answering its URL: its port must be
        # free before it starts (else another server, not the README's, would
        # answer), and it must still be running once the URL answers. (`-q`:
        # not the reader's curlrc, which shows errors.)
        'readme_free() { if curl -q -s -o /dev/null "$1"; then echo "$1 is already '
        'answering: another server holds its port"; return 1; fi; }',
        'readme_wait() { for _ in $(seq 1200); do curl -q -sf "$1" >/dev/null && '
        'kill -0 "$2" 2>/dev/null && return 0; kill -0 "$2" 2>/dev/null || '
        '{ echo "the server for $1 exited"; return 1; }; sleep 0.25; done; '
        'echo "$1 never answered"; return 1; }',
    ]
    order: list[tuple[str, Command]] = []
    for path, block in chosen:
        for command in block.commands:
            # A newline first: the previous command's output may not end in one.
            lines.append(f"printf '\\n@@{len(order)}@@\\n'")
            name = path.relative_to(REPO) if path.is_relative_to(REPO) else path.name
            order.append((f"{name} line {block.line}", command))
            if block.marker == "server":  # the URL it serves is the marker's text
                lines.append(f"readme_free {block.why}")
                # On lines of its own: the command may end in a `# comment`.
                lines += ["(", command.text, f") >server-{len(order)}.log 2>&1 &"]
                lines.append(f'readme_wait {block.why} "$!"')
            else:
                lines.append(command.text)
    return "\n".join(lines) + "\n", order


@pytest.mark.parametrize("reader", ["readme", "site"])
def test_the_examples_run_verbatim(fresh_copy: Path, reader: str) -> None:
    texts = sources()[:1] if reader == "readme" else sources()[1:]
    chosen = [
        (path, block)
        for path, found in texts
        for block in found
        if block.marker != "skip"
    ]
    text, order = script(chosen)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MODEL_", "API_KEYS", "CORS_", "MAX_", "VIRTUAL_ENV"))
    }
    # In a terminal curl shows the answer alone; into a pipe it adds a progress
    # meter. The reader's terminal is what the shown output is.
    (fresh_copy.parent / "curl").mkdir()
    (fresh_copy.parent / "curl" / ".curlrc").write_text("silent\nshow-error\n")
    env["CURL_HOME"] = str(fresh_copy.parent / "curl")
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
    where, command = order[current]
    assert process.returncode == 0, f"{where}: `{command.text}` failed:\n" + "\n".join(
        printed[current]
    )
    assert current == len(order) - 1
    wrong = [
        f"{where}: `{command.text}` printed\n"
        + "\n".join(printed.get(index, []))
        + "\nbut the text shows\n"
        + "\n".join(command.expected)
        for index, (where, command) in enumerate(order)
        if not shown_exactly(command.expected, printed.get(index, []))
    ]
    assert not wrong, "\n\n".join(wrong)


def test_a_server_block_fails_when_another_server_holds_its_port(
    tmp_path: Path,
) -> None:
    """Someone else's server on the port must not stand in for the README's."""
    import socket

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
        code, _ = script([(tmp_path / "README.md", b) for b in blocks(text)])

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
