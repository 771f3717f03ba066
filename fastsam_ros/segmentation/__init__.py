"""Segmentation: the network, its backends and exports, and instance masks."""
