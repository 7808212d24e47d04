"""API keys (issue 16): long-lived credentials a user makes for scripts and integrations."""
