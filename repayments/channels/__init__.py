"""Payment channel adapters: one module per channel behind the interface in ``base``."""
