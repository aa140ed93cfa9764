"""Board support: `base` defines the interface, `rp2` and `sim` implement it."""
