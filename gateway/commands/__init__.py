"""The `shareguard` command groups, one module each; `gateway.cli` lists them in COMMAND_MODULES."""
