"""The opscheck project's pytest glue: each family's fixtures, from fixtures/<stem>.py
(those of the families the inventory has targets for; see opscheck.plugin)."""

from opscheck.plugin import load_fixture_modules as pytest_configure  # noqa: F401
