"""The example inventories (data only): `opscheck init` copies them into a new project, and
an editable install finds them as this package."""
