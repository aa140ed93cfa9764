"""What is kept per instrument (by its serial number) under the user's config folder: the
calibration (A0, φ0, handedness, dead time, blank, CD constants), the count-rate limits and
the monochromator's settings."""
