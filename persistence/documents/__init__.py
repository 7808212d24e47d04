"""Documents (issue 15): files uploaded to a chatbot."""
