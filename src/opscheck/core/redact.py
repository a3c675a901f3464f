"""Keep secrets out of reports, logs and assertion messages.

Every secret the inventory loads (passwords in DSNs and URLs, tokens in URL queries,
secret headers, keys) is registered here; report hooks pass all text through `redact`
before it is written, and `mask_url` shows a DSN or URL with its secrets masked.

A secret leaves in more forms than its own: URL-encoded, escaped by repr or JSON or
HTML, base64-encoded, and as the Basic header requests derives from a URL's userinfo
(base64 of user:password). Every such form is registered with it; and since a message
may have been cut, any run of FRAGMENT or more characters of a secret is masked too.
Text is masked before it is cut (`clip`), never after.
"""

import base64
import html
import json
import re
import threading
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlsplit, urlunsplit

MASK = "***"
MIN_LENGTH = 4  # shorter values cannot be scrubbed from text without garbling it
FRAGMENT = 8  # a run this long of a secret (a cut-off prefix, a middle) is masked too
# URL query parameters that carry a credential (libpq and redis-py read `password` there)
SENSITIVE_QUERY = re.compile(r"pass|secret|token|key|sig|auth|credential", re.IGNORECASE)
DSN_PASSWORD = re.compile(r"\b(password|sslpassword)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)")
LIBPQ_KEYS = re.compile(r"\b(host|hostaddr|dbname|user|port|sslmode|service)\s*=")
# Immutable snapshots, replaced whole by `register`: a gather thread registers a login token
# while a check's thread redacts, and iterating a set another thread adds to raises
# "Set changed size during iteration" (a healthy check failed so in CI).
_secrets: tuple[str, ...] = ()  # every form of every secret, longest first
_pieces: frozenset[str] = frozenset()  # every FRAGMENT-long window of every form that looks like key material
_REGISTERING = threading.Lock()


def register(value: str | None) -> None:
    """Remember a secret: the credentials inside a URL or DSN, else the whole value."""
    global _secrets, _pieces
    if not value:
        return
    forms = {form for secret in _credentials(value) if len(secret) >= MIN_LENGTH for form in encodings(secret)}
    with _REGISTERING:
        if forms <= set(_secrets):
            return
        _secrets = tuple(sorted(forms.union(_secrets), key=len, reverse=True))
        _pieces = _pieces.union(p for form in forms for p in _windows(form) if _looks_random(p))


def encodings(secret: str) -> set[str]:
    """The forms a secret takes on its way out: raw, URL-encoded, repr/JSON/HTML-escaped, base64."""
    forms = {secret, quote(secret, safe=""), quote_plus(secret), unquote(secret), html.escape(secret)}
    forms |= {repr(secret)[1:-1], json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}
    forms.add(base64.b64encode(secret.encode()).decode())
    return {f for f in forms if len(f) >= MIN_LENGTH}


def basic_auth(user: str, password: str) -> str:
    """The Authorization: Basic value requests sends for a URL's user:password."""
    return base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode()


def redact(text: str) -> str:
    """Replace every registered secret in text by ***, and any FRAGMENT-long run of one."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return _mask_fragments(text, _pieces) if _pieces else text


def _windows(form: str) -> list[str]:
    return [form[i : i + FRAGMENT] for i in range(len(form) - FRAGMENT + 1)]


def _looks_random(piece: str) -> bool:
    """A window with a digit or a capital among letters: key material, not a word that a
    password made of words shares with ordinary text ("password", a user name)."""
    return bool(re.search(r"[0-9A-Z]", piece)) and not piece.isdigit() and bool(re.search(r"[a-z]", piece))


def _mask_fragments(text: str, pieces: frozenset[str]) -> str:
    """Mask what is left of a secret that was cut or spliced: any FRAGMENT characters of it."""
    hidden = bytearray(len(text))
    for piece in pieces:
        at = text.find(piece)
        while at != -1:
            hidden[at : at + FRAGMENT] = b"\x01" * FRAGMENT
            at = text.find(piece, at + 1)
    if not any(hidden):
        return text
    out, i = [], 0
    while i < len(text):
        if hidden[i]:
            while i < len(text) and hidden[i]:
                i += 1
            out.append(MASK)
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def clip(text: str, limit: int) -> str:
    """Masked first, then cut to `limit` characters: a cut never leaves a secret's prefix."""
    return redact(text)[:limit]


def clip_middle(text: str, limit: int) -> str:
    """Masked first, then its start and its end within `limit` characters: a traceback's last
    lines (what was raised, and where) are the part a reader needs."""
    masked = redact(text)
    if len(masked) <= limit:
        return masked
    marker = "\n[... cut ...]\n"
    head = limit // 4
    return masked[:head] + marker + masked[len(masked) - (limit - head - len(marker)) :]


def mask_url(url: str) -> str:
    """A URL or libpq DSN with its password and credential query values replaced by ***."""
    if "://" in url:
        try:
            parts = urlsplit(url)
        except ValueError:
            return redact(url)
        netloc = parts.netloc
        if "@" in netloc:
            try:
                host = parts.hostname or ""
                host = f"[{host}]" if ":" in host else host
                host = f"{host}:{parts.port}" if parts.port else host
            except ValueError:
                host = netloc.rpartition("@")[2]
            # http(s): the whole userinfo goes (a user name there may be a token); a database
            # URL keeps its role, which says who connected
            user = "" if parts.scheme in ("http", "https") else (parts.username or "")
            netloc = f"{user}:{MASK}@{host}" if user else f"{MASK}@{host}"
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
        if parts.password is not None:
            found.append(basic_auth(parts.username or "", parts.password))
        elif parts.username and parts.scheme in ("http", "https"):
            found += [parts.username, basic_auth(parts.username, "")]  # https://TOKEN@host
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
