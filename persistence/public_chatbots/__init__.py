"""Public chatbots (issue 16): what visitors reach, read by `public_id` or visitor token."""
