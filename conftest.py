"""The opscheck project's pytest glue: each family's fixtures, from fixtures/<stem>.py.

The plugin itself (opscheck.plugin) is loaded by the installed package's pytest11 entry
point; the families to load come from its registry (opscheck.families.FAMILIES).
"""

from opscheck.families import fixture_modules

pytest_plugins = fixture_modules()
