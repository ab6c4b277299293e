"""Everything that touches other people's code: the submission format, loading it, the
sandbox that runs it, validation, the registry of pinned entries and the Hub.

This package is the security boundary of rtsr: code from a submission runs only through
:mod:`rtsr.submissions.sandbox` unless a user names their own folder to ``sr``, ``runtime``
or ``evaluate``.
"""
