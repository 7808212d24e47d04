"""Websites (issue 15, "Website sources"): a chatbot's crawled sites and their pages."""
