"""Runs as data: the documents a plan emits, the sinks that subscribe to them (CSV, archive,
progress, callbacks), the raw archive, spectra and their exports."""
