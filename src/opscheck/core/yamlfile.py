"""YAML files with line numbers: the inventory, sign-off and waiver files.

One parse (libyaml when available) gives both the data and the line of every field, so a
problem is reported as `file:line: field: message`. Duplicate keys are refused (YAML would
keep the last one silently), and no value is ever echoed: it may be a secret.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from opscheck.core.errors import ConfigError

Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


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
    except (ValueError, OSError):
        return str(path)


def read_yaml(path: Path, what: str, allow_empty: bool = False) -> YamlDocument:
    """Parse a YAML file; ConfigError (file, line, what is wrong) for anything malformed."""
    shown = shown_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{shown}: not UTF-8 text (byte {exc.start}): save the {what} as UTF-8"]) from None
    except OSError as exc:
        raise ConfigError([f"{shown}: cannot read {what}: {exc.strerror or type(exc).__name__}"]) from None
    loader = Loader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{shown}:{mark.line + 1}" if mark else shown
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        raise ConfigError([f"{where}: YAML syntax error: {problem}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{shown}: YAML error: {type(exc).__name__}"]) from None
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
