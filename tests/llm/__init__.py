"""The chat-completions adapter (issue 16, the `openai` answer provider) against a fake server on
127.0.0.1, and the prompt and citation rules."""
