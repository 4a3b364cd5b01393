"""The gateway's shared library: configuration, errors, domain rules and adapters behind the functions."""
