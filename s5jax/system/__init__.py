"""The refined system of the report: its configuration and its decision rules (pure, batched jnp)."""
