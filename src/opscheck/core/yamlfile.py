"""YAML files with line numbers: the inventory, sign-off and waiver files.

One parse (libyaml when available) gives both the data and the line of every field, so a
problem is reported as `file:line: field: message`. Duplicate keys are refused (YAML would
keep the last one silently), and no value is ever echoed: it may be a secret.

Hostile files are refused before they cost anything: a size limit (read no further), and
one pass over the parser's events, which is not recursive, bounds the nesting depth and
the size of the document once its aliases are expanded (a "billion laughs" file of 900
bytes would otherwise take gigabytes), and refuses recursive aliases. A value YAML cannot
construct (`!!int text`, `!!bool maybe`) is refused naming its line and tag, never its
text. Dates and times stay strings: the model parses them where a field wants one, so a
date-like description is text and a bad `expires:` is that field's error.
"""

import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from opscheck.core.errors import ConfigError

BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
MAX_BYTES = 2 * 1024 * 1024  # the largest shipped inventory is 9 KB
MAX_DEPTH = 40  # nesting of mappings and lists
MAX_NODES = 200_000  # scalars and collections once every alias is expanded


class Loader(BaseLoader):  # type: ignore[misc, valid-type]
    """SafeLoader without implicit timestamps, whose construction errors name line and tag only."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in BaseLoader.yaml_implicit_resolvers.items()
    }

    def construct_object(self, node, deep=False):
        try:
            return super().construct_object(node, deep=deep)
        except yaml.MarkedYAMLError:
            raise
        except Exception as exc:  # noqa: BLE001 - ValueError, KeyError, OverflowError ... with the text in it
            tag = node.tag.replace("tag:yaml.org,2002:", "!!")
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read this value as {tag} ({type(exc).__name__})", node.start_mark
            ) from None


@dataclass
class YamlDocument:
    """A parsed file: its data and the line of every mapping key and list item."""

    shown: str
    data: Any
    lines: dict[tuple, int] = field(default_factory=dict)

    def line(self, loc: tuple) -> int:
        """The line of `loc`, or of its nearest parent the file has."""
        for end in range(len(loc), -1, -1):
            if loc[:end] in self.lines:
                return self.lines[loc[:end]]
        return 1

    def problem(self, loc: tuple, message: str) -> str:
        return f"{self.shown}:{self.line(loc)}: {dotted(loc) or '(top level)'}: {message}"


def shown_path(path: Path) -> str:
    """The path as a user typed it: relative to the working directory where possible."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except (ValueError, OSError, RuntimeError):  # RuntimeError: a symlink loop (Python 3.11)
        return str(path)


def read_yaml(path: Path, what: str, allow_empty: bool = False) -> YamlDocument:
    """Parse a YAML file; ConfigError (file, line, what is wrong) for anything malformed."""
    shown = shown_path(path)
    return parse_text(_read_text(path, shown, what), shown, what, allow_empty)


def parse_text(text: str, shown: str, what: str, allow_empty: bool = False) -> YamlDocument:
    """read_yaml's parse of a text already read (an Ansible inventory, its group_vars)."""
    _within_limits(text, shown, what)
    loader = Loader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        raise ConfigError([_yaml_problem(exc, text, shown)]) from None
    finally:
        loader.dispose()
    document = YamlDocument(shown, data)
    if node is None:
        if allow_empty:
            return document
        raise ConfigError([f"{shown}: the {what} is empty"])
    problems: list[str] = []
    _record_lines(node, (), document, problems)
    if problems:
        raise ConfigError(problems)
    return document


def _read_text(path: Path, shown: str, what: str) -> str:
    try:
        mode = path.stat().st_mode
    except (OSError, RuntimeError) as exc:
        reason = getattr(exc, "strerror", None) or "a symlink loop"
        raise ConfigError([f"{shown}: cannot read {what}: {reason}"]) from None
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISCHR(mode)):  # a FIFO would wait for a writer
        raise ConfigError([f"{shown}: cannot read {what}: not a regular file (a pipe or a socket?)"])
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError([f"{shown}: cannot read {what}: {exc.strerror or type(exc).__name__}"]) from None
    if len(raw) > MAX_BYTES:
        size = path.stat().st_size / 1024 / 1024
        raise ConfigError(
            [f"{shown}: the {what} is larger than {MAX_BYTES // 1024 // 1024} MB ({size:.1f} MB): refused unread"]
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{shown}: not UTF-8 text (byte {exc.start}): save the {what} as UTF-8"]) from None


def _yaml_problem(exc: yaml.YAMLError, text: str, shown: str) -> str:
    """A YAML error as `file:line: YAML syntax error: what` (never the offending text)."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f"{shown}:{mark.line + 1}" if mark else shown
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        return f"{where}: YAML syntax error: {problem}"
    if isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, max(0, exc.position)) + 1
        return f"{shown}:{line}: YAML syntax error: character U+{exc.character:04X} is not allowed in YAML"
    return f"{shown}: YAML error: {type(exc).__name__}"


def _within_limits(text: str, shown: str, what: str) -> None:
    """Refuse, before composing, a document nested too deep, with a recursive alias, or whose
    aliases expand past MAX_NODES. One pass over the parser's events; nothing recursive."""
    sizes: dict[str, int] = {}
    frames: list[list] = []  # [anchor, nodes so far] of every open mapping or list
    total = 0
    try:
        for event in yaml.parse(text, Loader=BaseLoader):
            line = event.start_mark.line + 1 if event.start_mark else 1
            if isinstance(event, yaml.AliasEvent):
                if event.anchor in (f[0] for f in frames):
                    raise ConfigError([f"{shown}:{line}: recursive alias *{event.anchor}: it contains itself"])
                cost = sizes.get(event.anchor or "", 1)
            elif isinstance(event, yaml.ScalarEvent):
                cost = 1
                if event.anchor:
                    sizes[event.anchor] = 1
            elif isinstance(event, yaml.CollectionStartEvent):
                frames.append([event.anchor, 1])
                if len(frames) > MAX_DEPTH:
                    raise ConfigError([f"{shown}:{line}: nested deeper than {MAX_DEPTH} levels: refused"])
                continue
            elif isinstance(event, yaml.CollectionEndEvent):
                anchor, cost = frames.pop()
                if anchor:
                    sizes[anchor] = cost
            else:
                continue
            if frames:
                frames[-1][1] += cost
            else:
                total += cost
            if total + sum(f[1] for f in frames) > MAX_NODES:
                raise ConfigError(
                    [
                        f"{shown}:{line}: the {what} expands to more than {MAX_NODES:,} values "
                        "(YAML aliases of aliases?): refused"
                    ]
                )
    except yaml.YAMLError as exc:
        raise ConfigError([_yaml_problem(exc, text, shown)]) from None


def _record_lines(node, path: tuple, document: YamlDocument, problems: list[str]) -> None:
    """Remember the line of every field, and report duplicate keys."""
    document.lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else repr(key_node)
            line = key_node.start_mark.line + 1
            if key in seen:
                problems.append(f"{document.shown}:{line}: {dotted(path + (key,))}: duplicate key")
            seen.add(key)
            document.lines[path + (key,)] = line
            _record_lines(value_node, path + (key,), document, problems)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _record_lines(item, path + (i,), document, problems)


def dotted(loc: tuple) -> str:
    """('hosts', 0, 'spec') -> 'hosts[0].spec'."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def validation_problems(
    document: YamlDocument, errors: Sequence[Mapping[str, Any]], skip: set[tuple] | None = None
) -> list[str]:
    """pydantic's errors (include_input=False) as `file:line: field: message` lines."""
    return [document.problem(tuple(e["loc"]), e["msg"]) for e in errors if not skip or tuple(e["loc"]) not in skip]


def booleans_as_numbers(data: Any, made: Any) -> list[tuple]:
    """Where the file has a boolean and the model made it a number (`timeout: yes` is 1 s);
    `made` is what the model made of `data`, dumped (model_dump(by_alias=True)).

    pydantic's lax mode turns true into 1; strict mode would also refuse the numbers that
    ${VAR} substitution gives as text, so the loader compares the file with the result.
    """
    found: list[tuple] = []

    def walk(raw: Any, made: Any, loc: tuple) -> None:
        if isinstance(raw, bool):
            if isinstance(made, int | float) and not isinstance(made, bool):
                found.append(loc)
        elif isinstance(raw, dict) and isinstance(made, dict):
            for key, value in raw.items():
                if key in made:
                    walk(value, made[key], loc + (key,))
        elif isinstance(raw, list) and isinstance(made, list | tuple) and len(raw) == len(made):
            for i, (value, result) in enumerate(zip(raw, made, strict=True)):
                walk(value, result, loc + (i,))

    walk(data, made, ())
    return found
