"""Inventory value types that are checked where they are declared.

A value that would crash a check later (a port of 99999, a regex that does not compile, a
Redis URL with an http:// scheme, a host spec without a host, a CA file that is not there)
is refused at load, naming the field, never echoing the value (it may hold a secret).
Each type is an `Annotated` str, so a family declares `url: HttpUrl` and is done.
"""

import os
import re
from typing import Annotated
from urllib.parse import SplitResult, urlsplit

from pydantic import AfterValidator, Field, SecretStr, ValidationInfo

# --- regexes ---------------------------------------------------------------------------------


def compiles(value: str) -> str:
    try:
        re.compile(value)
    except (re.error, RecursionError, OverflowError) as exc:
        raise ValueError(f"not a valid regular expression ({getattr(exc, 'msg', type(exc).__name__)})") from None
    return value


Regex = Annotated[str, AfterValidator(compiles)]

# --- ports and URLs -------------------------------------------------------------------------

Port = Annotated[int, Field(gt=0, lt=65536)]


def _split(value: str, schemes: tuple[str, ...], what: str, host_required: bool = True) -> SplitResult:
    """urlsplit, with the scheme, the host and the port checked (ValueError names what is wrong)."""
    if not value.strip():
        raise ValueError(f"the {what} is empty")
    if any(c.isspace() for c in value):
        raise ValueError(f"the {what} contains white space")
    scheme = value.split("://", 1)[0].lower() if "://" in value else ""
    if scheme not in schemes:
        raise ValueError(f"the {what} must start with {' or '.join(s + '://' for s in schemes)}")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        reason = "the port is not a number from 1 to 65535" if "port" in str(exc).lower() else "malformed"
        raise ValueError(f"the {what} is not a valid URL: {reason}") from None
    if host_required and not parts.hostname:
        raise ValueError(f"the {what} has no host")
    if port == 0:
        raise ValueError(f"the {what} is not a valid URL: the port is not a number from 1 to 65535")
    return parts


def _http_url(value: str) -> str:
    _split(value, ("http", "https"), "URL")
    return value


HttpUrl = Annotated[str, AfterValidator(_http_url)]


def _plain_http_url(value: str) -> str:
    _split(value, ("http",), "URL")
    return value


PlainHttpUrl = Annotated[str, AfterValidator(_plain_http_url)]


def _redis_url(value: SecretStr) -> SecretStr:
    text = value.get_secret_value()
    if text.lower().startswith("unix://"):
        _split(text, ("unix",), "Redis URL", host_required=False)
        return value
    parts = _split(text, ("redis", "rediss"), "Redis URL")
    if parts.path.strip("/") and not parts.path.strip("/").isdigit():
        raise ValueError("the Redis URL's path must be a database number (redis://host:6379/0)")
    return value


RedisUrl = Annotated[SecretStr, AfterValidator(_redis_url)]


def _engine_url(value: str) -> str:
    parts = _split(value, ("unix", "tcp", "ssh", "npipe"), "engine URL", host_required=False)
    if parts.scheme in ("tcp", "ssh") and not parts.hostname:
        raise ValueError("the engine URL has no host")
    if parts.password is not None:
        raise ValueError(_NO_PASSWORD)
    return value


EngineUrl = Annotated[str, AfterValidator(_engine_url)]

# --- libpq connection strings ---------------------------------------------------------------

LIBPQ_KEYS = frozenset(
    [
        "host",
        "hostaddr",
        "port",
        "dbname",
        "user",
        "password",
        "passfile",
        "require_auth",
        "channel_binding",
        "connect_timeout",
        "client_encoding",
        "options",
        "application_name",
        "fallback_application_name",
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
        "tcp_user_timeout",
        "replication",
        "gssencmode",
        "sslmode",
        "requiressl",
        "sslnegotiation",
        "sslcompression",
        "sslcert",
        "sslkey",
        "sslpassword",
        "sslcertmode",
        "sslrootcert",
        "sslcrl",
        "sslcrldir",
        "sslsni",
        "requirepeer",
        "ssl_min_protocol_version",
        "ssl_max_protocol_version",
        "krbsrvname",
        "gsslib",
        "gssdelegation",
        "service",
        "target_session_attrs",
        "load_balance_hosts",
    ]
)
_KEYWORD = re.compile(r"\s*([A-Za-z_]+)\s*=\s*")


def _ports_ok(ports: str) -> bool:
    return all(p == "" or (p.isdigit() and 0 < int(p) < 65536) for p in ports.split(","))


def _keyword_dsn(text: str) -> dict[str, str]:
    """libpq's `key=value key='quoted value'` form, parsed as libpq does (ValueError if malformed)."""
    found, pos = {}, 0
    while pos < len(text):
        if not text[pos:].strip():
            break
        match = _KEYWORD.match(text, pos)
        if not match:
            raise ValueError("the DSN is not `key=value ...` nor a postgresql:// URL")
        key, pos = match.group(1), match.end()
        if key not in LIBPQ_KEYS:
            raise ValueError(f"the DSN has an unknown keyword {key!r}")
        if text[pos : pos + 1] == "'":
            value, pos = [], pos + 1
            while pos < len(text) and text[pos] != "'":
                if text[pos] == "\\" and pos + 1 < len(text):
                    pos += 1
                value.append(text[pos])
                pos += 1
            if pos >= len(text):
                raise ValueError(f"the DSN's value of {key} has no closing quote")
            found[key], pos = "".join(value), pos + 1
        else:
            end = pos
            while end < len(text) and not text[end].isspace():
                end += 1
            found[key], pos = text[pos:end], end
    return found


def _postgres_dsn(value: SecretStr) -> SecretStr:
    text = value.get_secret_value()
    if not text.strip():
        raise ValueError("the DSN is empty (an unset or empty ${VAR}?): libpq would connect to its local defaults")
    if "://" in text:
        scheme = text.split("://", 1)[0].lower()
        if scheme not in ("postgresql", "postgres"):
            raise ValueError("the DSN must be a postgresql:// URL or libpq's key=value form")
        netloc = text.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0].rpartition("@")[2]
        for host in netloc.split(","):
            port = host.rsplit("]", 1)[-1].rpartition(":")[2] if ":" in host.rsplit("]", 1)[-1] else ""
            if not _ports_ok(port):
                raise ValueError("the DSN's port is not a number from 1 to 65535")
        return value
    params = _keyword_dsn(text)
    if "port" in params and not _ports_ok(params["port"]):
        raise ValueError("the DSN's port is not a number from 1 to 65535")
    return value


PostgresDsn = Annotated[SecretStr, AfterValidator(_postgres_dsn)]

# --- testinfra host specs -------------------------------------------------------------------

HOST_BACKENDS = frozenset(
    ["local", "ssh", "paramiko", "safe-ssh", "docker", "podman", "kubectl", "openshift", "lxc", "salt", "ansible"]
)
_NO_PASSWORD = (
    "a password in the spec would be put on a command line (sshpass -p, visible in ps): "
    "use an SSH key or an agent (ssh-add), and ~/.ssh/config for the user"
)


def _host_spec(value: str) -> str:
    """testinfra's `backend://[user@]host[:port]`: a known backend, a host, a port in range, no password."""
    if "://" not in value:
        raise ValueError(f"a host spec is backend://host, e.g. ssh://deploy@web1 ({', '.join(sorted(HOST_BACKENDS))})")
    backend, rest = value.split("://", 1)
    if backend not in HOST_BACKENDS:
        raise ValueError(f"unknown host backend {backend!r}: one of {', '.join(sorted(HOST_BACKENDS))}")
    if backend == "local":
        return value
    try:
        parts = urlsplit(f"ssh://{rest}")
        parts.port  # noqa: B018 - raises for a bad port
    except ValueError:
        raise ValueError("the host spec's port is not a number from 1 to 65535") from None
    if parts.password is not None:
        raise ValueError(_NO_PASSWORD)
    if backend != "ansible" and not parts.hostname:
        raise ValueError("the host spec has no host")
    return value


HostSpec = Annotated[str, AfterValidator(_host_spec)]

# --- local files ----------------------------------------------------------------------------


def _local_file(value: str, info: ValidationInfo) -> str:
    """A file the checks read on the machine that runs them: it must exist there. `opscheck
    validate` checks the file's syntax elsewhere (a CI job without the certificates), unless
    told it runs on the checks' machine (`--here`)."""
    here = (info.context or {}).get("here", True)
    if not value.strip():
        raise ValueError("empty: give a file path")
    if here and not os.path.isfile(os.path.expanduser(value)):
        raise ValueError("no such file on this machine (the checks read it here)")
    return value


LocalFile = Annotated[str, AfterValidator(_local_file)]


def _verify(value: bool | str, info: ValidationInfo) -> bool | str:
    return value if isinstance(value, bool) else _local_file(value, info)


Verify = Annotated[bool | str, AfterValidator(_verify)]


def _listen_port(value: int | str) -> int | str:
    """5432, or '127.0.0.1:5432' / '[::1]:5432' (a listening address and its port)."""
    if isinstance(value, bool):
        raise ValueError("a port is a number, not a boolean")
    if isinstance(value, int):
        port = str(value)
    else:
        port = value.rpartition(":")[2]
        if not (port.isdigit() and (":" in value or value.isdigit())):
            raise ValueError("a port is a number (5432) or address:port ('127.0.0.1:5432')")
    if not 0 < int(port) < 65536:
        raise ValueError("a port is a number from 1 to 65535")
    return int(value) if isinstance(value, str) and value.isdigit() else value


ListenPort = Annotated[int | str, AfterValidator(_listen_port)]
MAX_HOURS = 876_000  # 100 years: beyond it a timedelta overflows a datetime
MAX_DAYS = 36_500
