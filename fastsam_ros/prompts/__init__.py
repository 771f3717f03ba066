"""Prompt-guided selection: points, boxes, text (CLIP), prompt files."""
