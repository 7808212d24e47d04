"""In-app notifications (issue 14): what the service tells a user, read or unread."""
