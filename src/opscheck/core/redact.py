"""Keep secrets out of reports, logs and assertion messages.

Every secret the inventory loads (passwords in DSNs and URLs, tokens in URL queries,
secret headers, keys) is registered here; report hooks pass all text through `redact`
before it is written, and `mask_url` shows a DSN or URL with its secrets masked.
"""

import re
from urllib.parse import parse_qsl, urlsplit, urlunsplit

MASK = "***"
MIN_LENGTH = 4  # shorter values cannot be scrubbed from text without garbling it
# URL query parameters that carry a credential (libpq and redis-py read `password` there)
SENSITIVE_QUERY = re.compile(r"pass|secret|token|key|sig|auth|credential", re.IGNORECASE)
DSN_PASSWORD = re.compile(r"\b(password|sslpassword)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)")
LIBPQ_KEYS = re.compile(r"\b(host|hostaddr|dbname|user|port|sslmode|service)\s*=")
_secrets: set[str] = set()


def register(value: str | None) -> None:
    """Remember a secret: the credentials inside a URL or DSN, else the whole value."""
    if not value:
        return
    for secret in _credentials(value):
        if len(secret) >= MIN_LENGTH:
            _secrets.add(secret)


def redact(text: str) -> str:
    """Replace every registered secret in text by ***."""
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def mask_url(url: str) -> str:
    """A URL or libpq DSN with its password and credential query values replaced by ***."""
    if "://" in url:
        try:
            parts = urlsplit(url)
        except ValueError:
            return redact(url)
        netloc = parts.netloc
        if parts.password is not None:
            host = parts.hostname or ""
            host = f"{host}:{parts.port}" if parts.port else host
            netloc = f"{parts.username or ''}:{MASK}@{host}"
        query = "&".join(
            f"{k}={MASK}" if SENSITIVE_QUERY.search(k) else f"{k}={v}"
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
        )
        return redact(urlunsplit(parts._replace(netloc=netloc, query=query)))
    return redact(DSN_PASSWORD.sub(lambda m: f"{m.group(1)}={MASK}", url))


def _credentials(value: str) -> list[str]:
    if "://" in value:
        try:
            parts = urlsplit(value)
            found = [parts.password or ""]
        except ValueError:
            return [value]
        found += [v for k, v in parse_qsl(parts.query) if SENSITIVE_QUERY.search(k)]
        return found
    if _is_dsn(value):
        found = [_unquote(m.group(2)) for m in DSN_PASSWORD.finditer(value)]
        if found or LIBPQ_KEYS.search(value):
            return found
    # a header value such as "Bearer abc" or "Basic dXNl...": the whole value and its token
    return [value, *value.split()[1:]]


def _is_dsn(value: str) -> bool:
    """libpq's key=value form: `host=db user=ops password=...` (spaces around = allowed)."""
    return bool(re.match(r"^\s*[a-z_]+\s*=", value))


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    return text
