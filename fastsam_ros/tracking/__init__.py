"""Stable instance ids through a stream, and prompts that follow what they selected."""
