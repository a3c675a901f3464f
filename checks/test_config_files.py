"""Configuration files on hosts: one condition per key, judged without showing the value.

The runbooks' `cat .env | grep DATABASE_URL` prints a password to the terminal and into
any log of the session; these checks say only the key and whether its condition held.
"""

import pytest

from opscheck.core.checking import expect
from opscheck.core.settings import keep_secret, verdict

pytestmark = [pytest.mark.host]


@pytest.mark.runbook(
    "A configuration key does not meet its condition (runbook: DATABASE_URL must carry sslmode=require "
    "or stricter and sslrootcert=...; DB_MAX_CONNECTIONS sized for the pool). The value is never shown: "
    "open the file on the host yourself (`grep -c KEY FILE`, then an editor, not `cat`), fix it, and "
    "restart the services that read it (`docker compose up -d SERVICE`)."
)
def test_config_setting_as_expected(config_setting, config_file):
    target, setting = config_setting.target, config_setting.value
    found, value = config_file.value(setting.key)
    keep_secret(value)
    problem = verdict(setting, found, value, f"in {target.path}")
    expect(problem is None, f"{target.shown}: {problem}")
