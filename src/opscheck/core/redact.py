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
import contextlib
import html
import json
import logging
import re
import threading
from urllib.parse import parse_qsl, quote, quote_plus, unquote

MASK = "***"
MIN_LENGTH = 4  # shorter values cannot be scrubbed from text without garbling it
FRAGMENT = 8  # a run this long of a secret (a cut-off prefix, a middle) is masked too
# URL query parameters that carry a credential (libpq and redis-py read `password` there)
SENSITIVE_QUERY = re.compile(r"pass|secret|token|key|sig|auth|credential", re.IGNORECASE)
# a body's key that names a credential, as a whole word of the key: client_secret, api-key, not author
SECRET_KEY = re.compile(
    r"(^|[_-])(pass(word|wd|phrase)?|secret|token|api_?key|key|auth(orization)?|credentials?|sig(nature)?)($|[_-])",
    re.IGNORECASE,
)
DSN_PAIR = re.compile(r"(?:^|\s)([a-z_]+)\s*=\s*('(?:[^'\\]|\\.)*'|[^\s']+)")
DSN_PASSWORD = re.compile(r"\b(password|sslpassword)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)")
# libpq's connection keywords: a key=value text made of these alone is a DSN
LIBPQ_KEYWORDS = frozenset(
    """host hostaddr port dbname user password passfile require_auth channel_binding connect_timeout
    client_encoding options application_name fallback_application_name keepalives keepalives_idle
    keepalives_interval keepalives_count tcp_user_timeout replication gssencmode sslmode requiressl
    sslnegotiation sslcompression sslcert sslkey sslpassword sslcertmode sslrootcert sslcrl sslcrldir
    sslsni requirepeer ssl_min_protocol_version ssl_max_protocol_version krbsrvname gsslib
    gssdelegation service target_session_attrs load_balance_hosts""".split()  # noqa: SIM905
)
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


def basic_auth(user: str, password: str) -> list[str]:
    """The Authorization: Basic values a client may send for a URL's user:password: UTF-8,
    and Latin-1 (requests encodes a str so: `pässwörd` differs between the two)."""
    pair = f"{unquote(user)}:{unquote(password)}"
    found = [base64.b64encode(pair.encode()).decode()]
    with contextlib.suppress(UnicodeEncodeError):
        found.append(base64.b64encode(pair.encode("latin-1")).decode())
    return found


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
    if len(text) < 4 * len(pieces):  # fewer windows in the text than pieces: look each window up
        for at in range(len(text) - FRAGMENT + 1):
            if text[at : at + FRAGMENT] in pieces:
                hidden[at : at + FRAGMENT] = b"\x01" * FRAGMENT
    else:
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
    """Masked first, then cut to `limit` characters: a cut never leaves a secret's prefix.
    Only the part that can reach the cut is masked (its length plus the longest secret's):
    a 32 MB answer costs what its first 500 characters do."""
    longest = len(_secrets[0]) if _secrets else 0
    return redact(text[: limit + longest])[:limit]


def clip_line(text: object, limit: int) -> str:
    """Text from outside (a server's message, a log line) on one line, masked, then cut."""
    return clip(" ".join(str(text).split()), limit)


def clip_middle(text: str, limit: int) -> str:
    """Masked first, then its start and its end within `limit` characters: a traceback's last
    lines (what was raised, and where) are the part a reader needs."""
    masked = redact(text)
    if len(masked) <= limit:
        return masked
    marker = "\n[... cut ...]\n"
    head = limit // 4
    return masked[:head] + marker + masked[len(masked) - (limit - head - len(marker)) :]


class MaskedFormatter(logging.Formatter):
    """Another formatter's lines, masked: for the log lines written as they come (pytest's
    live logs and --log-file), which no report hook sees."""

    def __init__(self, inner: logging.Formatter):
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return redact(self.inner.format(record))


def mask_url(url: str) -> str:
    """A URL or libpq DSN with its password and credential query values replaced by ***.

    Read as its client reads it: libpq takes `pa#ss` or `pa?ss` before the first / as a
    password, not a fragment or a query (`_userinfo`); and a query value is masked as written
    (percent-encoded), never decoded first."""
    if "://" not in url:
        return redact(DSN_PASSWORD.sub(lambda m: f"{m.group(1)}={MASK}", url))
    scheme, _, rest = url.partition("://")
    userinfo, authority_end = _userinfo(scheme, rest)
    if userinfo is not None:
        user, colon, _ = userinfo.partition(":")
        web = scheme.lower() in ("http", "https")
        # http(s): the whole userinfo goes (a user name there may be a token); a database
        # URL keeps its role, which says who connected
        shown = f"{MASK}@" if web or not user else f"{user}:{MASK}@" if colon else f"{user}@"
        rest = shown + rest[len(userinfo) + 1 :]
    head, question, tail = rest.partition("?")
    if question:
        query, hashmark, fragment = tail, "", ""
        if not _libpq(scheme):  # libpq reads a # in the query as part of a value
            query, hashmark, fragment = tail.partition("#")
        pairs = [pair.partition("=") for pair in query.split("&")]
        query = "&".join(f"{k}{eq}{MASK}" if eq and SENSITIVE_QUERY.search(k) else f"{k}{eq}{v}" for k, eq, v in pairs)
        rest = f"{head}?{query}{hashmark}{fragment}"
    return redact(f"{scheme}://{rest}")


def _libpq(scheme: str) -> bool:
    return scheme.lower() in ("postgres", "postgresql")


def _userinfo(scheme: str, rest: str) -> tuple[str | None, int]:
    """The userinfo of `rest` (a URL after its scheme://), or None; and where the authority
    ends: libpq ends it at the first / (a ? or # before it is part of a password); the others
    (urlsplit, as redis-py and requests read a URL) at / ? or #. The userinfo runs to the last
    @ before that end: more than a client takes, never less."""
    ends = "/" if _libpq(scheme) else "/?#"
    end = next((i for i, c in enumerate(rest) if c in ends), len(rest))
    at = rest.rfind("@", 0, end)
    return (rest[:at], end) if at != -1 else (None, end)


def _credentials(value: str) -> list[str]:
    if "://" in value:
        scheme, _, rest = value.partition("://")
        found: list[str] = []
        userinfo, end = _userinfo(scheme, rest)
        if userinfo is not None:
            user, colon, password = userinfo.partition(":")
            if password:
                found += [password, *basic_auth(user, password)]
            elif user and scheme.lower() in ("http", "https"):  # https://TOKEN@host or TOKEN:@host
                found += [user, *basic_auth(user, "")]
        query = rest[end:].partition("?")[2]
        found += [v for k, v in parse_qsl(query.partition("#")[0]) if SENSITIVE_QUERY.search(k)]
        if "#" in query:  # libpq's reading: a # is part of the value
            found += [v for k, v in parse_qsl(query) if SENSITIVE_QUERY.search(k)]
        return found
    if _is_dsn(value):
        found = [_unquote(m.group(2)) for m in DSN_PASSWORD.finditer(value)]
        if found or _only_libpq_keys(value):
            return found
    return _tokens(value)


def _tokens(value: str) -> list[str]:
    """A secret value that is not a URL or DSN: the whole value and the parts of it that go
    out alone. A header's token ("Bearer abc"), a cookie's or form's values ("a=1; s=abc"),
    a PEM key's base64 lines (not its armor: "-----END", "PUBLIC" are ordinary words)."""
    if "\n" in value.strip():
        lines = (line.strip() for line in value.splitlines())
        return [value, *(line for line in lines if line and not line.startswith("-----"))]
    pairs = re.findall(r"([^\s=;&,]+)=([^\s;&,]+)", value)  # a cookie's session=..., not its theme=dark
    return [value, *value.split()[1:], *(v for _, v in pairs if len(v) >= FRAGMENT and _looks_random(v))]


def secrets_in_body(body: object) -> list[str]:
    """The values under credential-looking keys of a request body: a dict (nested), a JSON
    text or a form (`client_secret=...&grant_type=...`)."""
    if isinstance(body, dict):
        found = []
        for key, value in body.items():
            if isinstance(value, dict | list):
                found += secrets_in_body(value)
            elif isinstance(value, str) and SECRET_KEY.search(str(key)):
                found.append(value)
        return found
    if isinstance(body, list):
        return [s for value in body for s in secrets_in_body(value)]
    if isinstance(body, str) and body.strip():
        try:
            return secrets_in_body(json.loads(body))
        except (ValueError, RecursionError):
            return [v for k, v in parse_qsl(body.strip()) if SECRET_KEY.search(k)]
    return []


def _is_dsn(value: str) -> bool:
    """libpq's key=value form: `host=db user=ops password=...` (spaces around = allowed)."""
    return bool(re.match(r"^\s*[a-z_]+\s*=", value))


def _only_libpq_keys(value: str) -> bool:
    """Every key of a key=value text is one of libpq's: a DSN without a password holds no
    secret, but a cookie (`user=ops; session=...`) is not a DSN. A quoted value (`options='-c
    statement_timeout=5000'`) is one value, not more keys."""
    pairs = list(DSN_PAIR.finditer(value))
    rest = DSN_PAIR.sub("", value).strip()
    return bool(pairs) and not rest and all(m.group(1) in LIBPQ_KEYWORDS for m in pairs)


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    return text
