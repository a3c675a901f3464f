"""opscheck: operational runbooks as a pytest suite.

The installed package holds the pytest plugin (plugin), the inventory (inventory), one
module per family of targets (families/), shared helpers (core/), the reports (report/)
and the command line (cli/). The checks themselves live in the project's checks/ folder,
and the pytest fixtures that hand targets to them in its fixtures/ folder.
"""

__version__ = "0.2.0"
