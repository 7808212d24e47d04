"""A chatbot's knowledge index (issue 15): passages of its crawled pages and uploaded documents,
searchable by full text (PostgreSQL tsvector + GIN, SQLite FTS5)."""
