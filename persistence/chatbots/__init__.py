"""Chatbots (issue 15, first slice): a user's chatbots and their settings."""
