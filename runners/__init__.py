"""Yukti's built-in backends, one module each, found through the `yukti.runners` entry points."""
