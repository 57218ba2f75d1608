"""Where and how things run: settings, cluster profiles, launchers, ledger, servers."""
