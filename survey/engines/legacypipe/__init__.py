"""The legacypipe engine's pieces: legacypipe's real command lines as argument lists.

``versions.py`` picks the flag set of a configured legacypipe version; ``commands.py`` builds
the command of every tool a release runs, ``runbrick.py`` the one of runbrick.
"""
