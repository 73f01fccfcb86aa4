"""SQL as named `Query` constants, one module per domain."""
