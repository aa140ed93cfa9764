"""The emulated-Pico tier: rp2040js running MicroPython's rp2 port with firmware/."""
