"""rtsr: the NTIRE 2023 Real-Time Super-Resolution challenge as a library and a CLI."""

__version__ = "0.1.0"
