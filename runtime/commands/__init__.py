"""The command-line layer: thin click commands over the runtime library."""
