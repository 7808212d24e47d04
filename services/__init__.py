"""Business rules per area. No HTTP and no SQL text here: services call repositories."""
