"""One module per verb: plain functions taking a Policy and returning typed results.

Nothing here prints, parses arguments or imports rich or APScheduler; the CLI
and the daemon are both callers.
"""
