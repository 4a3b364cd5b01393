"""Developer scripts: the local stack (stack.py, stack_config.py), its lifecycle check, and the demo."""
