"""Small helpers shared by every layer: the UTC clock and atomic file writes."""
