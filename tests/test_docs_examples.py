"""The docs hold together: every relative link in README.md and docs/*.md resolves (its file and
its ``#anchor``, by GitHub's anchor rules), and every ``hpo ...`` example in their shell blocks,
their inline code and the commands' own ``--help`` examples names commands and flags that exist
(parsed against the click tree, as sqlite-utils tests its docs)."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

from hpo.cli import cli

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
SHELL_BLOCKS = {"bash", "sh", "shell", "console"}
"""Fenced blocks whose lines are commands; untagged blocks are diagrams and prose."""


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


@dataclass(frozen=True)
class Found:
    """Something found on a page, with where."""

    page: Path
    line: int
    text: str

    def __str__(self) -> str:
        return f"{_rel(self.page)}:{self.line}: {self.text}"


def _outside_fences(page: Path) -> Iterator[tuple[int, str]]:
    """The page's lines outside fenced code blocks, numbered from 1."""
    fenced = False
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            yield number, line


def _shell_lines(page: Path) -> Iterator[tuple[int, str]]:
    """The lines of the page's shell blocks, a line ending in ``\\`` joined with the next."""
    language: str | None = None
    pending, start = "", 0
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("```"):
            language = None if language is not None else stripped[3:].strip() or ""
            continue
        if language not in SHELL_BLOCKS:
            continue
        start = start or number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        yield start, pending + stripped
        pending, start = "", 0


CODE_SPAN = re.compile(r"(`+)(.+?)\1")


def _without_code(line: str) -> str:
    return CODE_SPAN.sub("", line)


# --- links ---------------------------------------------------------------------------------

LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"")


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: its text without markup, lowercased, every
    character but letters, digits, ``_``, ``-`` and spaces dropped, spaces made ``-``."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text stays
    text = re.sub(r"<[^>]+>", "", text)  # html tags go
    text = text.replace("`", "").replace("*", "")
    text = re.sub(r"(?<!\w)_+|_+(?!\w)", "", text)  # _emphasis_ goes, snake_case stays
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every anchor of a page: its headings' (a repeated one gets ``-1``, ``-2``, ...) and
    its html anchors."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for _, line in _outside_fences(page):
        if m := HEADING.match(line):
            anchor = github_anchor(m.group(2))
            n = seen.get(anchor, 0)
            seen[anchor] = n + 1
            found.add(anchor if n == 0 else f"{anchor}-{n}")
        found.update(HTML_ANCHOR.findall(line))
    return found


def links(page: Path) -> Iterator[Found]:
    """The page's relative links (web addresses and mail left out), outside code."""
    for number, line in _outside_fences(page):
        text = _without_code(line)
        targets = LINK.findall(text) + REFERENCE.findall(text)
        for target in targets:
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target):
                yield Found(page, number, target)


ALL_LINKS = [found for page in PAGES for found in links(page)]


def test_the_pages_have_links() -> None:
    """The test reads what it means to: the front page links the docs."""
    assert {_rel(p) for p in PAGES} >= {"README.md", "docs/commands.md"}
    assert any(f.page.name == "README.md" and "docs/" in f.text for f in ALL_LINKS)


@pytest.mark.parametrize("found", ALL_LINKS, ids=str)
def test_every_relative_link_resolves(found: Found) -> None:
    path, _, anchor = found.text.partition("#")
    target = (found.page.parent / path).resolve() if path else found.page
    assert target.exists(), (
        f"{found}: no file {_rel(target) if target.is_relative_to(ROOT) else target}"
    )
    if anchor:
        assert target.suffix == ".md", f"{found}: an anchor into a file that is no markdown page"
        known = anchors(target)
        assert anchor in known, (
            f"{found}: no heading #{anchor} in {_rel(target)}; it has {sorted(known)}"
        )


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("A study by hand", "a-study-by-hand"),
        (
            "Per-persona adapters, MoE and the comparison report",
            "per-persona-adapters-moe-and-the-comparison-report",
        ),
        ("`hpo study best`: the promoted trial", "hpo-study-best-the-promoted-trial"),
        ("The dashboard from another machine", "the-dashboard-from-another-machine"),
        ("PostgreSQL (many workers)", "postgresql-many-workers"),
        ("What `max_train_per_persona` does", "what-max_train_per_persona-does"),
        ("[Guarantees](guarantees.md) and faults", "guarantees-and-faults"),
    ],
)
def test_github_anchor_rules(heading: str, anchor: str) -> None:
    assert github_anchor(heading) == anchor


def test_a_broken_link_and_anchor_are_found(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# Other page\n\n## Section two\n", encoding="utf-8")
    page.write_text(
        "# Page\n\nSee [ok](other.md#section-two), [gone](missing.md), [bad](other.md#nope),\n"
        "[web](https://example.org/x.md), `[code](nowhere.md)` and [self](#page).\n"
        "```\n[in a block](nowhere.md)\n```\n",
        encoding="utf-8",
    )
    found = [f.text for f in links(page)]
    assert found == ["other.md#section-two", "missing.md", "other.md#nope", "#page"]
    assert anchors(tmp_path / "other.md") == {"other-page", "section-two"}


# --- hpo examples --------------------------------------------------------------------------

COMMAND_START = re.compile(r"(?:^|[\s;&|(])(?:\S*/)?hpo(?=\s|$)")
"""Where a command ``hpo`` starts: at the line's start or after a separator or environment
assignments, also as ``.venv/bin/hpo``; ``python -m hpo`` too."""
SHELL_END = {"|", "||", "&", "&&", ";", ">", ">>", "2>", "2>&1", "<"}


def _without_comment(line: str) -> str:
    """A line of shell up to its comment: a ``#`` at its start or after a space, unquoted."""
    quote = ""
    for i, char in enumerate(line):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def _hpo_commands(text: str) -> Iterator[list[str]]:
    """The argument lists of the ``hpo`` commands in one line of shell: after ``hpo`` up to
    a pipe, a redirection, ``&``, ``;`` or a comment."""
    text = _without_comment(text)
    for m in COMMAND_START.finditer(text):
        rest = text[m.end() :]
        try:
            tokens = shlex.split(rest, comments=True)
        except ValueError:  # an unclosed quote: read up to it
            tokens = rest.split()
        args: list[str] = []
        for token in tokens:
            if token in SHELL_END or token.startswith((">", "2>", "|")):
                break
            args.append(token)
        yield args


def _alternatives(args: list[str]) -> Iterator[list[str]]:
    """``hpo evaluate --trial N / --adapter DIR`` in prose is two examples: the part before
    `` / `` and the command with the part after it."""
    parts: list[list[str]] = [[]]
    for token in args:
        if token == "/":
            parts.append([])
        else:
            parts[-1].append(token)
    first = parts[0]
    yield first
    command = _command_path(first)
    for part in parts[1:]:
        yield [*command, *part]


def _command_path(args: list[str]) -> list[str]:
    """The leading words of ``args`` that name a command of the click tree."""
    command: click.Command = cli
    path: list[str] = []
    for word in args:
        if not isinstance(command, click.Group) or word.startswith("-"):
            break
        sub = command.get_command(click.Context(command), word)
        if sub is None:
            break
        command, path = sub, [*path, word]
    return path


def _inline_examples(page: Path) -> Iterator[Found]:
    for number, line in _outside_fences(page):
        for m in CODE_SPAN.finditer(line):
            code = m.group(2).strip()
            if re.match(r"^(?:\S*/)?hpo(?:\s|$)", code) or re.search(r"\bpython -m hpo\b", code):
                yield Found(page, number, code)


def _block_examples(page: Path) -> Iterator[Found]:
    for number, line in _shell_lines(page):
        if COMMAND_START.search(line):
            yield Found(page, number, line)


def _help_examples() -> Iterator[Found]:
    """Each command's ``--help`` example lines."""
    from tests.test_docs import LEAVES, _command

    for path in LEAVES:
        epilog = _command(path).epilog or ""
        for line in epilog.split("Example:", 1)[-1].splitlines():
            if COMMAND_START.search(line.strip()):
                yield Found(Path(f"hpo {' '.join(path)} --help"), 0, line.strip())


def _found_id(found: Found) -> str:
    page = str(found.page) if not found.page.is_absolute() else _rel(found.page)
    return f"{page}:{found.line}: {found.text}"


EXAMPLES = [
    *(f for page in PAGES for f in _inline_examples(page)),
    *(f for page in PAGES for f in _block_examples(page)),
]


def check_hpo_args(args: list[str]) -> None:
    """Walk ``args`` (what follows ``hpo``) through the click tree.

    Raises:
        AssertionError: Naming the unknown command or option, or the extra argument.
    """
    command: click.Command = cli
    path = ["hpo"]
    rest = list(args)
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        name = rest.pop(0)
        sub = command.get_command(click.Context(command), name)
        assert sub is not None, (
            f"`{' '.join(path)}` has no command {name!r}; it has {sorted(command.commands)}"
        )
        command, path = sub, [*path, name]
    ctx = click.Context(command, info_name=" ".join(path))
    options = {
        name: param
        for param in command.get_params(ctx)
        if isinstance(param, click.Option)
        for name in (*param.opts, *param.secondary_opts)
    }
    arguments = [p for p in command.params if isinstance(p, click.Argument)]
    positional = 0
    while rest:
        token = rest.pop(0)
        if token == "--":
            positional += len(rest)
            break
        if token.startswith("-") and not re.fullmatch(r"-\d[\d.e+-]*", token):
            name, has_value, _ = token.partition("=")
            if name not in options and not name.startswith("--") and len(name) > 2:
                name = name[:2]  # -n3: a short option with its value attached
                has_value = "="
            option = options.get(name)
            assert option is not None, (
                f"`{' '.join(path)}` has no option {name}; it has {sorted(options)}"
            )
            if not option.is_flag and not option.count and not has_value and rest:
                rest.pop(0)  # its value (a placeholder such as N or DIR is fine)
            continue
        positional += 1
    if isinstance(command, click.Group):
        assert positional == 0, f"`{' '.join(path)}` is a group: name one of its commands"
        return
    limit = sum(a.nargs for a in arguments) if all(a.nargs >= 0 for a in arguments) else None
    assert limit is None or positional <= limit, (
        f"`{' '.join(path)}` takes {limit} argument(s), the example gives {positional}"
    )


def test_the_examples_are_found() -> None:
    """The test reads what it means to: shell blocks, inline code and help examples."""
    texts = [f.text for f in EXAMPLES]
    assert any(t.startswith("hpo study create --config") for t in texts)
    assert any(t == "hpo study best" for t in texts)
    assert len(list(_help_examples())) >= 20


@pytest.mark.parametrize("found", EXAMPLES, ids=_found_id)
def test_every_documented_hpo_example_exists(found: Found) -> None:
    for command in _hpo_commands(found.text):
        for args in _alternatives(command):
            try:
                check_hpo_args(args)
            except AssertionError as exc:
                raise AssertionError(f"{_found_id(found)}\n{exc}") from None


@pytest.mark.parametrize("found", list(_help_examples()), ids=_found_id)
def test_every_help_example_exists(found: Found) -> None:
    for command in _hpo_commands(found.text):
        try:
            check_hpo_args(command)
        except AssertionError as exc:
            raise AssertionError(f"{_found_id(found)}\n{exc}") from None


@pytest.mark.parametrize(
    "line",
    [
        "hpo study bets --study x",
        "hpo study best --studdy x",
        "hpo launch --study x --workers 2 --gpu 0",
        "hpo data import a.jsonl b.jsonl --name x",
        "hpo evaluate --trial N / --adapterr DIR",
        "CUDA_VISIBLE_DEVICES=0 .venv/bin/hpo worker --study x --bogus | tee log",
        "hpo study --study x",
    ],
)
def test_a_wrong_example_is_found(line: str) -> None:
    with pytest.raises(AssertionError):
        for command in _hpo_commands(line):
            for args in _alternatives(command):
                check_hpo_args(args)


@pytest.mark.parametrize(
    "line",
    [
        "hpo study best --study x -n 3 --json > best.txt  # the best three",
        "hpo evaluator --watch / --once",
        "HPO_STORAGE=sqlite:///x.db hpo launch --study x --gpus 0,1,... &",
        "hpo data cluster --k -3",
        "hpo --help",
        "# hpo launch --slurm: 8 workers (a comment, not a command)",
        'exec .venv/bin/python -m hpo worker --study x --threads "${SLURM_CPUS_PER_TASK:-1}"',
    ],
)
def test_a_right_example_passes(line: str) -> None:
    commands = list(_hpo_commands(line))
    assert commands or line.startswith("#")
    for command in commands:
        for args in _alternatives(command):
            check_hpo_args(args)
