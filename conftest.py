"""Wires the opscheck plugin in: inventory options, fixtures, marker rules, reports.

An installed opscheck (pip install -e .) loads the plugin through its pytest11 entry
point, early enough for --inventory PATH to parse; a bare checkout loads it here.
"""

import sys

pytest_plugins = [] if "fixtures.plugin" in sys.modules else ["fixtures.plugin"]
