"""Regulator exports and retention, all read from the case store and recorded in the audit trail.

``dsa`` builds statements of reasons and ``validator`` checks them against the vendored Transparency Database
rules (``reference/``); ``ncmec`` builds CyberTipline-shaped report bundles; ``transparency`` the periodic
report; ``manifest`` writes every export folder and its audit entry; ``retention`` purges text past policy;
``casefacts`` is the read model all of them share; ``pseudonyms`` and ``privacy`` keep people out of the outputs.
See compliance/README.md for the mappings and their reading of the law.
"""
