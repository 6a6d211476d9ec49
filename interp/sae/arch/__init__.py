"""SAE architectures, one module each (the class with its config checks, SAELens mapping and
defaults); `interp.sae.arch.registry` is the one list of them. Adding an architecture: a module
here subclassing `base.Architecture`, and its import and instance in the registry.

Deliberately empty: importing a module of this package must not import the others.
"""
