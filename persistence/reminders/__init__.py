"""Task reminders (issue 14): when to remind the owner of a task, and whether it fired."""
