"""The job records: what the API tells about background work (issue 14)."""
