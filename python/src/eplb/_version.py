# Package version; tests check that it equals the loaded libeplb's version.
__version__ = "0.1.0"
