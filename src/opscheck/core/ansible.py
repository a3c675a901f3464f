"""Ansible inventories (INI or YAML) read without Ansible: hosts, groups and their variables.

What testinfra's ansible backend takes from `ansible-inventory --list`, for the variables
that say how to reach a host: ansible_host, ansible_port, ansible_user,
ansible_ssh_private_key_file (or ansible_private_key_file), ansible_connection. Read:
groups, `:children`, `:vars`, host variables, ranges (`web[01:03].example.com`), and
`group_vars/<group>.yml` / `host_vars/<host>.yml` beside the inventory file. Variables
apply from `all` to the most specific group, then the host's own (Ansible's order).
Jinja templates in variables are not evaluated: a value with `{{` is refused.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from opscheck.core.errors import ConfigError
from opscheck.core.yamlfile import parse_text

RANGE = re.compile(r"\[([0-9a-z]+):([0-9a-z]+)(?::([0-9]+))?\]")


@dataclass
class Group:
    name: str
    hosts: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    vars: dict[str, Any] = field(default_factory=dict)


@dataclass
class AnsibleHost:
    name: str
    groups: list[str]  # from `all` down to the most specific
    vars: dict[str, Any]


class AnsibleInventoryError(ValueError):
    """The Ansible inventory cannot be read (the message names the file and the line)."""


def expand_range(pattern: str) -> list[str]:
    """`web[01:03]` -> web01, web02, web03 (letters too: `db[a:c]`)."""
    match = RANGE.search(pattern)
    if not match:
        return [pattern]
    start, end, step = match.group(1), match.group(2), int(match.group(3) or 1)
    head, tail = pattern[: match.start()], pattern[match.end() :]
    if start.isdigit() and end.isdigit():
        width = len(start) if start.startswith("0") else 0
        values = [str(i).zfill(width) for i in range(int(start), int(end) + 1, step)]
    else:
        values = [chr(c) for c in range(ord(start), ord(end) + 1, step)]
    return [name for value in values for name in expand_range(head + value + tail)]


def _value(text: str) -> Any:
    """An INI value as Ansible reads it: a YAML scalar (numbers, booleans) or the string."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, str | int | float | bool) or value is None else text


def read_ini(text: str, shown: str) -> dict[str, Group]:
    groups: dict[str, Group] = {"all": Group("all"), "ungrouped": Group("ungrouped")}
    host_vars: dict[str, dict[str, Any]] = {}
    section, kind = "ungrouped", "hosts"
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise AnsibleInventoryError(f"{shown}:{number}: a section header ends with ']'")
            section, _, kind = line[1:-1].partition(":")
            kind = kind or "hosts"
            if kind not in ("hosts", "vars", "children"):
                raise AnsibleInventoryError(f"{shown}:{number}: unknown section kind {kind!r}")
            groups.setdefault(section, Group(section))
            continue
        try:
            words = shlex.split(line, comments=True)
        except ValueError as exc:
            raise AnsibleInventoryError(f"{shown}:{number}: {exc}") from None
        if not words:
            continue
        if kind == "vars":
            key, sep, value = line.partition("=")
            if not sep:
                raise AnsibleInventoryError(f"{shown}:{number}: expected key=value in [{section}:vars]")
            groups[section].vars[key.strip()] = _value(value.strip())
        elif kind == "children":
            groups.setdefault(words[0], Group(words[0]))
            groups[section].children.append(words[0])
        else:
            assigned = {}
            for word in words[1:]:
                key, sep, value = word.partition("=")
                if not sep:
                    raise AnsibleInventoryError(f"{shown}:{number}: expected key=value after the host name")
                assigned[key] = _value(value)
            for name in expand_range(words[0]):
                groups[section].hosts.append(name)
                host_vars.setdefault(name, {}).update(assigned)
    groups["_host_vars"] = Group("_host_vars", vars=host_vars)
    return groups


def read_yaml(data: Any, shown: str) -> dict[str, Group]:
    groups: dict[str, Group] = {"all": Group("all"), "ungrouped": Group("ungrouped")}
    host_vars: dict[str, dict[str, Any]] = {}

    def walk(name: str, body: Any) -> None:
        group = groups.setdefault(name, Group(name))
        if body is None:
            return
        if not isinstance(body, dict):
            raise AnsibleInventoryError(f"{shown}: group {name!r} must be a mapping (hosts, vars, children)")
        unknown = set(body) - {"hosts", "vars", "children"}
        if unknown:
            raise AnsibleInventoryError(f"{shown}: group {name!r}: unknown key(s) {', '.join(sorted(unknown))}")
        for pattern, values in (body.get("hosts") or {}).items():
            for host in expand_range(str(pattern)):
                group.hosts.append(host)
                host_vars.setdefault(host, {}).update(values or {})
        group.vars.update(body.get("vars") or {})
        for child, child_body in (body.get("children") or {}).items():
            group.children.append(str(child))
            walk(str(child), child_body)

    if not isinstance(data, dict):
        raise AnsibleInventoryError(f"{shown}: the top level must be a mapping of groups (all: ...)")
    for name, body in data.items():
        walk(str(name), body)
    groups["_host_vars"] = Group("_host_vars", vars=host_vars)
    return groups


def read_inventory(path: Path) -> list[AnsibleHost]:
    """Every host of an Ansible inventory file, with its groups and merged variables."""
    shown = str(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise AnsibleInventoryError(f"{shown}: cannot read: {exc.strerror}") from None
    groups = _parse(text, shown)
    host_vars = groups.pop("_host_vars").vars
    parents: dict[str, set[str]] = {}
    for group in groups.values():
        for child in group.children:
            parents.setdefault(child, set()).add(group.name)
    _refuse_cycles(groups)
    directory = path.parent
    hosts = []
    for name in _all_hosts(groups):
        member_of = [g.name for g in groups.values() if name in g.hosts]
        chain = _ancestry(member_of, parents)
        if len(chain) == 1:  # in no group but `all`: Ansible puts it in `ungrouped`
            chain.append("ungrouped")
        merged: dict[str, Any] = {}
        for group_name in chain:
            merged.update(_vars_file(directory / "group_vars", group_name))
            merged.update(groups[group_name].vars if group_name in groups else {})
        merged.update(_vars_file(directory / "host_vars", name))
        merged.update(host_vars.get(name, {}))
        for key, value in merged.items():
            if isinstance(value, str) and "{{" in value:
                raise AnsibleInventoryError(f"{shown}: host {name}: {key} is a Jinja template (not evaluated here)")
        hosts.append(AnsibleHost(name, chain, merged))
    return hosts


def _parse(text: str, shown: str) -> dict[str, Group]:
    stripped = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    looks_yaml = bool(stripped) and not stripped[0].startswith("[") and stripped[0].endswith(":")
    if looks_yaml:
        return read_yaml(_yaml(text, shown, "Ansible inventory"), shown)
    return read_ini(text, shown)


def _refuse_cycles(groups: dict[str, Group]) -> None:
    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in path:
            raise AnsibleInventoryError(f"groups form a cycle: {' -> '.join((*path, name))}")
        for child in groups.get(name, Group(name)).children:
            visit(child, (*path, name))

    for name in groups:
        visit(name, ())


def _all_hosts(groups: dict[str, Group]) -> list[str]:
    seen: dict[str, None] = {}
    for group in groups.values():
        for host in group.hosts:
            seen.setdefault(host)
    return list(seen)


def _ancestry(member_of: list[str], parents: dict[str, set[str]]) -> list[str]:
    """`all` first, then groups from the least to the most specific (depth, then name)."""
    depth: dict[str, int] = {}

    def climb(name: str, level: int) -> None:
        if depth.get(name, -1) >= level:
            return
        depth[name] = level
        for parent in parents.get(name, ()):
            climb(parent, level + 1)

    for name in member_of:
        climb(name, 0)
    depth.pop("all", None)
    ordered = sorted(depth, key=lambda g: (-depth[g], g))
    return ["all", *ordered]


def _vars_file(folder: Path, name: str) -> dict[str, Any]:
    for suffix in (".yml", ".yaml", ""):
        candidate = folder / f"{name}{suffix}"
        if candidate.is_file():
            try:
                text = candidate.read_text()
            except (OSError, UnicodeDecodeError) as exc:
                raise AnsibleInventoryError(f"{candidate}: cannot read it: {type(exc).__name__}") from None
            data = _yaml(text, str(candidate), "variables file") or {}
            if not isinstance(data, dict):
                raise AnsibleInventoryError(f"{candidate}: must be a mapping of variables")
            return data
    return {}


def _yaml(text: str, shown: str, what: str) -> Any:
    """A YAML file's data, within the inventory's limits (no alias bomb); an error names the
    line, never its text: a vault password or `ansible_become_password` may be on it."""
    try:
        return parse_text(text, shown, what, allow_empty=True).data
    except ConfigError as exc:
        raise AnsibleInventoryError("; ".join(exc.problems)) from None


def select(hosts: list[AnsibleHost], pattern: str) -> list[AnsibleHost]:
    """The hosts a pattern names: 'all', group or host names separated by ':' or ','."""
    names = [p.strip() for p in re.split(r"[:,]", pattern) if p.strip()]
    return [h for h in hosts if any(n == "all" or n == h.name or n in h.groups for n in names)]


def host_spec(host: AnsibleHost, ssh_config: str | None = None) -> str:
    """The testinfra spec of an Ansible host, from its connection variables."""
    v = host.vars
    connection = str(v.get("ansible_connection", "ssh"))
    if connection == "local":
        return "local://"
    address = str(v.get("ansible_host", host.name))
    if connection == "docker":
        return f"docker://{address}"
    if connection not in ("ssh", "paramiko", "smart"):
        raise AnsibleInventoryError(f"host {host.name}: ansible_connection {connection!r} is not supported")
    user = v.get("ansible_user") or v.get("ansible_ssh_user")
    port = v.get("ansible_port") or v.get("ansible_ssh_port")
    key = v.get("ansible_ssh_private_key_file") or v.get("ansible_private_key_file")
    netloc = f"[{address}]" if ":" in address else address
    netloc = f"{user}@{netloc}" if user else netloc
    netloc = f"{netloc}:{port}" if port else netloc
    query = []
    if key:
        query.append(f"ssh_identity_file={key}")
    if ssh_config:
        query.append(f"ssh_config={ssh_config}")
    scheme = "paramiko" if connection == "paramiko" else "ssh"
    return f"{scheme}://{netloc}" + (f"?{'&'.join(query)}" if query else "")
