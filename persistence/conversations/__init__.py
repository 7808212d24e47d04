"""Conversations (issue 16): a user's conversations with a chatbot and their messages."""
