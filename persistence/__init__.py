"""Engine and session setup, ORM models and repositories. All SQL of the service lives here."""
