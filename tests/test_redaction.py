"""Secrets never reach a report: every form a credential takes in an inventory is registered
and masked (libpq key=value DSNs with spaces or quotes, passwords in URL queries, tokens,
Basic auth headers, ssh:// host specs), and waived failures are redacted too."""

import threading

import pytest

from opscheck.core import redact
from tests.conftest import run_suite
from tests.servers import closed_port

FORMS = [
    ("host=db user=ops password = s3cret-spaced", "s3cret-spaced"),
    ("host=db password='my quoted secret' user=ops", "my quoted secret"),
    ("postgresql://ops@db/app?password=s3cret-in-query", "s3cret-in-query"),
    ("redis://db:6379/0?password=redis-query-pw", "redis-query-pw"),
    ("https://api.example/health?token=tok-123456&page=2", "tok-123456"),
    ("Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA=="),
    ("ssh://deploy:ssh-pass-99@web1", "ssh-pass-99"),
]


@pytest.mark.parametrize("value, secret", FORMS)
def test_every_form_is_registered_and_masked(value, secret):
    redact.register(value)
    assert secret not in redact.redact(f"failure: {value} ({secret})")
    assert secret not in redact.mask_url(value)


def test_dsn_and_header_secrets_stay_out_of_every_report(tmp_path):
    """Failed checks and a waived one (xfail): no secret in the output or any report file."""
    import datetime as dt

    import yaml

    port = closed_port()
    tomorrow = (dt.date.today() + dt.timedelta(days=1)).isoformat()
    (tmp_path / "inventory.waivers.yml").write_text(
        yaml.safe_dump(
            {
                "waivers": [
                    {
                        "check": "test_postgres_select_1",
                        "target": "query",
                        "owner": "ops",
                        "reason": "db move, OPS-1",
                        "expires": tomorrow,
                    }
                ]
            }
        )
    )
    inventory = {
        "environment": "selftest-redaction",
        "postgres": [
            {"name": "kv", "dsn": f"host=127.0.0.1 port={port} user=ops password = 'kv secret pw'"},
            {"name": "query", "dsn": f"postgresql://ops@127.0.0.1:{port}/app?password=query-secret-pw"},
        ],
        "http": [
            {
                "name": "api",
                "url": f"http://127.0.0.1:{port}/health?token=url-token-777",
                "headers": {"Authorization": "Basic YWRtaW46aHVudGVyMg=="},
            }
        ],
        "hosts": [{"name": "web", "spec": f"ssh://deploy@127.0.0.1:{port}", "timeout": 2}],
    }
    result = run_suite(inventory, tmp_path, f"--metrics-file={tmp_path / 'opscheck.prom'}")
    assert result.rc == 1, result.output
    assert result.outcome("test_postgres_select_1[kv]") == "failed"
    assert result.outcome("test_postgres_select_1[query]") in ("xfailed", "skipped"), result.output
    texts = [result.output] + [
        p.read_text(errors="replace")
        for p in tmp_path.rglob("*")
        if p.is_file() and p.suffix in (".json", ".xml", ".html", ".prom")
    ]
    assert (tmp_path / "opscheck.prom").exists() and (tmp_path / "reports" / "index.html").exists()
    for secret in ("kv secret pw", "query-secret-pw", "url-token-777", "YWRtaW46aHVudGVyMg=="):
        assert not any(secret in text for text in texts), f"{secret} leaked"


def test_a_long_message_keeps_its_end_and_stays_masked():
    """A traceback of an exception opscheck did not expect: the report keeps its start and its
    last lines (what was raised, and where), masked before the cut."""
    redact.register("postgresql://ops:cut-secret-77@db/app")
    frames = "".join(f'  File "lib.py", line {n}, in f{n}\n    step({n})\n' for n in range(400))
    dsn = "postgresql://ops:cut-secret-77@db/app"
    text = f"Traceback (most recent call last):\n{frames}  dsn {dsn}\nRuntimeError: the end"
    kept = redact.clip_middle(text, 4000)
    assert len(kept) <= 4000 and kept.startswith("Traceback") and kept.endswith("RuntimeError: the end")
    assert "cut-secret-77" not in kept and "[... cut ...]" in kept
    assert redact.clip_middle("short", 4000) == "short"


def test_registering_while_another_thread_redacts():
    """A gather thread registers a login token while a check's thread redacts: redact reads
    whole snapshots (it iterated the set being added to: "Set changed size during iteration",
    a healthy check failed so in CI)."""
    done = threading.Event()
    errors: list[BaseException] = []

    def keep_registering():
        try:
            for n in range(400):
                redact.register(f"Tok3n-{n:05d}-race-Xq")
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            done.set()

    threading.Thread(target=keep_registering, daemon=True).start()
    text = "GET /auth/me with Tok3n-00007-race-Xq and a cut Tok3n-0299"
    while not done.is_set():
        try:
            redact.redact(text)
        except RuntimeError as exc:
            errors.append(exc)
            break
    assert not errors, errors
    assert "Tok3n-00007-race-Xq" not in redact.redact(text)


@pytest.mark.parametrize(
    "url, shown",
    [
        ("postgresql://ops:pa#ss9Word@db:5432/app", "postgresql://ops:***@db:5432/app"),  # libpq: # is in the password
        (
            "postgresql://ops@db/app?password=pa#ss9Word&sslmode=require",
            "postgresql://ops@db/app?password=***&sslmode=require",
        ),
        ("postgresql://ops:pa[ss99x@db/app", "postgresql://ops:***@db/app"),  # urlsplit refuses it; the host stays
        ("postgresql://ops@db/app", "postgresql://ops@db/app"),  # a role alone is no secret
        ("http://tok3n1234abcd:@api/", "http://***@api/"),
        (
            "http://api/cb?to=http%3A%2F%2Fa%3Asecret9X%40h&page=2",
            "http://api/cb?to=http%3A%2F%2Fa%3Asecret9X%40h&page=2",
        ),
        ("http://api/cb?token=abc%40def99&page=2", "http://api/cb?token=***&page=2"),  # masked as written, not decoded
    ],
)
def test_urls_are_masked_as_their_clients_read_them(url, shown):
    redact.register(url)
    assert redact.mask_url(url) == shown


def test_values_that_are_not_urls_register_what_goes_out_alone():
    redact.register("user=ops; session=ck7Session99")  # a cookie, not a password-less libpq DSN
    assert "ck7Session99" not in redact.redact("Cookie: session=ck7Session99; theme=dark")
    redact.register("host=db user=ops dbname=app")  # a DSN without a password holds no secret
    assert redact.redact("user=ops dbname=app") == "user=ops dbname=app"
    redact.register("-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0B\n-----END PUBLIC KEY-----\n")
    assert redact.redact("GRANT USAGE ON SCHEMA s TO PUBLIC; key MIIBIjANBgkqhkiG9w0B") == (
        "GRANT USAGE ON SCHEMA s TO PUBLIC; key ***"
    )
    assert redact.secrets_in_body({"client_id": "ops", "auth": {"client_secret": "nested-s3cret"}}) == ["nested-s3cret"]
    assert redact.secrets_in_body("grant_type=password&client_secret=form-s3cret") == ["form-s3cret"]


def test_a_kubeconfig_token_and_password_are_registered():
    kubernetes_client = pytest.importorskip("kubernetes.client")
    from opscheck.families.kubernetes import _register_credentials

    configuration = kubernetes_client.Configuration()
    configuration.api_key = {"authorization": "Bearer kube-t0ken-Abcdef"}
    configuration.username, configuration.password = "kadmin", "kube-Passw0rd"
    _register_credentials(configuration)
    basic = configuration.get_basic_auth_token().split()[1]
    text = redact.redact(f"401: Bearer kube-t0ken-Abcdef; Basic {basic}; password kube-Passw0rd")
    assert "kube-t0ken" not in text and basic not in text and "Passw0rd" not in text, text


def test_log_lines_written_as_they_come_are_masked():
    import logging

    redact.register("log-s3cret-Value9")
    formatter = redact.MaskedFormatter(logging.Formatter("%(levelname)s %(message)s"))
    record = logging.LogRecord("urllib3", logging.DEBUG, __file__, 1, "GET /?token=%s", ("log-s3cret-Value9",), None)
    assert formatter.format(record) == "DEBUG GET /?token=***"


def test_an_ansible_vars_file_error_names_the_line_not_its_text(tmp_path):
    from opscheck.core.ansible import AnsibleInventoryError, read_inventory

    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "web.yml").write_text('ansible_become_password: "Bec0mePassw0rd" extra\n')
    (tmp_path / "hosts.ini").write_text("[web]\nweb1\n")
    with pytest.raises(AnsibleInventoryError) as raised:
        read_inventory(tmp_path / "hosts.ini")
    assert "Bec0mePassw0rd" not in str(raised.value) and "web.yml:1" in str(raised.value), str(raised.value)


def test_cli_urls_and_dsns_stay_out_of_their_errors(tmp_path):
    import subprocess
    import sys

    dead = closed_port()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "opscheck.cli",
            "discover",
            "--prometheus",
            f"http://prom:PromDiscPw99@127.0.0.1:{dead}/",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "cannot" in proc.stderr or "prometheus" in proc.stderr, proc.stderr
    assert "PromDiscPw99" not in proc.stdout + proc.stderr, proc.stderr


def test_ordinary_values_are_not_taken_for_secrets(tmp_path, monkeypatch):
    """What a review found masked everywhere: a DSN's quoted options, a header's charset, a
    body's ordinary keys and values, the shell's $PWD, numbers and paths in secret-named
    variables; and a redis URL's query password with an @ in it (its end leaked)."""
    from opscheck.inventory import load

    assert redact.mask_url("redis://host:6379?password=p@ssw0rdX") == "redis://host:6379?password=***"
    redact.register(
        "host=db.internal port=5432 user=monitor application_name=opscheck options='-c statement_timeout=5000'"
    )
    redact.register("application/json; charset=utf-8")
    for key, value in {"author": "alice", "passive": True, "token_ttl": 3600, "keyboard": "qwerty"}.items():
        assert redact.secrets_in_body({key: value}) == []
    monkeypatch.setenv("PWD", str(tmp_path))
    monkeypatch.setenv("SESSION_TIMEOUT", "3600")
    monkeypatch.setenv("CLIENT_KEY_FILE", "/srv/tls/client.key")
    monkeypatch.setenv("DB_PASSWORD", "realS3cret-99x")
    (tmp_path / "inv.yml").write_text(
        "environment: e\ncommands:\n  - name: c\n    spec: local://\n    run:\n"
        "      - {name: a, argv: [tool, '${PWD}', '${SESSION_TIMEOUT}', '${CLIENT_KEY_FILE}', '${DB_PASSWORD}']}\n"
    )
    load(tmp_path / "inv.yml", here=False)
    text = f"monitor on db.internal:5432 (opscheck) utf-8 alice qwerty {tmp_path} 3600 /srv/tls/client.key"
    assert redact.redact(text) == text
    assert redact.redact("tool realS3cret-99x") == "tool ***"
