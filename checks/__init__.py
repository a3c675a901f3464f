"""opscheck's checks: one module per family, parametrized over the inventory."""
