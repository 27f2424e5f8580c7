"""The documentation's command lines work when pasted into bash.

Every `hopbench ...` line in README.md and docs/*.md (in shell code blocks and in
inline code) is split as bash would split it, with no shell operator left unquoted
(an unquoted `->` is a redirection); it parses with the real parser; and a bundled
topology or suite it names exists and validates. The help texts quote their `->`
examples too, and README.md stays short.
"""

from __future__ import annotations

import argparse
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hopbench.cli import build_parser, main
from hopbench.config.suite import load_suite

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]
README_LIMIT_BYTES = 10 * 1024
BUNDLED = ("topologies", "suites")

SHELL_LANGUAGES = {"", "bash", "sh", "shell", "console"}
OPERATORS = "<>|;&"
FENCE = re.compile(r"^\s*(```+|~~~+)\s*([\w+-]*)\s*$")
INLINE_CODE = re.compile(r"(?<!`)`([^`]+)`(?!`)")
ARROW_WORD = re.compile(r"\S*\w->\S*")
QUOTED = re.compile(r"""^[(\[]*(['"])[^'"]*\1[)\].,;:]*$""")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")


@dataclass(frozen=True)
class Command:
    path: Path
    line: int
    text: str

    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}: {self.text}"


def split_markdown(text: str) -> tuple[list[tuple[int, str, str]], str]:
    """The shell lines of fenced blocks as (line number, language, line), and the
    prose with every fenced block blanked out (so line numbers stay right)."""
    shell: list[tuple[int, str, str]] = []
    prose: list[str] = []
    fence: str | None = None
    language = ""
    for number, line in enumerate(text.splitlines(), start=1):
        match = FENCE.match(line)
        if fence is None:
            if match:
                fence, language = match.group(1), match.group(2).lower()
                prose.append("")
            else:
                prose.append(line)
            continue
        prose.append("")
        if match and match.group(1).startswith(fence) and not match.group(2):
            fence = None
        elif language in SHELL_LANGUAGES:
            shell.append((number, language, line))
    return shell, "\n".join(prose)


def extract(path: Path, text: str) -> list[Command]:
    """Every command line starting with `hopbench ` in a Markdown text."""
    shell, prose = split_markdown(text)
    found: list[Command] = []
    pending: tuple[int, str] | None = None
    for number, language, line in shell:
        line = line.strip()
        if pending is None:
            if language == "console":
                if not line.startswith("$ "):
                    continue
                line = line[2:].strip()
            elif line.startswith("$ "):
                line = line[2:].strip()
            start, joined = number, line
        else:
            start, joined = pending[0], f"{pending[1]} {line}"
        if joined.endswith("\\"):  # a continued line
            pending = (start, joined[:-1].rstrip())
            continue
        pending = None
        if joined.startswith("hopbench "):
            found.append(Command(path, start, joined))
    for match in INLINE_CODE.finditer(prose):
        code = " ".join(match.group(1).split())
        if code.startswith("hopbench "):
            found.append(Command(path, prose.count("\n", 0, match.start()) + 1, code))
    return sorted(found, key=lambda c: c.line)


def documented() -> list[Command]:
    return [c for path in DOCS for c in extract(path, path.read_text())]


def params(commands: list[Command]) -> list[object]:
    return [pytest.param(c, id=f"{c.path.name}:{c.line}") for c in commands]


COMMANDS = documented()


def unquoted_operator(text: str) -> str | None:
    """The first shell operator character bash would act on, outside quotes and
    comments; None if there is none."""
    quote: str | None = None
    escaped = False
    previous = " "
    for char in text:
        if escaped:
            escaped = False
        elif quote == "'":
            quote = None if char == "'" else quote
        elif quote == '"':
            if char == "\\":
                escaped = True
            elif char == '"':
                quote = None
        elif char == "\\":
            escaped = True
        elif char in "'\"":
            quote = char
        elif char == "#" and previous.isspace():
            return None  # the rest is a comment
        elif char in OPERATORS:
            return char
        previous = char
    return None


def argv_of(command: Command) -> list[str]:
    """The words bash passes, after checking that it would pass them all to hopbench."""
    operator = unquoted_operator(command.text)
    if operator is not None:
        pytest.fail(
            f"{command.where()}\n  an unquoted {operator!r}: bash would treat it as a shell "
            "operator (quote the argument, e.g. --set 'edges.gateway->worker.mode=kafka')"
        )
    return shlex.split(command.text, comments=True)


def parse(command: Command) -> argparse.Namespace:
    argv = argv_of(command)
    assert argv[0] == "hopbench", command.where()
    try:
        return build_parser().parse_args(argv[1:])
    except SystemExit:
        pytest.fail(f"{command.where()}\n  hopbench's parser rejects it (see stderr above)")


def bundled(path: Path | None) -> Path | None:
    """The file in the checkout a command names, if it is a bundled topology or suite."""
    if path is None or path.is_absolute() or path.parts[0] not in BUNDLED:
        return None
    return ROOT / path


# --- the commands -------------------------------------------------------------------


def test_the_documents_have_commands() -> None:
    assert len(DOCS) >= 7, "README.md and the six files in docs/"
    assert len(COMMANDS) >= 30, "the extraction found too few commands"
    assert sum(c.path == README for c in COMMANDS) >= 5


@pytest.mark.parametrize("command", params(COMMANDS))
def test_command_has_no_unquoted_shell_operator(command: Command) -> None:
    argv_of(command)


@pytest.mark.parametrize("command", params(COMMANDS))
def test_command_parses(command: Command) -> None:
    parse(command)


@pytest.mark.parametrize("command", params(COMMANDS))
def test_named_bundled_file_exists_and_validates(
    command: Command, capsys: pytest.CaptureFixture[str]
) -> None:
    args = parse(command)
    if args.command == "validate":
        path = ROOT / args.topology
        assert path.exists(), f"{command.where()}\n  no such file: {args.topology}"
        argv = argv_of(command)[1:]
        argv[argv.index(str(args.topology))] = str(path)
        assert main(argv) == 0, f"{command.where()}\n  {capsys.readouterr().err}"
        return
    topology = bundled(getattr(args, "topology", None))
    if topology is not None:
        assert topology.exists(), f"{command.where()}\n  no such file: {args.topology}"
        sets = [a for s in args.set for a in ("--set", s)]
        mode = ["--mode", args.mode] if args.mode else []
        status = main(["validate", str(topology), *mode, *sets])
        assert status == 0, f"{command.where()}\n  {capsys.readouterr().err}"
    suite = bundled(getattr(args, "suite", None))
    if suite is not None:
        assert suite.exists(), f"{command.where()}\n  no such file: {args.suite}"
        load_suite(suite)  # every cell's topology, with its overrides, validated


def test_an_unquoted_arrow_is_caught() -> None:
    doc = ROOT / "docs" / "example.md"
    text = (
        "Run `hopbench run topologies/chain.yaml --set 'edges.gateway->worker.mode=kafka'`.\n"
        "```bash\n"
        "hopbench run topologies/chain.yaml \\\n"
        "  --set edges.gateway->worker.mode=kafka   # not quoted\n"
        "```\n"
    )
    quoted, unquoted = extract(doc, text)
    argv_of(quoted)
    assert unquoted.line == 3
    assert "--set edges.gateway->worker.mode=kafka" in unquoted.text
    with pytest.raises(pytest.fail.Exception, match=r"(?s)docs/example.md:3: .* an unquoted '>'"):
        argv_of(unquoted)


# --- the help texts and the bundled files' comments ---------------------------------


def parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from parsers(sub)


def unquoted_arrows(text: str) -> list[str]:
    """Words such as edges.gateway->worker.mode=kafka that are not in quotes."""
    return [w for w in ARROW_WORD.findall(text) if not QUOTED.match(w)]


def test_help_texts_quote_their_arrows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "1000")  # no quoted example wrapped across lines
    helps = {p.prog: p.format_help() for p in parsers(build_parser())}
    assert {"hopbench validate", "hopbench run", "hopbench render k8s"} <= set(helps)
    bad = {prog: unquoted_arrows(text) for prog, text in helps.items()}
    assert not {prog: words for prog, words in bad.items() if words}


@pytest.mark.parametrize(
    "path",
    [pytest.param(p, id=p.name) for d in BUNDLED for p in sorted((ROOT / d).glob("*.yaml"))],
)
def test_yaml_comments_quote_their_arrows(path: Path) -> None:
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        _, hash_, comment = line.partition("#")
        if hash_:
            assert not unquoted_arrows(comment), f"{path.relative_to(ROOT)}:{number}: {line}"


def test_an_unquoted_arrow_in_help_is_caught() -> None:
    assert unquoted_arrows("e.g. 'edges.gateway->worker.mode=kafka' (quoted)") == []
    assert unquoted_arrows("e.g. edges.gateway->worker.mode=kafka,") == [
        "edges.gateway->worker.mode=kafka,"
    ]
    assert unquoted_arrows("load generator -> gateway") == []


# --- README's size and the links between the documents ------------------------------


def test_readme_is_at_most_10_kb() -> None:
    size = len(README.read_bytes())
    assert size <= README_LIMIT_BYTES, f"README.md is {size} bytes; move detail into docs/"


def anchors(path: Path) -> set[str]:
    """GitHub's anchors for the headings of a Markdown file."""
    _, prose = split_markdown(path.read_text())
    headings = [m.group(1) for line in prose.splitlines() if (m := HEADING.match(line))]
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("path", [pytest.param(p, id=p.name) for p in DOCS])
def test_relative_links_resolve(path: Path) -> None:
    _, prose = split_markdown(path.read_text())
    for match in LINK.finditer(prose):
        target, _, anchor = match.group(1).partition("#")
        if re.match(r"^[a-z]+:", target):
            continue
        where = f"{path.relative_to(ROOT)}:{prose.count(chr(10), 0, match.start()) + 1}"
        linked = (path.parent / target).resolve() if target else path
        assert linked.exists(), f"{where}: {match.group(1)}: no such file"
        if anchor:
            assert anchor in anchors(linked), f"{where}: {match.group(1)}: no such heading"
